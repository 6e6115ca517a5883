"""Reliability of the library pieces the workflow relies on: atomic writes survive a
SIGKILL in the middle of a write, untrusted checkpoints are refused without running anything, no
result is ever pickled, non-finite features and empty classes raise clear errors.

The end-to-end fault tests with the real Snakefile are in ``test_reliability_workflow.py``.
"""
import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from conftest import ROOT

WORKFLOW = ROOT / "workflow"


# ----------------------------------------------------------------------------------------- atomic writes

WRITER = r"""
import os, sys, time
sys.path.insert(0, {workflow!r})
from gnc import io as gio
kind, dest, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "before_replace":      # the whole temporary file is written, the kill comes before the rename
    real = os.replace
    def hang(src, dst):
        print("replacing", flush=True)
        time.sleep(600)
    gio.os.replace = hang
if kind == "netcdf":
    import numpy as np, xarray as xr
    rng = np.random.default_rng(1)   # mid_write: incompressible data, zlib keeps the writer busy for seconds
    n = 1_500_000 if mode == "mid_write" else 1000
    ds = xr.Dataset({{f"v{{i}}": (("n",), rng.standard_normal(n)) for i in range(8)}})
    print("writing", flush=True)
    gio.write_netcdf(ds, dest)
else:
    import torch
    from gnc.train import _save_atomic
    if mode == "mid_write":          # torch.save is too fast to catch: write part of the file, then stop
        real_save = torch.save
        def partial(obj, f):
            real_save(obj, f)
            data = open(f, "rb").read()
            open(f, "wb").write(data[: len(data) // 2])
            print("partial", flush=True)
            time.sleep(600)
        torch.save = partial
    print("writing", flush=True)
    _save_atomic({{"format": 1, "model": {{"w": torch.randn(500_000)}}, "epoch": 9}}, dest)
print("done", flush=True)
"""


def _temps(dest: Path) -> list[Path]:
    if not dest.parent.exists():
        return []
    return [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")]


def _kill_while_writing(kind: str, dest: Path, mode: str) -> None:
    """Start a writer subprocess and SIGKILL it once its temporary file exists (``mid_write``: while
    it grows / is partial; ``before_replace``: complete but not yet renamed)."""
    script = WRITER.format(workflow=str(WORKFLOW))
    p = subprocess.Popen([sys.executable, "-c", script, kind, str(dest), mode], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        if kind == "netcdf" and mode == "mid_write":
            assert p.stdout.readline().strip() == "writing"
            t0 = time.time()
            while not any(t.stat().st_size > 0 for t in _temps(dest) if t.exists()):
                assert p.poll() is None, "writer ended before it could be killed"
                assert time.time() - t0 < 120
                time.sleep(0.01)
        else:
            expected = "partial" if mode == "mid_write" else "replacing"
            lines = [p.stdout.readline().strip() for _ in range(2)]
            assert lines[-1] == expected, lines
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL
    assert _temps(dest), "the kill came after the rename: not a mid-write kill"


@pytest.mark.parametrize("mode", ["mid_write", "before_replace"])
def test_netcdf_killed_during_write_leaves_old_file_or_nothing(tmp_path, mode):
    from gnc.io import open_netcdf, sha256_file, write_netcdf

    if mode == "mid_write":
        fresh = tmp_path / "fresh" / "metrics.nc"
        _kill_while_writing("netcdf", fresh, mode)
        assert not fresh.exists()  # no file rather than a partial one

    dest = tmp_path / "metrics.nc"
    old = xr.Dataset({"gnc1": (("epoch",), np.array([0.5, 0.25]))}, coords={"epoch": [0, 2]})
    write_netcdf(old, dest)
    digest = sha256_file(dest)
    _kill_while_writing("netcdf", dest, mode)
    assert sha256_file(dest) == digest  # the complete old file, untouched
    xr.testing.assert_identical(open_netcdf(dest)[["gnc1"]], old)
    for t in _temps(dest):  # what the kill left behind is a hidden temporary, never the result itself
        assert t.name.endswith(".tmp.nc") and t.name.startswith(".metrics.nc.")


@pytest.mark.parametrize("mode", ["mid_write", "before_replace"])
def test_checkpoint_killed_during_write_leaves_old_checkpoint(tmp_path, mode):
    from gnc.train import CheckpointError, _save_atomic, load_checkpoint

    dest = tmp_path / "epoch=9.pt"
    old = {"format": 1, "model": {"w": torch.arange(5.0)}, "epoch": 9}
    _save_atomic(old, dest)
    _kill_while_writing("checkpoint", dest, mode)
    got = load_checkpoint(dest)
    assert torch.equal(got["model"]["w"], old["model"]["w"])
    (tmp,) = _temps(dest)
    if mode == "mid_write":  # and the partial temporary itself is refused with its name
        with pytest.raises(CheckpointError, match=re.escape(str(tmp)) + ".*corrupt"):
            load_checkpoint(tmp)


# ----------------------------------------------------------------------------------------- untrusted files

class _Payload:
    """Pickles to ``Path.touch(marker)``: code an untrusted checkpoint would run on a plain load."""

    def __init__(self, marker):
        self.marker = Path(marker)

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def untrusted(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "epoch=3.pt"
    torch.save({"format": 1, "model": {"w": torch.zeros(2)}, "epoch": 3, "spec": {}, "classes": [0, 1],
                "extra": _Payload(marker)}, path)
    torch.load(path, weights_only=False)  # positive control: a plain load runs the payload
    assert marker.exists()
    marker.unlink()
    return path, marker


def test_untrusted_checkpoint_is_refused_and_runs_nothing(untrusted, tmp_path):
    from gnc.features import extract_features
    from gnc.train import CheckpointError, load_checkpoint

    path, marker = untrusted
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "refused" in msg and "weights_only=True" in msg and "Unsupported global" in msg
    with pytest.raises(CheckpointError, match="refused"):
        extract_features(path, tmp_path / "no-data")  # refused before any data is looked at
    from gnc.provenance import read_attrs

    with pytest.raises(Exception, match="Weights only load failed"):
        read_attrs(path)
    assert not marker.exists()


def test_untrusted_training_state_is_ignored_not_run(untrusted, tmp_path):
    from gnc.train import _StateStore

    path, marker = untrusted
    work = tmp_path / "work"
    work.mkdir()
    os.replace(path, work / "state.pt")
    lines = []

    class Log:
        def info(self, m):
            lines.append(m)

        def warning(self, m):
            lines.append("WARNING " + m)

    assert _StateStore(work).candidates(Log(), "identity") == []
    assert any("WARNING" in ln and "state.pt is unreadable" in ln for ln in lines), lines
    assert not marker.exists()


# the only pickle-based writes allowed: torch checkpoints / training states in gnc.train._save_atomic
_FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "_pickle"}


def pickle_violations(source: str, where: str) -> list[str]:
    """Uses of pickle for anything but checkpoints in ``source``: pickle-family imports, pandas
    pickles, ``allow_pickle=True``, numpy load/save without an explicit ``allow_pickle=False``,
    ``torch.load`` without ``weights_only=True``, ``torch.save`` outside ``_save_atomic``."""
    out = []
    tree = ast.parse(source)
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def enclosing_function(node):
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node.name
        return None

    def kw(call, name):
        return next((k.value for k in call.keywords if k.arg == name), None)

    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            out += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in _FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _FORBIDDEN_MODULES:
            out.append(f"{line}: from {node.module} import")
        elif isinstance(node, ast.Call):
            f = node.func
            name = ast.unparse(f)
            if isinstance(f, ast.Attribute) and f.attr in ("to_pickle", "read_pickle"):
                out.append(f"{line}: {name}")
            ap = kw(node, "allow_pickle")
            if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                out.append(f"{line}: {name}(allow_pickle={ast.unparse(ap)})")
            if name in ("np.load", "numpy.load", "np.save", "numpy.save") and ap is None:
                out.append(f"{line}: {name} without allow_pickle=False")
            if name in ("np.savez", "numpy.savez", "np.savez_compressed", "numpy.savez_compressed"):
                out.append(f"{line}: {name}")
            if name == "torch.load":
                wo = kw(node, "weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    out.append(f"{line}: torch.load without weights_only=True")
            if name == "torch.save" and not (where.endswith("gnc/train.py")
                                             and enclosing_function(node) == "_save_atomic"):
                out.append(f"{line}: torch.save outside gnc.train._save_atomic")
    return out


def test_no_pickle_of_results_anywhere_in_the_workflow():
    files = sorted(WORKFLOW.rglob("*.py")) + sorted(WORKFLOW.rglob("*.smk")) + [ROOT / "Snakefile"]
    assert len(files) > 30
    found = []
    for f in files:
        src = f.read_text()
        if f.suffix == ".py":
            found += pickle_violations(src, str(f.relative_to(ROOT)))
        else:  # Snakemake files are not plain Python: a textual check
            found += [f"{f.relative_to(ROOT)}: {m.group(0)}" for m in
                      re.finditer(r"\b(pickle|joblib|dill|torch\.save|torch\.load|allow_pickle)\b", src)]
    assert found == []
    # and the checker finds what it is meant to find
    bad = ("import pickle\nimport numpy as np, torch\nfrom joblib import dump\n"
           "def f(x, p):\n    np.load(p)\n    np.save(p, x, allow_pickle=True)\n    torch.load(p)\n"
           "    torch.save(x, p)\n    x.to_pickle(p)\n    torch.load(p, weights_only=False)\n")
    assert len(pickle_violations(bad, "workflow/gnc/x.py")) == 8
    ok = "import torch\ndef _save_atomic(o, p):\n    torch.save(o, p)\n"
    assert pickle_violations(ok, "workflow/gnc/train.py") == []
    assert len(pickle_violations(ok, "workflow/gnc/results.py")) == 1


# ----------------------------------------------------------------------------------------- numerical faults

def _features(K=4, d=3, n=12, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), n)
    means = rng.standard_normal((K, d)) * 3
    h = means[y] + 0.3 * rng.standard_normal((len(y), d))
    yt = np.repeat(np.arange(K), 3)
    ht = means[yt] + 0.3 * rng.standard_normal((len(yt), d))
    return xr.Dataset(
        {"train_h": (("train_sample", "component"), h.astype(np.float32)), "train_y": (("train_sample",), y),
         "test_h": (("test_sample", "component"), ht.astype(np.float32)), "test_y": (("test_sample",), yt),
         "W": (("k", "component"), means.astype(np.float32)), "b": (("k",), np.zeros(K, np.float32))},
        coords={"k": np.arange(K), "component": np.arange(d)}, attrs={"head": "normalized", "tau": 0.1})


@pytest.mark.parametrize("var,index,value", [("train_h", (5, 1), np.nan), ("train_h", (0, 0), np.inf),
                                             ("test_h", (2, 2), -np.inf), ("W", (3, 0), np.nan)])
def test_non_finite_features_raise_a_clear_error(var, index, value):
    from gnc.metrics import SCALAR_METRICS, checkpoint_metrics

    clean = checkpoint_metrics(_features())
    for v in SCALAR_METRICS:  # the control: finite features give finite metrics
        assert np.isfinite(float(clean[v])), v
    ds = _features()
    ds[var].values[index] = value
    with pytest.raises(FloatingPointError, match=rf"{var}: 1 row\(s\) with non-finite values \(first at index "
                                                 rf"{index[0]}\)"):
        checkpoint_metrics(ds)


def test_empty_class_raises_naming_it():
    from gnc.metrics import checkpoint_metrics

    ds = _features(K=5)
    ds = ds.isel(train_sample=np.flatnonzero(ds.train_y.values != 3))
    with pytest.raises(ValueError, match=r"1 class\(es\) without training samples: 3"):
        checkpoint_metrics(ds)

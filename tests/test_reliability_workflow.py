"""Reliability with the REAL workflow: bad configs, bad data, corrupt and untrusted
checkpoints, SIGKILL mid-epoch, non-finite training and NaN features — each stops with a message
naming the field or file, writes no result from bad input, and loses no result that existed.

Every test runs the real ``Snakefile`` with ``python -m snakemake`` in a temporary folder on a tiny
study (digits, one run d=2 K=4, 4 epochs, checkpoints 2 and 4). One uninterrupted study is run once
(``baseline``); the fault tests work on copies of it (timestamps kept, so Snakemake sees the same
state) and target ``results/metrics.nc`` only (the codes and figures stages are not needed here).
"""
import contextlib
import copy
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT

CFG = {
    "datasets": {"digits": {"source": "digits"}},
    "train": {"epochs": 4, "checkpoints": [2, 4], "batch_size": 64, "lr": 0.05, "width": 8},
    "experiments": {
        "circle": {"dataset": "digits", "arch": ["smallcnn"], "tau": [0.1], "d": [2], "K": [4], "seed": [0]},
    },
    "codes": {"restarts": 2, "time_budget": 3, "ufm_tau": [1.0], "ufm_steps": 100},
}
RUN = "digits/normalized-ce/smallcnn/tau0.1-d2-K4-s0"
TARGET = "results/metrics.nc"
#: copies of the baseline must not rerun finished jobs because a workflow script was edited while the
#: suite runs (code trigger); a fault here changes files (mtime) or the set of inputs (input). Goes last.
COPY_TRIGGERS = ("--rerun-triggers", "mtime", "input")


# ----------------------------------------------------------------------------------------- helpers

def smk_cmd(wd: Path, *args) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd),
            "--configfile", str(wd / "config.yaml"), *args]


def smk(wd: Path, *args, env=None, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run(smk_cmd(wd, *args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    proc.output = proc.stdout + proc.stderr
    return proc


def ok(proc) -> None:
    assert proc.returncode == 0, f"snakemake failed:\n{proc.output[-6000:]}"


def write_config(wd: Path, cfg: dict) -> None:
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digests(wd: Path) -> dict[str, str]:
    """sha256 of every result file (logs and the trainer's private work state excluded)."""
    res = wd / "results"
    return {str(p.relative_to(wd)): sha(p) for p in sorted(res.rglob("*"))
            if p.is_file() and not p.relative_to(res).parts[0] in ("logs", ".work")}


def clone(src: Path, dst: Path, full: bool = True) -> Path:
    """Copy a study folder with timestamps (``full``) or only its prepared datasets + config."""
    if full:
        shutil.copytree(src, dst, symlinks=True)
    else:
        dst.mkdir(parents=True)
        shutil.copytree(src / "resources", dst / "resources")
        shutil.copy2(src / "config.yaml", dst / "config.yaml")
    return dst


def dataset_dir(wd: Path) -> Path:
    (d,) = (wd / "resources" / "datasets" / "digits").iterdir()
    return d


def run_dir(wd: Path, run: str = RUN) -> Path:
    return wd / "results" / "runs" / run


def drop_evaluation(wd: Path, run: str = RUN) -> None:
    """Remove the features and metrics of ``run`` and the combined metrics (as if never computed)."""
    shutil.rmtree(run_dir(wd, run) / "features")
    (run_dir(wd, run) / "metrics.nc").unlink()
    (wd / TARGET).unlink()


def no_results_downstream(wd: Path, run: str = RUN, *, train: bool) -> None:
    rd = run_dir(wd, run)
    if train:
        assert not (rd / "ckpt").exists() and not (rd / "history.nc").exists()
        assert not list((wd / "results").rglob("*.pt")) or all(
            ".work" in p.parts for p in (wd / "results").rglob("*.pt"))
    assert not list(rd.glob("features/*.nc")), list(rd.glob("features/*"))
    assert not (rd / "metrics.nc").exists()
    assert not (wd / TARGET).exists()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The tiny study, uninterrupted, up to results/metrics.nc."""
    wd = tmp_path_factory.mktemp("baseline")
    write_config(wd, CFG)
    ok(smk(wd, "--cores", "2", TARGET))
    return wd


# ----------------------------------------------------------------------------------------- bad configs

def _set(path, value):
    def mutate(cfg):
        node = cfg
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return mutate


E = ["experiments", "circle"]
# (name, mutation, words the one message must contain: the field and the allowed values)
CLI_BAD_CONFIGS = [
    ("unknown key", _set(E + ["taus"], [1.0]), ["experiments.circle", "'taus'", "allowed keys", "tau"]),
    ("tau <= 0", _set(E + ["tau"], [0.1, 0.0]), ["experiments.circle.tau[1]", "must be > 0"]),
    ("d < 1", _set(E + ["d"], [0]), ["experiments.circle.d[0]", "must be >= 1"]),
    ("d wrong type", _set(E + ["d"], ["two"]), ["experiments.circle.d[0]", "'two'", "integer"]),
    ("K > classes", _set(E + ["K"], [4, 12]), ["experiments.circle.K[1]", "10 classes", "2..10"]),
    ("empty grid", _set(E + ["seed"], []), ["experiments.circle.seed", "must not be empty"]),
    ("epochs not increasing", _set(["train", "checkpoints"], [4, 2]), ["train.checkpoints", "increasing"]),
    ("missing dataset path", _set(["datasets", "mine"], {"source": "image_folder", "root": "/nonexistent/imgs"}),
     ["datasets.mine", "/nonexistent/imgs", "does not exist"]),
    ("codes.restarts 0", _set(["codes", "restarts"], 0), ["codes.restarts", "must be >= 1"]),
    ("negative pinv_rtol", _set(["metrics", "pinv_rtol"], -1e-10), ["metrics.pinv_rtol", "must be > 0"]),
]


def test_bad_configs_stop_the_real_workflow_before_any_job(tmp_path):
    """Each bad config through the real command line (half as ``snakemake -n``, half as a real run):
    exit code != 0, one message naming the field and the allowed values, no traceback, no job ran
    (no results/ or resources/ folder, no Snakemake log)."""
    procs = []
    for i, (name, mutate, words) in enumerate(CLI_BAD_CONFIGS):
        cfg = copy.deepcopy(CFG)
        mutate(cfg)
        wd = tmp_path / f"cfg{i}"
        write_config(wd, cfg)
        mode = ["-n"] if i % 2 == 0 else ["--cores", "1"]
        procs.append((name, words, wd, subprocess.Popen(smk_cmd(wd, *mode, TARGET), stdout=subprocess.PIPE,
                                                         stderr=subprocess.PIPE, text=True)))
    for name, words, wd, p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode != 0, name
        for w in words:
            assert w in err, f"{name}: {w!r} not in stderr:\n{err}"
        assert err.count("gnc-study:") == 1 and "Traceback" not in err, f"{name}:\n{err}"
        assert not (wd / "results").exists() and not (wd / "resources").exists(), name
        smk_dir = wd / ".snakemake"  # a real run opens an (empty) Snakemake log, nothing else
        assert not [p for p in smk_dir.rglob("*") if p.is_file() and p.stat().st_size > 0], name
        assert not (smk_dir / "metadata").exists() and not (smk_dir / "scripts").exists(), name


# ----------------------------------------------------------------------------------------- bad data

def test_truncated_dataset_file_stops_training(baseline, tmp_path):
    wd = clone(baseline, tmp_path / "wd", full=False)
    f = dataset_dir(wd) / "train_x.npy"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])  # truncated
    proc = smk(wd, "--cores", "2", TARGET)
    assert proc.returncode != 0
    assert "DatasetIntegrityError" in proc.output and f"{f.relative_to(wd)}: sha256 mismatch" in proc.output
    log = (wd / "results" / "logs" / "train" / f"{RUN}.log").read_text()
    assert "train_x.npy: sha256 mismatch" in log
    no_results_downstream(wd, train=True)
    assert not list((wd / "results" / ".work").rglob("*.pt")) if (wd / "results" / ".work").exists() else True


def test_altered_dataset_file_stops_features_and_keeps_the_checkpoints(baseline, tmp_path):
    wd = clone(baseline, tmp_path / "wd")
    drop_evaluation(wd)
    before = digests(wd)
    f = dataset_dir(wd) / "test_y.npy"
    data = bytearray(f.read_bytes())
    data[-8] ^= 0x01  # one test label changed, size unchanged
    f.write_bytes(bytes(data))
    proc = smk(wd, "--cores", "2", TARGET, *COPY_TRIGGERS)
    assert proc.returncode != 0
    assert "test_y.npy: sha256 mismatch" in proc.output
    assert "test_y.npy: sha256 mismatch" in (wd / "results" / "logs" / "features" / RUN / "epoch=4.log").read_text()
    no_results_downstream(wd, train=False)
    assert digests(wd) == before  # checkpoints and history untouched: nothing lost


class _Payload:
    """Pickles to a call of ``Path.touch(marker)``: what an untrusted checkpoint could run on load."""

    def __init__(self, marker):
        self.marker = Path(marker)

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_corrupt_and_untrusted_checkpoints_are_refused(baseline, tmp_path):
    wd = clone(baseline, tmp_path / "wd")
    drop_evaluation(wd)
    ckpt = run_dir(wd) / "ckpt"
    c2 = (ckpt / "epoch=2.pt").read_bytes()
    (ckpt / "epoch=2.pt").write_bytes(c2[: len(c2) // 3])  # corrupt (truncated)
    marker = tmp_path / "payload-ran"
    torch.save({"format": 1, "model": {}, "epoch": 4, "spec": {}, "x": _Payload(marker)}, ckpt / "epoch=4.pt")
    torch.load(ckpt / "epoch=4.pt", weights_only=False)  # positive control: the payload is live
    assert marker.exists()
    marker.unlink()

    proc = smk(wd, "--cores", "2", "--keep-going", TARGET, *COPY_TRIGGERS)
    assert proc.returncode != 0
    assert not marker.exists(), "an untrusted checkpoint executed code"
    logs = wd / "results" / "logs" / "features" / RUN
    log2, log4 = (logs / "epoch=2.log").read_text(), (logs / "epoch=4.log").read_text()
    assert "CheckpointError" in log2 and f"checkpoint results/runs/{RUN}/ckpt/epoch=2.pt is corrupt" in log2
    assert "CheckpointError" in log4 and f"checkpoint results/runs/{RUN}/ckpt/epoch=4.pt refused" in log4
    assert "Unsupported global" in log4 and "nothing in it ran" in log4
    assert "epoch=2.pt" in proc.output and "epoch=4.pt" in proc.output
    no_results_downstream(wd, train=False)


def test_nan_features_stop_metrics_no_nan_in_combined_results(baseline, tmp_path):
    from gnc.io import open_netcdf, write_netcdf

    wd = clone(baseline, tmp_path / "wd")
    (run_dir(wd) / "metrics.nc").unlink()
    (wd / TARGET).unlink()
    f = run_dir(wd) / "features" / "epoch=4.nc"
    ds = open_netcdf(f)
    ds["train_h"][3, 1] = np.nan
    write_netcdf(ds, f)
    proc = smk(wd, "--cores", "2", TARGET, *COPY_TRIGGERS)
    assert proc.returncode != 0
    log = (wd / "results" / "logs" / "metrics" / f"{RUN}.log").read_text()
    assert "FloatingPointError" in log and "train_h" in log and "non-finite" in log
    assert not (run_dir(wd) / "metrics.nc").exists() and not (wd / TARGET).exists()


def test_bad_source_files_and_empty_class_stop_preparation(tmp_path):
    """A raw input file that does not match its published checksum (MNIST .gz), and an image folder
    with an empty class: the preparation job fails naming the file / folder; nothing is prepared."""
    from gnc.data.sources.torchvision_sets import MNIST_PUBLISHED
    from PIL import Image

    raw = tmp_path / "raw" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_PUBLISHED["MNIST"]:
        (raw / name).write_bytes(b"\x1f\x8b not the published file")
    imgs = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (imgs / "train" / c).mkdir(parents=True)
        (imgs / "val" / c).mkdir(parents=True)
        if c != "c":  # class c: no training image
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(imgs / "train" / c / f"{i}.png")
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(imgs / "val" / c / "0.png")
    cfg = copy.deepcopy(CFG)
    cfg["datasets"] = {"mnist": {"source": "mnist", "root": str(tmp_path / "raw")},
                       "mine": {"source": "image_folder", "root": str(imgs), "size": 8}}
    cfg["experiments"] = {
        "m": {**CFG["experiments"]["circle"], "dataset": "mnist"},
        "f": {**CFG["experiments"]["circle"], "dataset": "mine", "K": [3]},
    }
    wd = tmp_path / "wd"
    write_config(wd, cfg)
    proc = smk(wd, "--cores", "2", "--keep-going", "--until", "prepare_dataset")
    assert proc.returncode != 0
    assert "checksum mismatch for MNIST/raw/train-images-idx3-ubyte.gz" in proc.output
    assert f"{imgs / 'train'}" in proc.output and "classes c" in proc.output \
        and "at least one training image" in proc.output
    assert not list((wd / "resources").rglob("manifest.json"))
    assert not (wd / "results" / "runs").exists()


# ----------------------------------------------------------------------------------------- interruption

def test_sigkill_mid_epoch_then_rerun_resumes_and_equals_uninterrupted(baseline, tmp_path):
    from gnc.io import open_netcdf
    from gnc.train import load_checkpoint

    from _trainhang import hang_env

    wd = clone(baseline, tmp_path / "wd", full=False)
    work = wd / "results" / ".work" / RUN
    marker = tmp_path / "hang.marker"
    p = subprocess.Popen(smk_cmd(wd, "--cores", "2", TARGET), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True,
                         env={**os.environ, **hang_env(tmp_path / "hang-site", 3, 1, marker)})  # epoch 3, step 1
    try:
        t0 = time.time()
        while not marker.exists():
            assert p.poll() is None, "snakemake ended before the train job reached the hang point"
            assert time.time() - t0 < 300
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # snakemake and its job: same process group
        p.wait()
    # nothing partial was published: no declared output, only the trainer's private state
    rd = run_dir(wd)
    assert not (rd / "ckpt").exists() and not (rd / "history.nc").exists() and not (wd / TARGET).exists()
    state = torch.load(work / "state.pt", weights_only=True)
    assert state["epoch"] == 2

    ok(smk(wd, "--unlock"))  # the kill left Snakemake's lock, as after a power loss
    ok(smk(wd, "--cores", "2", TARGET))
    log = (wd / "results" / "logs" / "train" / f"{RUN}.log").read_text()
    assert "resuming from" in log and "at epoch 2" in log
    assert "epoch 1/4" not in log and "epoch 3/4" in log  # epochs 1-2 were not trained again

    for e in (2, 4):
        a = load_checkpoint(run_dir(baseline) / "ckpt" / f"epoch={e}.pt")
        b = load_checkpoint(rd / "ckpt" / f"epoch={e}.pt")
        assert a["model"].keys() == b["model"].keys()
        for k in a["model"]:
            assert torch.equal(a["model"][k], b["model"][k]), (e, k)
    ref, got = open_netcdf(baseline / TARGET), open_netcdf(wd / TARGET)
    assert set(ref.data_vars) == set(got.data_vars) and len(ref.data_vars) >= 20
    for v in ref.data_vars:
        np.testing.assert_array_equal(got[v].values, ref[v].values, err_msg=v)
        assert np.isfinite(got[v].values).all(), v


# ----------------------------------------------------------------------------------------- numerical faults

def test_overflowing_tau_fails_that_run_only_and_loses_nothing(baseline, tmp_path):
    """tau = 1e-30 (logits = cos / tau overflow): that train job fails with NonFiniteLossError naming
    the run and the step and publishes nothing; with --keep-going the rest of the study is kept
    byte-identical, and the combined metrics hold no NaN for the run that finished."""
    from gnc.io import open_netcdf
    from gnc.metrics import SCALAR_METRICS

    wd = clone(baseline, tmp_path / "wd")
    cfg = copy.deepcopy(CFG)
    cfg["experiments"]["unstable"] = {**CFG["experiments"]["circle"], "tau": [1e-30]}
    write_config(wd, cfg)
    before = digests(wd)
    proc = smk(wd, "--cores", "2", "--keep-going", TARGET, *COPY_TRIGGERS)
    assert proc.returncode != 0
    bad = "digits/normalized-ce/smallcnn/tau1e-30-d2-K4-s0"
    log = (wd / "results" / "logs" / "train" / f"{bad}.log").read_text()
    assert "NonFiniteLossError" in log and f"run '{bad}'" in log and "step" in log
    assert "NonFiniteLossError" in proc.output
    assert not (run_dir(wd, bad) / "ckpt").exists() and not (run_dir(wd, bad) / "history.nc").exists()
    assert digests(wd) == before  # results lost: 0 (and none written from the failed run)
    ds = open_netcdf(wd / TARGET)
    for v in SCALAR_METRICS:
        assert np.isfinite(ds[v].sel(tau=0.1).values).all(), v

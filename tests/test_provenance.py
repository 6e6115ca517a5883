"""Provenance: every result file names its config, code, software, device, seed, times and datasets
(with checksums that still match), and ``gnc-provenance`` prints and verifies them.

The first half tests gnc.provenance on its own; the second half checks every output kind of a real
tiny study (tests/_provstudy.py, built once per session and shared with test_reruns.py).
"""
import importlib.metadata as md
import json
import shutil
import subprocess
import sys
import types
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import _provstudy as S
from conftest import ROOT
from gnc import data as gd
from gnc import provenance as P
from gnc.provenance.__main__ import main as provenance_cli
from gnc.io import write_json_atomic, write_netcdf
from gnc.jobs import job_context


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s)


@pytest.fixture
def no_job_context():
    P.set_job_context()
    yield
    P.set_job_context()


# ------------------------------------------------------------------------------ the library

def test_provenance_attributes(no_job_context):
    a = P.provenance(seed=3, stage="x", options={"b": [1, 2]}, nothing=None, flag=True)
    versions = json.loads(a["gnc_versions"])
    for pkg in ("torch", "torchvision", "snakemake", "numpy"):
        assert versions[pkg] == md.version(pkg)
    assert a["gnc_seed"] == 3 and a["gnc_stage"] == "x" and "gnc_nothing" not in a
    assert json.loads(a["gnc_options"]) == {"b": [1, 2]} and a["gnc_flag"] == 1
    assert a["gnc_device"].startswith("cpu")
    assert _ts(a["gnc_started"]) <= _ts(a["gnc_finished"]) == _ts(a["gnc_created"])
    # the code version is the repository's commit, "-dirty" exactly when git reports changed code
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        changed = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "workflow", "Snakefile",
                                  "pyproject.toml"], capture_output=True, text=True).stdout.strip()
        assert a["gnc_code_version"] == head.stdout.strip() + ("-dirty" if changed else "")
        assert a["gnc_code_dirty"] == int(bool(changed))


def test_job_context_adds_rule_config_run_spec_seed_and_start(no_job_context):
    from gnc.config import load_study

    cfg, runs = load_study(S.config())
    smk = types.SimpleNamespace(rule="features", wildcards={"run": S.RUN_B, "epoch": "2"}, config=cfg,
                                params={})
    smk.wildcards = types.SimpleNamespace(items=lambda: {"run": S.RUN_B, "epoch": "2"}.items())
    P.set_job_context(**job_context(smk))
    a = P.provenance(stage="features")
    assert a["gnc_rule"] == "features"
    assert json.loads(a["gnc_wildcards"]) == {"run": S.RUN_B, "epoch": "2"}
    assert json.loads(a["gnc_config"]) == json.loads(json.dumps(cfg, default=str))
    assert json.loads(a["gnc_config"])["metrics"]["batch_size"] == 1024  # a default, not in the YAML
    spec = json.loads(a["gnc_run_config"])
    assert spec == json.loads(json.dumps(runs[S.RUN_B].spec()))
    assert spec["dataset"] == "digits_b" and spec["lr"] == 0.05 and spec["d"] == 2
    assert a["gnc_seed"] == 0
    assert _ts(a["gnc_started"]) <= _ts(a["gnc_finished"])
    # a codes job: the seed comes from the solver options
    smk = types.SimpleNamespace(rule="ufm", wildcards=types.SimpleNamespace(items=lambda: {"d": "2"}.items()),
                                config=cfg, params=types.SimpleNamespace(options={"seed": 7, "ufm_n": 3}))
    P.set_job_context(**job_context(smk))
    assert P.provenance()["gnc_seed"] == 7 and "gnc_run_config" not in P.provenance()
    P.set_job_context()
    assert "gnc_rule" not in P.provenance()


def test_merged_dataset_attributes_stay_aligned():
    # checksums sort in the opposite order of the names: sorting each list separately pairs them wrongly
    a = {"gnc_dataset": "alpha", "gnc_dataset_version": "v1-aaa", "gnc_dataset_checksum": "ff" * 32,
         "gnc_dataset_path": "resources/datasets/alpha/v1-aaa"}
    b = {"gnc_dataset": "beta", "gnc_dataset_version": "v1-bbb", "gnc_dataset_checksum": "00" * 32,
         "gnc_dataset_path": "resources/datasets/beta/v1-bbb"}
    merged = P.merge_dataset_attrs(b, a, a)
    names, sums = json.loads(merged["gnc_dataset"]), json.loads(merged["gnc_dataset_checksum"])
    paths = json.loads(merged["gnc_dataset_path"])
    assert names == ["alpha", "beta"] and sums == ["ff" * 32, "00" * 32]
    assert paths == ["resources/datasets/alpha/v1-aaa", "resources/datasets/beta/v1-bbb"]
    # merging merged attributes again (e.g. codes.nc from metrics.nc) is stable
    assert P.merge_dataset_attrs(merged) == merged
    assert [d["name"] for d in P.datasets_of(merged)] == ["alpha", "beta"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A small prepared digits dataset under <wd>/resources/datasets/digits/<version>."""
    wd = tmp_path_factory.mktemp("provds")
    spec = {"max_per_class": 10}
    folder = wd / "resources" / "datasets" / "digits" / gd.version_id("digits", spec)
    gd.prepare("digits", spec, folder)
    return wd, folder


def _result_file(wd: Path, folder: Path, kind: str) -> Path:
    """A result file naming the dataset by its workflow-relative path, as the workflow writes them."""
    manifest = dict(json.loads((folder / "manifest.json").read_text()), path=str(folder.relative_to(wd)))
    attrs = {**P.provenance(stage="test"), **P.dataset_attrs(manifest)}
    out = wd / "results" / f"r.{kind}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "nc":
        write_netcdf(xr.Dataset({"v": ("x", np.arange(3.0))}, attrs=attrs), out)
    else:
        write_json_atomic(out, attrs)
    return out


def test_cli_prints_and_verifies(prepared, tmp_path, monkeypatch, capsys):
    wd, folder = prepared
    nc = _result_file(wd, folder, "nc")
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative dataset path is found from the file's location
    assert provenance_cli([str(nc), str(folder / "manifest.json")]) == 0
    out = capsys.readouterr().out
    assert "datasets verified" in out and "dataset: digits" in out and "[software]" in out
    assert provenance_cli(["--json", str(nc)]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed[str(nc)]["problems"] == [] and parsed[str(nc)]["attributes"]["gnc_stage"] == "test"


def test_cli_resolves_datasets_for_results_outside_the_project(prepared, tmp_path, monkeypatch, capsys,
                                                               no_job_context):
    """results: outside the workflow's working directory, the checker run from a third directory: the
    relative dataset path is resolved against the job's recorded working directory (gnc_workdir)."""
    wd, folder = prepared
    manifest = dict(json.loads((folder / "manifest.json").read_text()), path=str(folder.relative_to(wd)))
    monkeypatch.chdir(wd)  # the workflow's working directory while the job writes the file
    attrs = {**P.provenance(stage="test"), **P.dataset_attrs(manifest)}
    assert attrs["gnc_workdir"] == str(wd)
    out = tmp_path / "elsewhere" / "results" / "study.nc"
    out.parent.mkdir(parents=True)
    write_netcdf(xr.Dataset({"v": ("x", np.arange(3.0))}, attrs=attrs), out)
    (tmp_path / "third").mkdir()
    monkeypatch.chdir(tmp_path / "third")
    assert provenance_cli([str(out)]) == 0, capsys.readouterr().out
    assert "datasets verified: 1" in capsys.readouterr().out
    # without the recorded working directory nothing locates the dataset: the failure names the path
    del attrs["gnc_workdir"]
    write_netcdf(xr.Dataset({"v": ("x", np.arange(3.0))}, attrs=attrs), out)
    assert provenance_cli([str(out)]) == 1
    assert "manifest.json: missing" in capsys.readouterr().out


def test_cli_fails_on_tampered_dataset_naming_the_file(prepared, tmp_path, capsys):
    wd0, folder0 = prepared
    wd = tmp_path / "wd"
    shutil.copytree(wd0 / "resources", wd / "resources")
    folder = wd / folder0.relative_to(wd0)
    nc = _result_file(wd, folder, "nc")
    side = _result_file(wd, folder, "json")
    png = side.with_name("fig.png")
    png.write_bytes(b"\x89PNG")
    side.rename(side.with_name("fig.provenance.json"))
    assert provenance_cli([str(nc), str(png)]) == 0
    capsys.readouterr()
    x = np.load(folder / "train_x.npy")
    x[0, 0, 0, 0] ^= 1
    np.save(folder / "train_x.npy", x)
    assert provenance_cli([str(nc)]) == 1
    out = capsys.readouterr().out
    assert "CHECKSUM MISMATCH" in out and "train_x.npy" in out and "sha256 mismatch" in out
    assert provenance_cli([str(png)]) == 1  # through the figure's sidecar
    assert "train_x.npy" in capsys.readouterr().out
    # a re-prepared dataset with a different content: the recorded checksum no longer matches
    np.save(folder / "train_x.npy", x)
    m = json.loads((folder / "manifest.json").read_text())
    m["files"]["train_x.npy"] = gd.core.gio.sha256_file(folder / "train_x.npy")
    m["checksum"] = gd.dataset_checksum(m["files"])
    (folder / "manifest.json").write_text(json.dumps(m))
    assert provenance_cli([str(nc)]) == 1
    assert "differs from the recorded" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.png").write_bytes(b"x")
    write_netcdf(xr.Dataset({"v": ("x", [1.0])}), tmp_path / "c.nc")
    for name in ("missing.nc", "a.txt", "b.png", "c.nc"):
        assert provenance_cli([str(tmp_path / name)]) == 1, name
    assert capsys.readouterr().out.count("ERROR") == 4


def test_summary_rst_is_valid_restructuredtext():
    from docutils.core import publish_parts

    attrs = {**P.provenance(), "gnc_dataset_path": "res/datasets/my_data_/v1-x*", "gnc_dataset": "my_data_",
             "gnc_dataset_version": "v1-x*", "gnc_dataset_checksum": "ab" * 32, "gnc_rule": "figure_x_",
             "gnc_sources": json.dumps({"/abs/results/m_.nc": {"sha256": "cd" * 32},
                                        "results/m_.nc": {"sha256": "cd" * 32}})}
    text = P.summary_rst(attrs)
    html = publish_parts(text, writer="html", settings_overrides={"halt_level": 2, "report_level": 5})["body"]
    assert "my_data_" in html and "results/m_.nc" in html and "/abs/results/m_.nc" not in html


# ------------------------------------------------------------------------------ the tiny study

@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return S.get_study(tmp_path_factory)


def _outputs(wd: Path) -> dict[str, list[Path]]:
    r = wd / "results"
    runs = [r / "runs" / S.RUN_A, r / "runs" / S.RUN_B]
    return {
        "ckpt": [p for run in runs for p in sorted((run / "ckpt").glob("*.pt"))],
        "history": [run / "history.nc" for run in runs],
        "features": [p for run in runs for p in sorted((run / "features").glob("*.nc"))],
        "run_metrics": [run / "metrics.nc" for run in runs],
        "metrics": [r / "metrics.nc"],
        "codes": [r / "codes.nc"],
        "study": [r / "study.nc", r / "study.csv", r / "summary.csv"],
        "figures": [r / "figures" / "codes.png", r / "figures" / "codes.csv"],
        "solutions": sorted((r / "codes").glob("*/*.nc")),
    }


def test_every_output_kind_carries_full_provenance(study):
    from gnc.config import load_study

    cfg, runs = load_study(S.config())
    cfg_json = json.loads(json.dumps(cfg, default=str))
    outs = _outputs(study)
    assert len(outs["ckpt"]) == 4 and len(outs["features"]) == 4 and len(outs["solutions"]) == 4  # tammes, softmax, ufm, refined
    for kind, files in outs.items():
        for f in files:
            a = P.read_attrs(f)
            where = f"{kind}: {f.relative_to(study)}"
            assert json.loads(a["gnc_config"]) == cfg_json, where
            assert a["gnc_code_version"] and a["gnc_code_dirty"] in (-1, 0, 1), where
            versions = json.loads(a["gnc_versions"])
            assert all(versions[p] == md.version(p) for p in ("torch", "torchvision", "snakemake", "numpy")), where
            assert a["gnc_device"].startswith("cpu"), where
            assert _ts(a["gnc_started"]) <= _ts(a["gnc_finished"]), where
            assert a["gnc_rule"], where
            if kind in ("ckpt", "history", "features", "run_metrics"):
                run = next(r for r in (S.RUN_A, S.RUN_B) if f"/{r}/" in str(f))
                assert json.loads(a["gnc_run_config"]) == json.loads(json.dumps(runs[run].spec())), where
                assert a["gnc_seed"] == runs[run].seed == 0, where
                ds = P.datasets_of(a)
                assert [d["name"] for d in ds] == [runs[run].dataset], where
            elif kind == "solutions" and f.parent.name == "refined":  # deterministic polishes: no seed
                assert "gnc_seed" not in a and json.loads(a["gnc_code_scope"]) == {"script": "refine_code"}, where
            elif kind == "solutions":
                assert a["gnc_seed"] == cfg["codes"]["seed"], where
            else:
                assert sorted(d["name"] for d in P.datasets_of(a)) == ["digits", "digits_b"], where
    # the job's start precedes its end; a checkpoint's end is when it was written
    e0, e2 = (P.read_attrs(f) for f in outs["ckpt"][:2])
    assert e0["gnc_started"] == e2["gnc_started"] and _ts(e0["gnc_finished"]) <= _ts(e2["gnc_finished"])


def test_recorded_datasets_match_their_manifests(study):
    for files in _outputs(study).values():
        for f in files:
            for d in P.datasets_of(P.read_attrs(f)):
                m = json.loads((study / d["path"] / "manifest.json").read_text())
                assert (d["name"], d["version"], d["checksum"]) == (m["name"], m["version"], m["checksum"]), f
                assert d["version"] == gd.version_id(d["name"], S.CONFIG["datasets"][d["name"]])


def test_cli_on_every_result_kind(study, tmp_path):
    outs = _outputs(study)
    files = [str(f) for fs in outs.values() for f in fs]
    files += [str(study / "results" / "runs" / S.RUN_A / "ckpt"), str(study / "results" / "figures" / "sphere.pdf"),
              str(next((study / "resources" / "datasets" / "digits").glob("*/manifest.json")))]
    proc = subprocess.run([sys.executable, "-m", "gnc.provenance", *files], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("== ") == len(files) + 1  # the ckpt folder stands for its two checkpoints
    assert "ERROR" not in proc.stdout and "MISMATCH" not in proc.stdout
    # the console script of pyproject.toml points at the same main()
    assert "gnc-provenance = \"gnc.provenance.__main__:main\"" in (ROOT / "pyproject.toml").read_text()


def test_cli_names_a_tampered_dataset_file(study, tmp_path, monkeypatch, capsys):
    """On a copy (the shared study stays intact): flip one byte of a prepared array."""
    rel_ckpt = Path("results") / "runs" / S.RUN_B / "ckpt" / "epoch=2.pt"
    rel_fig = Path("results") / "figures" / "codes.provenance.json"  # codes.nc: every dataset
    for rel in (rel_ckpt, Path("results") / "metrics.nc", rel_fig):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(study / rel, tmp_path / rel)
    shutil.copytree(study / "resources", tmp_path / "resources")
    folder = tmp_path / P.datasets_of(P.read_attrs(study / rel_ckpt))[0]["path"]
    path = folder / "test_y.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    monkeypatch.chdir(ROOT)
    for rel in (rel_ckpt, Path("results") / "metrics.nc", rel_fig):
        assert provenance_cli([str(tmp_path / rel)]) == 1, rel
        out = capsys.readouterr().out
        assert f"{path}: sha256 mismatch" in out, out[-2000:]
    assert provenance_cli([str(study / rel_ckpt)]) == 0  # the original is untouched


def test_study_catalog(study):
    import pandas as pd
    from gnc.config import load_study

    _, runs = load_study(S.config())
    ds = xr.open_dataset(study / "results" / "study.nc")  # one call: all runs, epochs, metrics
    for v in ("gnc1", "gnc2", "gnc3", "nc1", "test_acc", "train_loss", "gnc2_fraction", "final_gnc1"):
        assert v in ds, v
    assert ds["gnc1"].attrs.get("long_name") and ds["test_acc"].attrs.get("units") == "1"
    assert sorted(ds["run"].values) == sorted(runs)
    for run in runs.values():
        sel = ds.sel(run=run.run_id)
        assert {k: sel[k].item() for k in run.coords} == run.coords
        assert np.isfinite(sel["gnc1"].sel(epoch=run.recipe["checkpoints"]).values).all(), run.run_id
        assert np.isfinite(sel["train_loss"].sel(epoch=run.recipe["epochs"]).values), run.run_id
        assert int(sel["final_epoch"]) == run.recipe["checkpoints"][-1]
        # the per-run metrics file holds the same numbers
        per_run = xr.open_dataset(study / "results" / "runs" / run.run_id / "metrics.nc")
        np.testing.assert_allclose(sel["gnc1"].sel(epoch=per_run["epoch"].values).values, per_run["gnc1"].values)
        assert float(sel["final_gnc1"]) == float(per_run["gnc1"].isel(epoch=-1))
    long = pd.read_csv(study / "results" / "study.csv")
    gnc1 = long[long["variable"] == "gnc1"]
    assert len(gnc1) == sum(len(r.recipe["checkpoints"]) for r in runs.values())
    summary = pd.read_csv(study / "results" / "summary.csv")
    assert sorted(summary["run"]) == sorted(runs)
    for _, row in summary.iterrows():
        run = runs[row["run"]]
        assert row["epoch"] == run.recipe["checkpoints"][-1]
        point = ds.sel(run=row["run"], epoch=row["epoch"])
        for v in ("gnc1", "test_acc"):
            assert row[v] == pytest.approx(float(point[v]), rel=1e-5), v
        assert row["gnc2_fraction"] == pytest.approx(float(point["gnc2_fraction"]), rel=1e-5)


def test_report_shows_config_figures_and_provenance(study):
    S.snakemake(study, "--report", "results/report.html", *S.TARGETS)
    html = (study / "results" / "report.html").read_text(errors="replace")
    assert "gnc-study: Generalized Neural Collapse" in html
    assert "pinv_rtol" in html and "max_per_class" in html  # the resolved config
    assert html.count("Provenance of the data behind this item") >= 2  # one per figure caption
    checksum = json.loads((study / "results" / "figures" / "codes.provenance.json").read_text())
    assert json.loads(checksum["gnc_dataset_checksum"])[0][:16] in html
    assert "summary.csv" in html and "Final-epoch summary" in html

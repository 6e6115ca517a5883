"""The study catalog (gnc.results.build_study) and the analysis entry points (gnc.open_study,
gnc.study_table), on synthetic per-run files for every run of the default study (config.yaml), with
runs that stop at different epochs; and the README's "Analysing the results" examples, run as written.
"""
import os
import re
import stat

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

import gnc
from conftest import ROOT
from gnc.config import expand_runs
from gnc.io import write_netcdf
from gnc.results import COORD_ATTRS, RUN_DIMS, build_study, combine_runs, history_dataset, with_run_coords

METRICS = ("gnc1", "gnc2", "test_acc", "train_acc")


def _default_runs():
    return expand_runs(yaml.safe_load((ROOT / "config.yaml").read_text()))


def _synthetic(runs, seed=0):
    """{run id: (checkpoints, {metric: values at the checkpoints}, per-epoch loss)}: each run keeps a
    random prefix of its checkpoints (an unfinished run), so runs end at different epochs."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, (rid, run) in enumerate(runs.items()):
        ck = list(run.recipe["checkpoints"])
        ck = ck[: max(2, len(ck) - i % 3)]
        values = {m: rng.uniform(0.1, 1.0, len(ck)) for m in METRICS}
        values["gnc1"][1] = np.nan  # a checkpoint with a missing value is not the last one unless it is
        loss = rng.uniform(0.5, 3.0, ck[-1] + 1)
        out[rid] = (ck, values, loss)
    return out


def _write_inputs(root, runs, data):
    mpaths, hpaths, per_run = {}, {}, []
    for rid, run in runs.items():
        ck, values, loss = data[rid]
        K = run.K
        ds = xr.Dataset({m: ("epoch", v, {"long_name": f"metric {m}", "units": "1"}) for m, v in values.items()},
                        coords={"epoch": ck})
        ds["ovr_dist"] = (("epoch", "k"), np.ones((len(ck), K)), {"long_name": "per class", "units": "1"})
        ds = with_run_coords(ds.assign_coords(k=np.arange(K)), run.coords)
        mpaths[rid] = root / "runs" / rid / "metrics.nc"
        write_netcdf(ds, mpaths[rid])
        hist = {"epoch": list(range(len(loss))), "loss": list(loss)}
        hpaths[rid] = root / "runs" / rid / "history.nc"
        write_netcdf(history_dataset(hist, run.coords), hpaths[rid])
        per_run.append(with_run_coords(xr.Dataset({"gnc2_fraction": xr.DataArray(
            values["gnc2"][-1] / 0.5, attrs={"long_name": "fraction", "units": "1"})}), run.coords))
    write_netcdf(combine_runs(per_run), root / "codes.nc")
    write_netcdf(combine_runs([xr.open_dataset(p).load() for p in mpaths.values()]), root / "metrics.nc")
    return mpaths, hpaths


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """<tmp>/results with study.nc, study.csv and summary.csv of the synthetic default study."""
    wd = tmp_path_factory.mktemp("analysis")
    res = wd / "results"
    runs = _default_runs()
    data = _synthetic(runs)
    mpaths, hpaths = _write_inputs(res, runs, data)
    build_study(mpaths, hpaths, res / "codes.nc", runs=runs, config={"results": "results"},
                metrics_path=res / "metrics.nc", nc_out=res / "study.nc", csv_out=res / "study.csv",
                summary_out=res / "summary.csv")
    return wd, runs, data


def _last(data, rid, metric):
    """Brute force: the value of ``metric`` at the run's last checkpoint that has a finite gnc1."""
    ck, values, _ = data[rid]
    i = max(j for j in range(len(ck)) if np.isfinite(values["gnc1"][j]))
    return ck[i], values[metric][i]


def test_study_has_one_entry_per_run_with_its_last_checkpoint(study_dir):
    wd, runs, data = study_dir
    ds = gnc.open_study(wd / "results")
    assert list(ds["run"].values) == list(runs)
    assert set(ds.dims) == {"run", "epoch"}
    for rid, run in runs.items():
        one = ds.sel(run=rid)
        assert {d: one[d].item() for d in RUN_DIMS} == run.coords
        assert one["experiment"].item().split() == sorted(run.experiment)
        epoch, _ = _last(data, rid, "gnc1")
        assert int(one["final_epoch"]) == epoch
        for m in METRICS:
            assert float(one[f"final_{m}"]) == pytest.approx(_last(data, rid, m)[1], rel=1e-12), (rid, m)
        assert float(one["final_train_loss"]) == pytest.approx(data[rid][2][epoch], rel=1e-12)
        assert float(one["gnc2_fraction"]) == pytest.approx(data[rid][1]["gnc2"][-1] / 0.5, rel=1e-12)
    # the pitfall the final_* variables avoid: the study's last epoch is NaN for runs that stopped earlier
    assert ds["gnc2"].isel(epoch=-1).isnull().any()
    assert ds["final_gnc2"].notnull().all()
    # a run shared by two experiments belongs to both
    shared = [r for r in runs.values() if len(r.experiment) > 1]
    assert shared
    for name in {e for r in runs.values() for e in r.experiment}:
        sub = gnc.open_study(wd / "results", experiment=name)
        assert sorted(sub["run"].values) == sorted(r for r, run in runs.items() if name in run.experiment)
    with pytest.raises(KeyError, match="tau_sweep"):
        gnc.open_study(wd / "results", experiment="no_such_experiment")


def test_every_variable_and_coordinate_is_labelled(study_dir):
    wd, _, _ = study_dir
    metrics = xr.open_dataset(wd / "results" / "metrics.nc")
    for path in ("study.nc", "metrics.nc"):
        with xr.open_dataset(wd / "results" / path) as ds:
            for name in ds.variables:
                assert ds[name].attrs.get("long_name") and "units" in ds[name].attrs, (path, name)
    with xr.open_dataset(wd / "results" / "study.nc") as ds:
        for name in RUN_DIMS + ("epoch",):  # the coordinates keep the attributes they have in metrics.nc
            assert ds[name].attrs == metrics[name].attrs == COORD_ATTRS[name], name
        assert ds["final_gnc1"].attrs["units"] == "1" and "last checkpoint" in ds["final_gnc1"].attrs["long_name"]


def test_long_table_has_one_row_per_run_epoch_and_variable(study_dir):
    wd, runs, data = study_dir
    df = gnc.study_table(wd / "results")
    assert list(df.columns) == ["run", "experiment", *RUN_DIMS, "epoch", "variable", "value", "final"]
    assert not df.duplicated(["run", "epoch", "variable"]).any() and df["value"].notna().all()
    for rid in runs:
        ck, values, loss = data[rid]
        rows = df[df["run"] == rid]
        for m in METRICS:  # every finite value at its checkpoint, nothing else
            got = rows[rows["variable"] == m].set_index("epoch")["value"]
            want = {e: v for e, v in zip(ck, values[m]) if np.isfinite(v)}
            assert got.to_dict() == pytest.approx(want, rel=1e-12), (rid, m)
        assert len(rows[rows["variable"] == "train_loss"]) == len(loss)
        final = rows[rows["final"]]
        assert set(final["epoch"]) == {_last(data, rid, "gnc1")[0]}
    k = gnc.study_table(wd / "results", experiment="k_sweep")
    assert sorted(k["run"].unique()) == sorted(r for r, run in runs.items() if "k_sweep" in run.experiment)


def test_summary_has_one_row_per_run(study_dir):
    wd, runs, data = study_dir
    summary = pd.read_csv(wd / "results" / "summary.csv")
    assert list(summary["run"]) == list(runs)
    for _, row in summary.iterrows():
        epoch, gnc2 = _last(data, row["run"], "gnc2")
        assert row["epoch"] == epoch and row["gnc2"] == pytest.approx(gnc2, rel=1e-5)


def test_result_files_honour_the_umask(tmp_path):
    from gnc.io import write_json_atomic, write_netcdf

    old = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        write_netcdf(xr.Dataset({"v": ("x", np.arange(2.0))}), tmp_path / "a.nc")
        os.umask(0o002)
        write_json_atomic(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "a.nc").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o664


def _readme_examples():
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Analysing the results\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README has no 'Analysing the results' section"
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), re.S)
    assert 3 <= len(blocks) <= 6
    return blocks


def test_readme_analysis_examples_run(study_dir, monkeypatch, capsys):
    wd, _, _ = study_dir
    monkeypatch.chdir(wd)  # the examples read ./results, as after the quick start
    namespace: dict = {}
    for i, block in enumerate(_readme_examples()):
        exec(compile(block, f"README.md example {i + 1}", "exec"), namespace)  # noqa: S102
        assert capsys.readouterr().out.strip(), f"example {i + 1} printed nothing"


def test_rule_study_declares_every_file_build_study_writes(tmp_path):
    """What build_study writes (besides its inputs) is exactly the outputs of rule ``study``."""
    text = (ROOT / "workflow" / "rules" / "metrics.smk").read_text()
    outputs = text.split("\nrule study:", 1)[1].split("\n    log:", 1)[0].split("\n    output:", 1)[1]
    declared = set(re.findall(r'f"\{OUT\}/([^"]+)"', outputs))
    runs = dict(list(_default_runs().items())[:3])
    res = tmp_path / "results"
    mpaths, hpaths = _write_inputs(res, runs, _synthetic(runs))
    files = lambda: {str(p.relative_to(res)) for p in res.rglob("*") if p.is_file()}  # noqa: E731
    before = files()
    build_study(mpaths, hpaths, res / "codes.nc", runs=runs, config={}, metrics_path=res / "metrics.nc",
                nc_out=res / "study.nc", csv_out=res / "study.csv", summary_out=res / "summary.csv")
    written = files() - before
    assert written == declared, (sorted(written), sorted(declared))

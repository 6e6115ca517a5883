"""End to end: the real Snakefile on a tiny config in a temporary directory."""
import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import yaml

from conftest import ROOT, TINY_CONFIG

# the dimensions of metrics.nc are a public contract (the README's reading examples name them): written out
# here on purpose, not imported from gnc.grid, so that changing them fails this test
RUN_DIMS = ("variant", "dataset", "arch", "tau", "d", "K", "seed")


def snakemake(workdir, *args, check=True, timeout=900):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    wd = tmp_path_factory.mktemp("study")
    (wd / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    snakemake(wd, "--cores", "2")
    return wd


def test_metrics_file(study):
    ds = xr.open_dataset(study / "results" / "metrics.nc", engine="netcdf4")
    for dim in RUN_DIMS + ("epoch",):
        assert dim in ds.dims, dim
    assert list(ds["epoch"].values) == [0, 2, 6]
    for v in ("gnc1", "gnc2", "gnc3", "nc1", "nc2_equinorm_means", "nc3", "nc4", "ncc_train_acc", "ncc_test_acc",
              "train_acc", "test_acc", "min_angle"):
        assert v in ds, v
        assert ds[v].attrs.get("units") is not None and ds[v].attrs.get("long_name"), v
    sel = ds.sel(variant="normalized-ce", dataset="digits", arch="smallcnn", tau=0.1, d=3, K=5, seed=0)
    for v in ("gnc1", "gnc2", "gnc3", "test_acc", "train_acc"):
        assert np.isfinite(sel[v].values).all(), v
    # easy case (digits, K=5, d=3): variability collapses with training and accuracy rises
    assert sel["gnc1"].sel(epoch=6) < sel["gnc1"].sel(epoch=0)
    assert sel["train_acc"].sel(epoch=6) > sel["train_acc"].sel(epoch=0)
    assert "gnc_code_version" in ds.attrs and "gnc_versions" in ds.attrs
    assert ds["gnc1"].encoding.get("zlib") is True


def test_codes_file(study):
    ds = xr.open_dataset(study / "results" / "codes.nc", engine="netcdf4")
    assert ds["tammes_code"].dims[-2:] == ("code_row", "component")
    assert ds["softmax_code"].dims[-2:] == ("code_row", "component")
    assert ds["verdict"].attrs["flag_meanings"].split()[int(ds["verdict"].sel(d=2, K=4))] == "same"
    # (d, K) = (2, 4): the softmax code is the square, rho = 1 - cos(2 pi / 4) = 1
    assert float(ds["softmax_value"].sel(d=2, K=4)) == pytest.approx(1.0, abs=1e-6)
    assert float(ds["tammes_angle"].sel(d=2, K=4)) == pytest.approx(90.0, abs=1e-4)
    # NaN padding where K < max K
    assert np.isnan(ds["softmax_code"].sel(d=2, K=4).values[4:]).all()
    frac = ds["gnc2_fraction"].sel(variant="normalized-ce", dataset="digits", arch="smallcnn", tau=0.1, d=3, K=5,
                                   seed=0)
    assert 0 < float(frac) <= 1 + 1e-9


def test_study_catalog_and_figures(study):
    ds = xr.open_dataset(study / "results" / "study.nc", engine="netcdf4")
    assert {"gnc1", "train_loss", "gnc2_fraction"} <= set(ds.data_vars)
    cfg = json.loads(ds.attrs["gnc_config"])
    assert cfg["experiments"]["easy"]["K"] == [5]
    import pandas as pd

    df = pd.read_csv(study / "results" / "study.csv")
    assert {"run", "experiment", "dataset", "tau", "d", "K", "epoch", "variable", "value"} <= set(df.columns)
    assert "gnc1" in set(df["variable"])
    for kind in ("codes", "sphere", "ufm_tau"):
        for ext in ("png", "pdf", "csv", "provenance.json"):
            assert (study / "results" / "figures" / f"{kind}.{ext}").stat().st_size > 0
    # one temperature: no temperature sweep to draw, and the index of figures says so
    assert not (study / "results" / "figures" / "tau_sweep.png").exists()
    index = (study / "results" / "figures" / "index.rst").read_text()
    assert "tau_sweep" in index.split("Not drawn in this study")[1]


def test_report(study):
    snakemake(study, "--report", "results/report.html")
    html = (study / "results" / "report.html").read_text(errors="replace")
    assert "sphere.png" in html and "Not drawn in this study" in html and len(html) > 100_000


def test_second_run_has_nothing_to_do(study):
    proc = snakemake(study, "-n", "--cores", "1")
    assert "Nothing to be done" in proc.stdout + proc.stderr

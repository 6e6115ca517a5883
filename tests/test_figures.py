"""Tests of gnc.figures on synthetic netCDF files with the schemas of results/metrics.nc, results/codes.nc
and the per-checkpoint features files.

The checks are independent of the figure code: every CSV row is compared with the value read back
from the netCDF file with plain xarray (mean / min / max over seeds computed here), the expected set of
plotted points is derived from the file's NaN pattern, and the sphere coordinates are recomputed
with numpy.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.colors import to_rgb

from gnc.io import open_netcdf, write_netcdf
from gnc.results import RUN_DIMS

import gnc.figures as F

REPORT_DIR = __import__("pathlib").Path(__file__).resolve().parents[1] / "workflow" / "report"

VARIANTS = ["normalized-ce", "cmf-ce", "linear-ce", "normalized-hardmax"]
DATASETS = ["digits", "glyphs"]
ARCHS = ["resnet8", "smallcnn"]
TAUS = [1.0, 0.2, 1 / 7, 0.1]
DS_ = [2, 3, 10]
KS = [5, 10, 12]
SEEDS = [0, 1, 2]
EPOCHS = [0, 5, 10, 15, 20]
METRIC_VARS = ["gnc1", "gnc2", "gnc2_mean", "gnc2_lower", "gnc2_upper", "gnc2_gap", "gnc3", "gnc3_uncentered",
               "nc1", "nc2_equinorm_means", "nc2_equinorm_weights", "nc2_equiangular_means",
               "nc2_equiangular_weights", "nc2_maxangle_means", "nc2_maxangle_weights", "nc3", "nc4",
               "ncc_train_acc", "ncc_test_acc", "train_acc", "test_acc", "min_angle"]
DIMS = (*RUN_DIMS, "epoch")
CLASS_NAMES = ["automobile", "cat", "dog", "truck"]


# ----------------------------------------------------------------------------- synthetic files

def _runs():
    """(variant, dataset, arch, tau, d, K, seed) of the runs of a sparse synthetic study with every
    comparison of the default study: the headline setting is glyphs / smallcnn / d = 10 / K = 12."""
    runs = set()
    for t in TAUS:  # tau sweep; tau = 0.1 has three seeds, the others one
        for s in (SEEDS if t == 0.1 else [0]):
            runs.add(("normalized-ce", "glyphs", "smallcnn", t, 10, 12, s))
    for s in (0, 1):  # second architecture
        runs.add(("normalized-ce", "glyphs", "resnet8", 0.1, 10, 12, s))
    for v in ("cmf-ce", "normalized-hardmax"):  # classifier variants next to the learnable classifier
        runs.add((v, "glyphs", "smallcnn", 0.1, 10, 12, 0))
    for s in (0, 1):  # linear-head baseline, K <= d + 1
        runs.add(("linear-ce", "glyphs", "smallcnn", 1.0, 10, 5, s))
    for dd in DS_:  # d sweep at K = 12
        runs.add(("normalized-ce", "glyphs", "smallcnn", 0.1, dd, 12, 0))
    for k in KS:  # K sweep at d = 10
        runs.add(("normalized-ce", "glyphs", "smallcnn", 0.1, 10, k, 0))
    for t in (1.0, 0.1):  # a smaller second tau sweep on another dataset
        runs.add(("normalized-ce", "digits", "smallcnn", t, 3, 5, 0))
    return runs


def make_metrics(seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    coords = dict(variant=VARIANTS, dataset=DATASETS, arch=ARCHS, tau=TAUS, d=DS_, K=KS, seed=SEEDS, epoch=EPOCHS)
    shape = tuple(len(coords[d]) for d in DIMS)
    run = np.zeros(shape, dtype=bool)
    for v, ds_, a, t, dd, k, s in _runs():
        run[VARIANTS.index(v), DATASETS.index(ds_), ARCHS.index(a), TAUS.index(t), DS_.index(dd), KS.index(k),
            SEEDS.index(s)] = True
    ep = np.asarray(EPOCHS, float).reshape((1,) * 7 + (-1,))
    data = {}
    for name in METRIC_VARS:
        u = rng.uniform(0.5, 1.5, size=shape)
        if name in ("gnc1", "nc1"):
            vals = 6.0 * np.exp(-ep / 4.0) * u + 1e-4
        elif name.startswith("gnc3"):
            vals = np.exp(-ep / 5.0) * u * 0.9 + 1e-4
        elif name.endswith("acc"):
            vals = np.clip(0.1 + 0.8 * (1 - np.exp(-ep / 6.0)) * u / 1.5, 0, 1)
        elif name == "min_angle":
            vals = 30 + 20 * u
        else:
            vals = 0.6 * (1 - np.exp(-ep / 6.0)) * u / 1.5
        vals = np.where(run, vals, np.nan)
        units = "degree" if name == "min_angle" else "1"
        data[name] = (DIMS, vals, {"units": units, "long_name": f"synthetic {name}"})
    ds = xr.Dataset(data, coords=coords, attrs={"gnc_code_version": "test", "gnc_dataset_path": "resources/x",
                                                 "gnc_dataset_checksum": "abc"})
    return ds


def expected_runs(**sel):
    """The synthetic runs as coordinate dicts (what the workflow passes as ``expected``)."""
    out = [dict(zip(RUN_DIMS, r)) for r in sorted(_runs(), key=str)]
    return [r for r in out if all(r[k] == v for k, v in sel.items())]


def make_codes(seed: int = 1) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    d = [2, 3, 10]
    K = [4, 5, 10, 12]
    kmax = max(K)
    sv = rng.uniform(0.2, 1.3, size=(len(d), len(K)))
    to = sv.copy()
    to[1, 3] -= 0.05  # (3, 12): Tammes solution worse in one-vs-rest distance
    to[2, 2] -= 0.002  # (10, 10): differs
    to[0, 1] -= 1e-5  # (2, 5): equal within tolerance
    sv[0, 3] = np.nan  # (2, 12) softmax not solved -> missing point
    sang = rng.uniform(20, 90, size=sv.shape)
    tang = sang + 1.0
    verdict = np.where(np.abs(sv - to) > 1e-3, 1, 0).astype(np.int8)  # differ where the gap exceeds 1e-3
    verdict[np.isnan(sv)] = -1  # no verdict where the softmax code was not solved
    paper = np.full(sv.shape, np.nan)
    paper[2, 2] = 0.6
    taus = [1.0, 0.1, 0.01]
    ufm_ovr = rng.uniform(0.2, 1.0, size=(len(taus), len(d), len(K))) * sv[None]
    ufm_ovr[2, 1, 3] = np.nan  # (tau 0.01, d 3, K 12) missing
    ufm_ovr[:, 0, :] = np.nan  # d = 2 never run for the UFM
    ufm_dist = np.where(np.isnan(ufm_ovr), np.nan, rng.uniform(0.01, 1.0, size=ufm_ovr.shape))
    ufm_ang = np.where(np.isnan(ufm_ovr), np.nan, rng.uniform(10, 80, size=ufm_ovr.shape))
    # assignment: gram over (dataset, arch, seed, k, k2), K = 4 runs NaN-padded to kmax
    gram = np.full((1, 1, 3, kmax, kmax), np.nan)
    for s in range(3):
        w = rng.normal(size=(4, 2))
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        gram[0, 0, s, :4, :4] = w @ w.T
    names = np.array(CLASS_NAMES + [""] * (kmax - 4), dtype=object)
    ds = xr.Dataset(
        {
            "softmax_value": (("d", "K"), sv, {"units": "1", "long_name": "best softmax code rho_ovr"}),
            "tammes_ovr": (("d", "K"), to, {"units": "1", "long_name": "rho_ovr of the Tammes code"}),
            "softmax_min_angle": (("d", "K"), sang, {"units": "degree", "long_name": "min angle"}),
            "tammes_angle": (("d", "K"), tang, {"units": "degree", "long_name": "Tammes angle"}),
            "paper_optimal": (("d", "K"), paper, {"units": "1", "long_name": "paper optimal"}),
            "verdict": (("d", "K"), verdict, {"units": "1", "flag_values": [0, 1, 2],
                                              "flag_meanings": "same differ undecided"}),
            "ufm_ovr": (("tau", "d", "K"), ufm_ovr, {"units": "1", "long_name": "UFM rho_ovr"}),
            "ufm_distance_to_code": (("tau", "d", "K"), ufm_dist, {"units": "1", "long_name": "distance"}),
            "ufm_min_angle": (("tau", "d", "K"), ufm_ang, {"units": "degree", "long_name": "UFM min angle"}),
            "gram": (("dataset", "arch", "seed", "k", "k2"), gram, {"units": "1", "long_name": "cosine"}),
            "class_name": (("k",), names),
        },
        coords={"d": d, "K": K, "tau": taus, "dataset": ["cifar10-4"], "arch": ["smallcnn"], "seed": [0, 1, 2],
                "k": np.arange(kmax), "k2": np.arange(kmax)},
        attrs={"gnc_code_version": "test-codes"},
    )
    return ds


def make_features(d: int, K: int = 5, n_per: int = 40, seed: int = 2) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(K, d))
    y = np.repeat(np.arange(K), n_per)
    H = 3.0 * W[y] + 0.6 * rng.normal(size=(len(y), d))
    return xr.Dataset({"train_h": (("train_sample", "component"), H), "train_y": (("train_sample",), y),
                       "W": (("k", "component"), W)},
                      attrs={"tau": 0.1, "gnc_code_version": "test-features"})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("figdata")
    paths = {"metrics": root / "metrics.nc", "codes": root / "codes.nc", "f2": root / "feat2.nc",
             "f3": root / "feat3.nc"}
    write_netcdf(make_metrics(), paths["metrics"])
    write_netcdf(make_codes(), paths["codes"])
    write_netcdf(make_features(2), paths["f2"])
    write_netcdf(make_features(3, K=6), paths["f3"])
    return paths


@pytest.fixture(scope="module")
def metrics(files):
    return open_netcdf(files["metrics"])


@pytest.fixture(scope="module")
def codes(files):
    return open_netcdf(files["codes"])


# ----------------------------------------------------------------------------- independent checks

def _reopen(path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


def _seed_stats(ds, metric, row):
    """mean/min/max/count over seeds of one (setting, epoch) cell of the re-opened netCDF file."""
    da = ds[metric].sel(variant=row["variant"], dataset=row["dataset"], arch=row["arch"], d=int(row["d"]),
                        K=int(row["K"]), epoch=int(row["epoch"]))
    da = da.sel(tau=float(row["tau"]), method="nearest")
    assert math.isclose(float(da["tau"]), float(row["tau"]), rel_tol=1e-12)
    v = da.values.astype(float)
    ok = ~np.isnan(v)
    return v[ok].mean(), v[ok].min(), v[ok].max(), int(ok.sum())


def _check_curve_rows(csv_path, metrics_path):
    df = pd.read_csv(csv_path)
    trained = df[df["series"] == "trained"]
    assert len(trained) > 0
    ds = _reopen(metrics_path)
    for _, row in trained.iterrows():
        mean, lo, hi, n = _seed_stats(ds, row["metric"], row)
        assert row["value"] == pytest.approx(mean, rel=1e-12, abs=0)
        assert row["lower"] == pytest.approx(lo, rel=1e-12, abs=0)
        assert row["upper"] == pytest.approx(hi, rel=1e-12, abs=0)
        assert row["n_seeds"] == n
    return df


def _expected_points(path, metric, **sel):
    """number of (tau/arch/..., epoch) points with data for a selection, counted with xarray."""
    with xr.open_dataset(path) as ds:
        da = ds[metric]
        for k, v in sel.items():
            da = da.sel({k: v})
        return int(da.notnull().any("seed").sum())


def _saved(prefix):
    out = {}
    for ext in ("png", "pdf", "csv", "provenance.json"):
        p = prefix.parent / f"{prefix.name}.{ext}"
        assert p.is_file() and p.stat().st_size > 0, p
        out[ext] = p
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["pdf"].read_bytes()[:5] == b"%PDF-"
    return out


def _ax(fig, gid):
    hits = [a for a in fig.axes if a.get_gid() == gid]
    assert hits, [a.get_gid() for a in fig.axes]
    return hits[0]


# ----------------------------------------------------------------------------- registry and plan

HEADLINE = {"variant": "normalized-ce", "dataset": "glyphs", "arch": "smallcnn", "d": 10, "K": 12}


def test_registry_drives_dispatch_schema_and_report():
    from gnc.config import load_schema

    assert set(F.FIGURES) == set(F.REGISTRY)
    schema_kinds = set(load_schema()["properties"]["figures"]["properties"]) - {"formats", "dpi"}
    assert schema_kinds == {k for k, spec in F.REGISTRY.items() if spec.inputs != ("codes",)}
    report = REPORT_DIR
    for spec in F.REGISTRY.values():
        assert (report / spec.report_caption).is_file(), spec.report_caption
        assert callable(F.FIGURES[spec.kind]) and spec.inputs


def test_plan_picks_the_headline_setting_and_refuses_single_levels():
    plans = F.plan_figures(expected_runs())
    assert all(p.draw for p in plans.values()), {k: p.why for k, p in plans.items() if not p.draw}
    tau = plans["tau_sweep"]
    assert {k: tau.select[k] for k in HEADLINE} == HEADLINE
    assert np.allclose(sorted(tau.select["tau"]), sorted(TAUS)) and tau.select["seed"] == [0, 1, 2]
    assert len(tau.expected) == 3 + 3  # three taus with seed 0, tau = 0.1 with seeds 0, 1, 2
    assert plans["arch_comparison"].select["arch"] == ARCHS and plans["arch_comparison"].select["tau"] == 0.1
    assert plans["cmf"].select["variant"] == ["cmf-ce", "normalized-ce", "normalized-hardmax"]
    assert plans["nc"].select["variant"] == "linear-ce" and plans["nc"].select["K"] == 5
    assert plans["k_sweep"].select["K"] == KS and plans["d_sweep"].select["d"] == DS_
    assert [r["d"] for r in plans["sphere"].expected] == [2, 3]  # one run per d in {2, 3}
    # the config chooses: the smaller tau sweep on digits
    digits = F.plan_figure("tau_sweep", expected_runs(), {"dataset": "digits"})
    assert digits.select["dataset"] == "digits" and digits.select["K"] == 5 and len(digits.select["tau"]) == 2
    # fewer than two levels of what a figure compares: not drawn, and the reason says what is missing
    one_arch = [r for r in expected_runs() if r["arch"] == "smallcnn"]
    plan = F.plan_figure("arch_comparison", one_arch)
    assert not plan.draw and "architecture" in plan.why
    no_linear = [r for r in expected_runs() if r["variant"] != "linear-ce"]
    assert not F.plan_figure("nc", no_linear).draw
    single_seed = [r for r in expected_runs() if r["seed"] == 0]
    assert F.plan_figure("assignment", single_seed).draw is False
    assert not F.plan_figure("sphere", [r for r in expected_runs() if r["d"] == 10]).draw
    with pytest.raises(ValueError, match="unknown key"):
        F.plan_figure("tau_sweep", expected_runs(), {"datset": "glyphs"})
    with pytest.raises(ValueError, match="codes.nc"):
        F.plan_figure("codes", expected_runs(), {"d": 3})
    # what the workflow passes to each figure drawn from the runs draws that setting
    metrics = make_metrics()
    for kind in ("tau_sweep", "arch_comparison", "cmf", "ncc", "nc", "k_sweep", "d_sweep"):
        fig, frame = F.make_figure(kind, metrics=metrics, codes=make_codes(), **plans[kind].as_params())
        assert not frame.attrs["no_data"] and frame.attrs["missing"] == [] or kind == "d_sweep", kind
        for dim, value in plans[kind].select.items():
            if dim != "seed" and not isinstance(value, list):
                assert frame.attrs["selection"][dim] == value, (kind, dim)
    index = F.registry.figure_index_rst({**plans, "arch_comparison": plan})
    assert "Not drawn in this study" in index and "arch_comparison" in index.split("Not drawn")[1]


# ----------------------------------------------------------------------------- curves vs epoch

def test_tau_sweep_saves_and_csv_equals_netcdf(files, metrics, codes, tmp_path):
    fig, frame = F.fig_tau_sweep(metrics, codes, expected=expected_runs(**{k: v for k, v in HEADLINE.items()}))
    # log scale for GNC1 and GNC3, accuracy as percentage on a linear axis
    assert _ax(fig, "gnc1").get_yscale() == "log" and _ax(fig, "gnc3").get_yscale() == "log"
    assert _ax(fig, "gnc2").get_yscale() == "linear" and "%" in _ax(fig, "test_acc").get_ylabel()
    assert all(a.get_xlabel() == "epoch" for a in fig.axes if a.get_gid())
    assert len([ln for ln in _ax(fig, "gnc1").get_lines() if len(ln.get_xdata())]) == 4
    caption = F.figure_caption("tau_sweep", frame=frame)
    paths = F.save_figure(fig, frame, tmp_path / "tau_sweep", caption=caption, formats=("png", "pdf", "svg"))
    out = _saved(tmp_path / "tau_sweep")
    assert paths["svg"].read_text().lstrip().startswith("<?xml")
    assert paths["caption"].read_text().strip() == F.rst_escape(caption)
    df = _check_curve_rows(out["csv"], files["metrics"])
    tr = df[df["series"] == "trained"]
    for k, v in HEADLINE.items():  # exactly the headline setting
        assert set(tr[k]) == {v}, k
    for m in ("gnc1", "gnc2", "gnc3", "test_acc"):
        assert (tr["metric"] == m).sum() == _expected_points(files["metrics"], m, **HEADLINE)
    # the seeds of each line are those that exist: tau = 0.1 has three, the others one
    assert set(tr.loc[np.isclose(tr["tau"], 0.1), "n_seeds"]) == {3}
    assert set(tr.loc[~np.isclose(tr["tau"], 0.1), "n_seeds"]) == {1}
    title = fig.get_suptitle().replace("\n", " ")
    assert "glyphs" in title and "K=12" in title and "d=10" in title
    assert "τ=1, 1/5, 1/7: 0" in title and "τ=1/10: 0, 1, 2" in title
    assert frame.attrs["missing"] == []  # every run asked for has data; no seed nobody asked for
    with xr.open_dataset(files["codes"]) as c:
        sv = float(c.softmax_value.sel(d=10, K=12))
    ref = df[df["series"] == "softmax code"]
    assert len(ref) == 1 and ref["value"].iloc[0] == pytest.approx(sv, rel=1e-12)
    prov = json.loads(out["provenance.json"].read_text())
    assert prov["gnc_figure"] == "tau_sweep" and "gnc_code_version" in prov
    sources = json.loads(prov["gnc_sources"])
    assert str(files["metrics"]) in sources and str(files["codes"]) in sources
    assert sources[str(files["metrics"])]["attrs"]["gnc_code_version"] == "test"
    assert len(sources[str(files["metrics"])]["sha256"]) == 64
    assert json.loads(prov["gnc_dataset_path"]) == ["resources/x"]
    assert "glyphs" in caption and "smallcnn" in caption and "1/7" in caption and "K = 12" in caption
    assert "Epochs 0–20 (5 checkpoints)" in caption and "τ=1/10: 0, 1, 2" in caption


def test_selection_keywords_choose_the_setting(metrics, codes):
    fig, frame = F.fig_tau_sweep(metrics, codes, dataset="digits")
    tr = frame[frame["series"] == "trained"]
    assert set(tr["dataset"]) == {"digits"} and set(tr["d"]) == {3} and set(tr["K"]) == {5}
    assert np.allclose(sorted(tr["tau"].unique()), [0.1, 1.0])
    fig, frame = F.make_figure("tau_sweep", metrics=metrics, tau=[1.0, 0.1])
    assert set(np.round(frame["tau"].dropna().unique(), 9)) == {1.0, 0.1}
    with pytest.raises(TypeError, match="unknown selection"):
        F.fig_tau_sweep(metrics, codes, taus=[1.0])


def test_arch_comparison_cmf_ncc(files, metrics, codes, tmp_path):
    style = F.Style.from_datasets(metrics, codes)
    fig, frame = F.fig_arch_comparison(metrics, codes, style=style)
    F.save_figure(fig, frame, tmp_path / "arch")
    df = _check_curve_rows(_saved(tmp_path / "arch")["csv"], files["metrics"])
    tr = df[df["series"] == "trained"]
    assert set(tr["arch"]) == set(ARCHS) and np.allclose(tr["tau"].unique(), [0.1]) and set(tr["K"]) == {12}
    cols = {tuple(np.round(to_rgb(ln.get_color()), 6)) for a in fig.axes for ln in a.get_lines()
            if len(ln.get_xdata())}
    assert all(tuple(np.round(style.arch_color(a)[:3], 6)) in cols for a in ARCHS)
    fig, frame = F.fig_cmf(metrics)
    F.save_figure(fig, frame, tmp_path / "cmf")
    df = _check_curve_rows(_saved(tmp_path / "cmf")["csv"], files["metrics"])
    assert set(df["variant"]) == {"cmf-ce", "normalized-ce", "normalized-hardmax"}
    assert set(df["metric"]) == {"train_acc", "test_acc"} and set(df["arch"]) == {"smallcnn"}
    colours = [to_rgb(ln.get_color()) for ln in _ax(fig, "train_acc").get_lines() if len(ln.get_xdata())]
    assert len({tuple(np.round(c, 6)) for c in colours}) == 3  # distinct colours
    fig, frame = F.fig_ncc(metrics)
    F.save_figure(fig, frame, tmp_path / "ncc")
    df = _check_curve_rows(_saved(tmp_path / "ncc")["csv"], files["metrics"])
    assert set(df["metric"]) == {"ncc_train_acc", "ncc_test_acc"} and len(df["tau"].unique()) == 4
    cap = F.figure_caption("ncc", frame=frame)
    assert "NCC" in cap or "nearest-class-centre" in cap
    assert "τ ∈ {1/10, 1/7, 1/5, 1}" in cap


def test_nc_panels_of_the_linear_head(files, metrics, tmp_path):
    fig, frame = F.fig_nc(metrics)
    F.save_figure(fig, frame, tmp_path / "nc")
    df = pd.read_csv(_saved(tmp_path / "nc")["csv"])
    assert set(df["variant"]) == {"linear-ce"} and set(df["K"]) == {5}
    assert {"train_error", "nc1", "nc2_equinorm_means", "nc2_equinorm_weights", "nc2_equiangular_means",
            "nc2_maxangle_weights", "nc3", "nc4"} <= set(df["metric"])
    ds = _reopen(files["metrics"])
    for _, row in df.iterrows():
        name = "train_acc" if row["metric"] == "train_error" else row["metric"]
        mean, lo, hi, n = _seed_stats(ds, name, row)
        if row["metric"] == "train_error":  # 1 - accuracy: the mean maps, min and max swap
            mean, lo, hi = 1 - mean, 1 - hi, 1 - lo
        assert row["value"] == pytest.approx(mean, rel=1e-12) and row["n_seeds"] == n == 2
        assert row["lower"] == pytest.approx(lo, rel=1e-12) and row["upper"] == pytest.approx(hi, rel=1e-12)
    assert _ax(fig, "nc1").get_yscale() == "log"
    styles = [ln.get_linestyle() for ln in _ax(fig, "nc2_equinorm_means").get_lines() if len(ln.get_xdata())]
    assert sorted(styles) == ["-", "--"]  # class means solid, classifier rows dashed
    assert "linear-ce" in fig.get_suptitle() and "K=5" in fig.get_suptitle()


def test_missing_runs_are_those_asked_for(files, metrics, codes, tmp_path):
    ds = metrics.copy(deep=True)
    cell = dict(variant="normalized-ce", dataset="glyphs", arch="smallcnn", d=10, K=12, seed=0)
    ti = TAUS.index(0.2)
    for v in METRIC_VARS:
        ds[v].loc[{**cell, "tau": TAUS[ti]}] = np.nan
    asked = expected_runs(**HEADLINE)
    asked.append({**asked[0], "tau": 0.05, "seed": 0})  # asked for, never run
    fig, frame = F.fig_tau_sweep(ds, codes, expected=asked)
    miss = frame.attrs["missing"]
    assert len(miss) == 2
    assert {(m["tau"], m["seed"]) for m in miss} == {(0.2, 0), (0.05, 0)}
    note = F.caption_gap_note(frame)
    assert "τ=1/5" in note and "τ=1/20" in note and note in F.figure_caption("tau_sweep", frame=frame)
    # without the list of runs asked for nothing is called missing (seeds 1, 2 of tau = 1 are not gaps)
    _, frame = F.fig_tau_sweep(ds, codes)
    assert not [m for m in frame.attrs["missing"] if "seed" in m]


@pytest.mark.parametrize("kind", sorted(F.FIGURES))
def test_no_data_figure(kind, metrics, codes, tmp_path):
    func = F.FIGURES[kind]
    empty_metrics = metrics.where(metrics.gnc1 > 1e9)  # all NaN
    if kind in ("assignment", "ufm_tau", "codes"):
        fig, frame = func(None)
        fig2, frame2 = func(codes.drop_vars([v for v in codes.data_vars]))
    elif kind == "sphere":
        fig, frame = func(None)
        fig2, frame2 = func({"run": make_features(10)})  # d = 10 cannot be drawn on a sphere
        assert "d = 2 or 3" in F.caption_gap_note(frame2)
    else:
        fig, frame = func(None)
        fig2, frame2 = func(empty_metrics)
    for f, fr in ((fig, frame), (fig2, frame2)):
        assert fr.attrs["no_data"] and len(fr) == 0
        texts = [t.get_text() for a in f.axes for t in a.texts]
        assert any("No data for this figure in this study" in t for t in texts)
        assert "No data" in F.figure_caption(kind, frame=fr)
    F.save_figure(fig2, frame2, tmp_path / kind, formats=("png",))
    assert (tmp_path / f"{kind}.csv").is_file() and (tmp_path / f"{kind}.png").is_file()
    assert not (tmp_path / f"{kind}.pdf").exists()  # only the formats asked for


def test_metric_absent_everywhere_and_no_seed_dimension(metrics):
    ds = metrics.copy()
    ds["gnc2"] = ds["gnc2"] * np.nan
    fig, frame = F.fig_tau_sweep(ds, None)
    assert not (frame["metric"] == "gnc2").any() and (frame["metric"] == "gnc1").any()
    fig, frame = F.fig_cmf(metrics.isel(seed=0, drop=True))
    assert len(frame) and (frame["n_seeds"] == 1).all()


# ----------------------------------------------------------------------------- last checkpoint vs K, d

def _last(ds, metric, **coords):
    s = ds[metric].sel(**coords).dropna("epoch")
    return float(s.values[-1]), int(s["epoch"].values[-1])


def test_k_sweep(files, metrics, codes, tmp_path):
    ds = _reopen(files["metrics"])
    # one run of K = 5 stops early: its last checkpoint is epoch 10
    short = metrics.copy(deep=True)
    for v in METRIC_VARS:
        short[v].loc[dict(variant="normalized-ce", dataset="glyphs", arch="smallcnn", tau=0.1, d=10, K=5, seed=0,
                          epoch=[15, 20])] = np.nan
    fig, frame = F.fig_k_sweep(short, codes)
    F.save_figure(fig, frame, tmp_path / "ksweep")
    df = pd.read_csv(_saved(tmp_path / "ksweep")["csv"])
    tr = df[df["series"] == "trained"]
    assert set(tr["K"]) == set(KS) and set(tr["d"]) == {10} and np.allclose(tr["tau"].unique(), [0.1])
    assert _ax(fig, "gnc1").get_xlabel() == "number of classes K"
    for _, row in tr.iterrows():
        seeds = [s for s in SEEDS if ds[row["metric"]].sel(variant="normalized-ce", dataset="glyphs",
                                                           arch="smallcnn", tau=0.1, d=10, K=row["K"],
                                                           seed=s).notnull().any()]
        src = ds.sel(epoch=[0, 5, 10]) if row["K"] == 5 else ds  # the K = 5 run stopped at epoch 10
        vals = [_last(src, row["metric"], variant="normalized-ce", dataset="glyphs", arch="smallcnn", tau=0.1, d=10,
                      K=row["K"], seed=s)[0] for s in seeds]
        assert row["value"] == pytest.approx(np.mean(vals), rel=1e-12) and row["n_seeds"] == len(seeds)
        assert row["epoch"] == (10 if row["K"] == 5 else 20)
    with xr.open_dataset(files["codes"]) as c:
        for _, row in df[df["series"] == "softmax code"].iterrows():
            assert row["value"] == pytest.approx(float(c.softmax_value.sel(d=10, K=row["K"])), rel=1e-12)
    assert "Last checkpoint of each run: epochs 10, 20" in F.figure_caption("k_sweep", frame=frame)


def test_d_sweep(files, metrics, codes, tmp_path):
    fig, frame = F.fig_d_sweep(metrics, codes)
    F.save_figure(fig, frame, tmp_path / "dsweep")
    df = pd.read_csv(_saved(tmp_path / "dsweep")["csv"])
    tr = df[(df["series"] == "trained") & (df["metric"] == "gnc2")]
    assert set(tr["d"]) == set(DS_) and set(tr["K"]) == {12} and (tr["epoch"] == max(EPOCHS)).all()
    ds = _reopen(files["metrics"])
    with xr.open_dataset(files["codes"]) as c:
        for _, row in df[df["series"] == "softmax code"].iterrows():
            assert row["value"] == pytest.approx(float(c.softmax_value.sel(d=row["d"], K=12)), rel=1e-12)
        fr = df[df["metric"] == "gnc2_fraction"]
        assert set(fr["d"]) == {3, 10}  # no softmax value for (2, 12): no fraction, and a missing point
        for _, row in fr.iterrows():
            vals = ds.gnc2.sel(variant="normalized-ce", dataset="glyphs", arch="smallcnn", tau=0.1, d=row["d"], K=12,
                               epoch=20).values
            vals = vals[~np.isnan(vals)] / float(c.softmax_value.sel(d=row["d"], K=12))
            assert row["value"] == pytest.approx(vals.mean(), rel=1e-12)
            assert row["lower"] == pytest.approx(vals.min(), rel=1e-12)
    assert any(m.get("d") == 2 and m.get("K") == 12 for m in frame.attrs["missing"])


# ----------------------------------------------------------------------------- geometry

def test_assignment(files, codes, tmp_path):
    c = codes.copy()
    c.attrs["gnc_assignment_setting"] = json.dumps({"variant": "normalized-ce", "dataset": "cifar10-4",
                                                    "arch": "smallcnn", "tau": "0.2", "d": "2", "K": "4"})
    fig, frame = F.fig_assignment(c)
    F.save_figure(fig, frame, tmp_path / "assign")
    df = pd.read_csv(_saved(tmp_path / "assign")["csv"])
    assert len(df) == 3 * 16  # 3 seeds x 4 x 4 classes, padding dropped
    with xr.open_dataset(files["codes"]) as raw:
        for _, row in df.iterrows():
            ref = float(raw.gram.sel(dataset=row["dataset"], arch=row["arch"], seed=row["seed"], k=row["k"],
                                     k2=row["k2"]))
            assert row["cosine"] == pytest.approx(ref, rel=1e-12)
            assert row["class_k"] == CLASS_NAMES[row["k"]]
    labels = {t.get_text() for a in fig.axes for t in a.get_xticklabels()}
    assert set(CLASS_NAMES) <= labels
    title = fig.get_suptitle()
    assert "d=2" in title and "K=4" in title and "τ=1/5" in title
    # nothing is cut off: every tick label lies inside the saved image
    _inside_saved_image(fig)
    two = xr.concat([c.gram, c.gram.assign_coords(arch=["resnet8"])], "arch")  # two grid points with values
    with pytest.raises(ValueError, match="one grid point; 2 have values"):
        F.fig_assignment(xr.Dataset({"gram": two}))


def _inside_saved_image(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    fig.draw(renderer)
    tight = fig.get_tightbbox(renderer)  # what save_figure keeps (bbox_inches="tight")
    for ax in fig.axes:
        for t in ax.get_xticklabels() + ax.get_yticklabels() + [ax.title]:
            if t.get_text():
                bb = t.get_window_extent(renderer).transformed(fig.dpi_scale_trans.inverted())
                assert tight.x0 - 1e-6 <= bb.x0 and bb.x1 <= tight.x1 + 1e-6
                assert tight.y0 - 1e-6 <= bb.y0 and bb.y1 <= tight.y1 + 1e-6


def test_ufm_tau(files, codes, tmp_path):
    fig, frame = F.fig_ufm_tau(codes)
    ax = _ax(fig, "ufm_ovr_ratio|0")
    assert ax.get_xscale() == "log"
    F.save_figure(fig, frame, tmp_path / "ufm")
    df = pd.read_csv(_saved(tmp_path / "ufm")["csv"])
    with xr.open_dataset(files["codes"]) as c:
        ratio = df[df["metric"] == "ufm_ovr_ratio"]
        expected = (c.ufm_ovr / c.softmax_value).to_dataframe("r")["r"].dropna()
        assert len(ratio) == len(expected)
        for _, row in ratio.iterrows():
            ref = float(c.ufm_ovr.sel(d=row["d"], K=row["K"]).sel(tau=row["tau"], method="nearest")
                        / c.softmax_value.sel(d=row["d"], K=row["K"]))
            assert row["value"] == pytest.approx(ref, rel=1e-12)
        for _, row in df[df["metric"] == "ufm_distance_to_code"].iterrows():
            ref = float(c.ufm_distance_to_code.sel(d=row["d"], K=row["K"]).sel(tau=row["tau"], method="nearest"))
            assert row["value"] == pytest.approx(ref, rel=1e-12)
    assert not (df["d"] == 2).any()  # d = 2 never run: not part of the figure, not "missing"
    miss = frame.attrs["missing"]
    assert any(m.get("d") == 3 and m.get("K") == 12 and m.get("tau") == pytest.approx(0.01) for m in miss)
    assert all(m.get("d") != 2 for m in miss)


def test_codes_vs_tammes(files, codes, tmp_path):
    tol = 1e-3
    fig, frame = F.fig_codes(codes, tol=tol)
    F.save_figure(fig, frame, tmp_path / "codes")
    df = pd.read_csv(_saved(tmp_path / "codes")["csv"])
    with xr.open_dataset(files["codes"]) as c:
        for _, row in df[df["metric"] != "ovr_gain"].iterrows():
            assert row["value"] == pytest.approx(float(c[row["metric"]].sel(d=row["d"], K=row["K"])), rel=1e-12)
        sv, to = c.softmax_value, c.tammes_ovr
        both = (sv.notnull() & to.notnull())
        flagged = {(int(r.d), int(r.K)) for r in df[df["differs"] == True].itertuples()}  # noqa: E712
        expected = {(int(dd), int(kk)) for dd in c.d.values for kk in c.K.values
                    if bool(both.sel(d=dd, K=kk)) and int(c.verdict.sel(d=dd, K=kk)) == 1}
    assert flagged == expected and {(3, 12), (10, 10)} <= flagged and (2, 5) not in flagged
    assert any(m.get("d") == 2 and m.get("K") == 12 and "softmax_value" in m["metrics"] for m in frame.attrs["missing"])
    assert "d=2, K=12" in F.caption_gap_note(frame)


# ----------------------------------------------------------------------------- fig 9

@pytest.mark.parametrize("d", [2, 3])
def test_sphere(files, d, tmp_path):
    feats = open_netcdf(files[f"f{d}"])
    fig, frame = F.fig_sphere({"epoch 20": feats}, n_features=50, seed=3)
    F.save_figure(fig, frame, tmp_path / f"sphere{d}")
    df = pd.read_csv(_saved(tmp_path / f"sphere{d}")["csv"])
    with xr.open_dataset(files[f"f{d}"]) as raw:
        W = raw.W.values
        H = raw.train_h.values
        y = raw.train_y.values
    comps = ["x", "y", "z"][:d]
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    cw = df[df["kind"] == "classifier"].sort_values("k")
    assert len(cw) == W.shape[0]
    np.testing.assert_allclose(cw[comps].to_numpy(), Wn, rtol=1e-12, atol=1e-15)
    Hn = H / np.linalg.norm(H, axis=1, keepdims=True)
    means = np.stack([Hn[y == k].mean(0) for k in range(W.shape[0])])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    cm = df[df["kind"] == "class_mean"].sort_values("k")
    np.testing.assert_allclose(cm[comps].to_numpy(), means, rtol=1e-12, atol=1e-15)
    ft = df[df["kind"] == "feature"]
    assert len(ft) == 50
    np.testing.assert_allclose(ft[comps].to_numpy(), Hn[ft["sample"].to_numpy()], rtol=1e-12, atol=1e-15)
    assert (ft["k"].to_numpy() == y[ft["sample"].to_numpy()]).all()
    if d == 3:  # orthographic views: front shows z >= 0 at (x, y); back z < 0 at (-x, y)
        front, back = df[df["hemisphere"] == "front"], df[df["hemisphere"] == "back"]
        assert (front["z"] >= 0).all() and (back["z"] < 0).all() and len(front) + len(back) == len(df)
        np.testing.assert_allclose(back["px"], -back["x"])
        assert len([a for a in fig.axes if str(a.get_gid()).startswith("sphere")]) == 2
    else:
        np.testing.assert_allclose(df[["px", "py"]].to_numpy(), df[["x", "y"]].to_numpy())


def test_sphere_titles_do_not_overlap_and_labels_clear_the_markers(files):
    feats = {"digits, d=2, K=5, τ=1/5, seed 0": make_features(2), "digits, d=3, K=10, τ=1/10, seed 0":
             make_features(3, K=10)}
    fig, frame = F.fig_sphere(feats)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    titles = [sf._suptitle for sf in fig.subfigs] + [ax.title for ax in fig.axes if ax.get_title()]
    boxes = [t.get_window_extent(renderer) for t in titles]
    assert len(boxes) == 4  # two runs, and the two views of the d = 3 run
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (titles[i].get_text(), titles[j].get_text())
    # each class label starts outside its classifier star (offset away from the centre)
    for ax in fig.axes:
        for t in ax.texts:
            star = ax.transData.transform(t.xy)
            assert not t.get_window_extent(renderer).contains(*star), t.get_text()


def test_style_without_seaborn_matches_seaborn():
    import seaborn as sns

    from gnc.figures import _style

    for key, value in {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook")}.items():
        if key == "image.cmap":
            continue
        assert {**_style._WHITEGRID, **_style._NOTEBOOK}[key] == value, key
    assert _style.COLORBLIND == sns.color_palette("colorblind").as_hex()
    style = F.Style(taus=sorted(TAUS), archs=ARCHS)
    lum = [np.dot(style.tau_color(t)[:3], [0.299, 0.587, 0.114]) for t in sorted(TAUS, reverse=True)]
    assert all(a > b for a, b in zip(lum, lum[1:]))  # smaller tau is darker
    cols = F._style.categorical_colors(14)
    assert len({tuple(np.round(c, 4)) for c in cols}) == 14
    assert F.format_tau(1 / 7) == "1/7" and F.format_tau(1.0) == "1" and F.format_tau(0.05) == "1/20"


def test_pdf_saving_is_quiet(metrics, codes, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    fig, frame = F.fig_ncc(metrics)
    F.save_figure(fig, frame, tmp_path / "quiet", formats=("pdf",))
    assert (tmp_path / "quiet.pdf").read_bytes()[:5] == b"%PDF-"
    assert not [r for r in caplog.records if r.name.startswith("fontTools") and r.levelno < logging.WARNING]

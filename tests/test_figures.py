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

import gnc.figures as F

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
DIMS = ("variant", "dataset", "arch", "tau", "d", "K", "seed", "epoch")
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
    keys = ("variant", "dataset", "arch", "tau", "d", "K", "seed")
    out = [dict(zip(keys, r)) for r in sorted(_runs(), key=str)]
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


# ----------------------------------------------------------------------------- fig 1 / 2

def test_tau_sweep_saves_and_csv_equals_netcdf(files, metrics, codes, tmp_path):
    fig, frame = F.fig_tau_sweep(metrics, codes)
    # log scale for GNC1 and GNC3, accuracy as percentage on a linear axis
    assert _ax(fig, "gnc1|0").get_yscale() == "log"
    assert _ax(fig, "gnc3|0").get_yscale() == "log"
    assert _ax(fig, "gnc2|0").get_yscale() == "linear"
    assert "%" in _ax(fig, "test_acc|0").get_ylabel()
    assert all(a.get_xlabel() == "epoch" for a in fig.axes if a.get_gid())
    # one line per tau in the GNC1 panel (4 temperatures for smallcnn, d = 10)
    assert len([ln for ln in _ax(fig, "gnc1|0").get_lines() if len(ln.get_xdata())]) == 4
    caption = F.figure_caption("tau_sweep", frame=frame)
    paths = F.save_figure(fig, frame, tmp_path / "tau_sweep", caption=caption)
    out = _saved(tmp_path / "tau_sweep")
    assert paths["caption"].read_text().strip() == F.rst_escape(caption)
    df = _check_curve_rows(out["csv"], files["metrics"])
    # exactly the plotted points: settings with >= 2 taus only (smallcnn, d = 10)
    tr = df[df["series"] == "trained"]
    assert set(tr["arch"]) == {"smallcnn"} and set(tr["d"]) == {10}
    assert set(tr["variant"]) == {"normalized-ce"}
    for m in ("gnc1", "gnc2", "gnc3", "test_acc"):
        assert (tr["metric"] == m).sum() == _expected_points(files["metrics"], m, variant="normalized-ce",
                                                             arch="smallcnn", d=10, dataset="glyphs", K=10)
    # GNC2 reference lines: our softmax code value and the paper's line for (d, K) = (10, 10)
    with xr.open_dataset(files["codes"]) as c:
        sv = float(c.softmax_value.sel(d=10, K=10))
        po = float(c.paper_optimal.sel(d=10, K=10))
    ref = df[df["series"] == "softmax code"]
    assert len(ref) == 1 and ref["value"].iloc[0] == pytest.approx(sv, rel=1e-12)
    assert df.loc[df["series"] == "paper 'Optimal'", "value"].iloc[0] == pytest.approx(po, rel=1e-12)
    # provenance sidecar: gnc attributes + the source files' attributes and checksums
    prov = json.loads(out["provenance.json"].read_text())
    assert prov["gnc_figure"] == "tau_sweep" and "gnc_code_version" in prov
    sources = json.loads(prov["gnc_sources"])
    assert str(files["metrics"]) in sources and str(files["codes"]) in sources
    assert sources[str(files["metrics"])]["attrs"]["gnc_code_version"] == "test"
    assert len(sources[str(files["metrics"])]["sha256"]) == 64
    assert json.loads(prov["gnc_dataset_path"]) == ["resources/x"]
    # caption states the setting
    assert "glyphs" in caption and "smallcnn" in caption and "1/7" in caption and "Seeds 0, 1" in caption
    assert "Epochs 0–20 (5 checkpoints)" in caption


def test_arch_comparison(files, metrics, codes, tmp_path):
    fig, frame = F.fig_arch_comparison(metrics, codes)
    assert _ax(fig, "gnc1|0").get_yscale() == "log"
    F.save_figure(fig, frame, tmp_path / "arch")
    out = _saved(tmp_path / "arch")
    df = _check_curve_rows(out["csv"], files["metrics"])
    tr = df[df["series"] == "trained"]
    assert set(tr["arch"]) == set(ARCHS)
    # both d = 2 and d = 10 have two architectures at tau = 0.1: two rows of panels
    assert np.allclose(tr["tau"].unique(), [0.1]) and set(tr["d"]) == {2, 10}
    assert len([a for a in fig.axes if str(a.get_gid()).startswith("gnc1|")]) == 2
    # exactly the plotted points
    for m in ("gnc2", "test_acc"):
        n = sum(_expected_points(files["metrics"], m, variant="normalized-ce", arch=a, d=dd, dataset="glyphs", K=10,
                                 tau=0.1) for a in ARCHS for dd in DS_)
        assert (tr["metric"] == m).sum() == n


def test_style_colors_are_consistent_and_ordered(metrics, codes):
    style = F.Style.from_datasets(metrics, codes)
    fig, frame = F.fig_tau_sweep(metrics, codes, style=style)
    lines = [ln for ln in _ax(fig, "gnc1|0").get_lines() if len(ln.get_xdata())]
    got = {ln.get_label(): ln.get_color() for ln in lines}
    for t in (1.0, 0.2, 1 / 7, 0.1):
        assert np.allclose(to_rgb(got[F.tau_label(t)]), style.tau_color(t)[:3])
    # sequential: smaller tau is darker (lower luminance)
    lum = [np.dot(style.tau_color(t)[:3], [0.299, 0.587, 0.114]) for t in sorted(style.taus, reverse=True)]
    assert all(a > b for a, b in zip(lum, lum[1:]))
    # the same architecture has the same colour in two different figures
    fig2, _ = F.fig_arch_comparison(metrics, codes, style=style)
    fig5, _ = F.fig_ncc(metrics, style=style)
    for f in (fig2, fig5):
        cols = {tuple(np.round(to_rgb(ln.get_color()), 6)) for a in f.axes for ln in a.get_lines()
                if len(ln.get_xdata())}
        for a in ARCHS:
            assert tuple(np.round(style.arch_color(a)[:3], 6)) in cols
    assert F.format_tau(1 / 7) == "1/7" and F.format_tau(1.0) == "1" and F.format_tau(0.05) == "1/20"
    assert F.format_tau(0.3) == "3/10"


# ----------------------------------------------------------------------------- missing / no data

def test_missing_grid_points_are_reported_and_figure_still_drawn(files, metrics, codes, tmp_path):
    ds = metrics.copy(deep=True)
    ti = TAUS.index(0.2)
    # seed 1 of tau = 0.2 never ran; seed 0 of tau = 1/7 lacks epochs 15 and 20 for GNC2
    ds["gnc1"][0, 0, 1, ti, 1, 0, 1, :] = np.nan
    for v in METRIC_VARS:
        ds[v][0, 0, 1, ti, 1, 0, 1, :] = np.nan
    ds["gnc2"][0, 0, 1, TAUS.index(1 / 7), 1, 0, 0, 3:] = np.nan
    path = tmp_path / "metrics_gap.nc"
    write_netcdf(ds, path)
    ds = open_netcdf(path)
    # tau 0.05 is requested but was never run
    fig, frame = F.fig_tau_sweep(ds, codes, taus=[1.0, 0.2, 1 / 7, 0.1, 0.05])
    miss = frame.attrs["missing"]
    assert {"tau": 0.05, "metrics": "all", "what": "not in the results"} in miss
    gap = [m for m in miss if m.get("seed") == 1 and m.get("tau") == pytest.approx(0.2)]
    assert gap and gap[0]["metrics"] == "all"
    part = [m for m in miss if m.get("tau") == pytest.approx(1 / 7) and m.get("seed") == 0]
    assert part and part[0]["metrics"] == ["gnc2"] and part[0]["epochs"] == [15, 20]
    note = F.caption_gap_note(frame)
    assert "τ=1/5" in note and "seed 1" in note and "τ=1/20" in note and "epochs 15, 20" in note
    assert note in F.figure_caption("tau_sweep", frame=frame)
    F.save_figure(fig, frame, tmp_path / "gap")
    out = _saved(tmp_path / "gap")
    df = _check_curve_rows(out["csv"], path)  # the mean uses the remaining seed only
    r = df[(df["series"] == "trained") & np.isclose(df["tau"], 0.2)]
    assert len(r) and (r["n_seeds"] == 1).all()
    prov = json.loads(out["provenance.json"].read_text())
    assert len(json.loads(prov["gnc_missing"])) == len(miss)
    # the same points from the dataset directly
    direct = F.caption_gap_note(ds, "gnc1", ("tau", "seed"), setting_dims=("tau",), variant="normalized-ce",
                                arch="smallcnn", d=10)
    assert "τ=1/5, seed 1" in direct


@pytest.mark.parametrize("kind", sorted(F.FIGURES))
def test_no_data_figure(kind, metrics, codes, tmp_path):
    func = F.FIGURES[kind]
    empty_metrics = metrics.where(metrics.gnc1 > 1e9)  # all NaN
    if kind in ("assignment", "ufm_tau", "codes"):
        fig, frame = func(None)
        fig2, frame2 = func(codes.drop_vars([v for v in codes.data_vars]))
    elif kind == "sphere":
        fig, frame = func(None)
        fig2, frame2 = func(make_features(10))  # d = 10 cannot be drawn on a sphere
        assert "d = 2 or 3" in F.caption_gap_note(frame2)
    else:
        fig, frame = func(None) if kind not in ("d_sweep",) else func(None, None)
        fig2, frame2 = func(empty_metrics)
    for f, fr in ((fig, frame), (fig2, frame2)):
        assert fr.attrs["no_data"] and len(fr) == 0
        texts = [t.get_text() for a in f.axes for t in a.texts]
        assert any("No data for this figure in this study" in t for t in texts)
        assert "No data" in F.figure_caption(kind, frame=fr)
    F.save_figure(fig2, frame2, tmp_path / kind, formats=("png",))
    assert (tmp_path / f"{kind}.csv").is_file() and (tmp_path / f"{kind}.png").is_file()


# ----------------------------------------------------------------------------- fig 3 / 4 / 5

def test_d_sweep(files, metrics, codes, tmp_path):
    fig, frame = F.fig_d_sweep(metrics, codes)
    F.save_figure(fig, frame, tmp_path / "dsweep")
    df = pd.read_csv(_saved(tmp_path / "dsweep")["csv"])
    tr = df[(df["series"] == "trained") & (df["metric"] == "gnc2")]
    assert set(tr["d"]) == {2, 10} and set(tr["arch"]) == set(ARCHS)
    assert (tr["epoch"] == max(EPOCHS)).all()
    ds = _reopen(files["metrics"])
    for _, row in tr.iterrows():
        mean, lo, hi, n = _seed_stats(ds, "gnc2", row)
        assert row["value"] == pytest.approx(mean, rel=1e-12) and row["n_seeds"] == n
    with xr.open_dataset(files["codes"]) as c:
        for _, row in df[df["series"] == "softmax code"].iterrows():
            assert row["value"] == pytest.approx(float(c.softmax_value.sel(d=row["d"], K=row["K"])), rel=1e-12)
        fr = df[df["metric"] == "gnc2_fraction"]
        assert len(fr) == len(tr)
        for _, row in fr.iterrows():
            mean, *_ = _seed_stats(ds, "gnc2", row)
            assert row["value"] == pytest.approx(mean / float(c.softmax_value.sel(d=row["d"], K=row["K"])), rel=1e-12)


def test_cmf_and_ncc(files, metrics, tmp_path):
    fig, frame = F.fig_cmf(metrics)
    F.save_figure(fig, frame, tmp_path / "cmf")
    df = _check_curve_rows(_saved(tmp_path / "cmf")["csv"], files["metrics"])
    assert set(df["variant"]) == set(VARIANTS) and set(df["metric"]) == {"train_acc", "test_acc"}
    assert set(df["arch"]) == set(ARCHS)  # one panel per architecture
    styles = {ln.get_linestyle() for a in fig.axes for ln in a.get_lines() if len(ln.get_xdata())}
    assert {"-", "--"} <= styles
    fig, frame = F.fig_ncc(metrics, hue="tau")
    F.save_figure(fig, frame, tmp_path / "ncc")
    df = _check_curve_rows(_saved(tmp_path / "ncc")["csv"], files["metrics"])
    assert set(df["metric"]) == {"ncc_train_acc", "ncc_test_acc"} and len(df["tau"].unique()) == 4
    cap = F.figure_caption("ncc", frame=frame)
    assert "NCC" in cap and "τ ∈ {1/10, 1/7, 1/5, 1}" in cap


# ----------------------------------------------------------------------------- fig 6 / 7 / 8

def test_assignment(files, codes, tmp_path):
    fig, frame = F.fig_assignment(codes)
    F.save_figure(fig, frame, tmp_path / "assign")
    df = pd.read_csv(_saved(tmp_path / "assign")["csv"])
    assert len(df) == 3 * 16  # 3 seeds x 4 x 4 classes, padding dropped
    with xr.open_dataset(files["codes"]) as c:
        for _, row in df.iterrows():
            ref = float(c.gram.sel(dataset=row["dataset"], arch=row["arch"], seed=row["seed"], k=row["k"],
                                   k2=row["k2"]))
            assert row["cosine"] == pytest.approx(ref, rel=1e-12)
            assert row["class_k"] == CLASS_NAMES[row["k"]]
    labels = {t.get_text() for a in fig.axes for t in a.get_xticklabels()}
    assert set(CLASS_NAMES) <= labels


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
                    if bool(both.sel(d=dd, K=kk)) and abs(float(sv.sel(d=dd, K=kk) - to.sel(d=dd, K=kk))) > tol}
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


def test_make_figure_dispatch_and_missing_code_values(metrics, codes):
    # without codes.nc the GNC2 panel has no reference line and the caption says why
    fig, frame = F.make_figure("tau_sweep", metrics=metrics, taus=[1.0, 0.1])
    assert not (frame["series"] == "softmax code").any()
    assert {"d": 10, "K": 10, "metrics": ["softmax_value"], "what": "codes.nc not given"} in frame.attrs["missing"]
    assert "codes.nc not given" in F.figure_caption("tau_sweep", frame=frame)
    assert set(np.round(frame["tau"].dropna().unique(), 9)) == {1.0, 0.1}
    fig, frame = F.make_figure("codes", codes=codes, d=[3, 10], K=12)
    assert set(frame["d"]) == {3, 10} and set(frame["K"]) == {12}
    with pytest.raises(KeyError):
        F.make_figure("nope")


def test_metric_absent_everywhere_is_reported(metrics):
    ds = metrics.copy()
    ds["gnc2"] = ds["gnc2"] * np.nan
    fig, frame = F.fig_tau_sweep(ds, None)
    assert not (frame["metric"] == "gnc2").any() and (frame["metric"] == "gnc1").any()
    assert {"dataset": "glyphs", "arch": "smallcnn", "d": 10, "K": 10, "metrics": ["gnc2"],
            "what": "no data in this setting"} in frame.attrs["missing"]
    # a study without a seed dimension still draws (one implicit seed)
    fig, frame = F.fig_cmf(metrics.isel(seed=0, drop=True))
    assert len(frame) and (frame["n_seeds"] == 1).all()

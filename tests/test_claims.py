"""Claims of the two papers (gnc.claims): every rule on synthetic results where it must say true and
where it must say false, the not-tested case, and the CSV/provenance writer."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gnc import claims as C
from gnc.io import write_netcdf
from gnc.results import RUN_DIMS, combine_runs, with_run_coords

EPOCHS = (0, 5, 10)


def run(values: dict, *, variant="normalized-ce", dataset="glyphs", arch="smallcnn", tau=0.1, d=10, K=100,
        seed=0, epochs=EPOCHS) -> xr.Dataset:
    """One run's metrics over epochs; each value is (initial, final) — intermediate epochs interpolated —
    or a scalar (the same at every epoch)."""
    data = {}
    for name, v in values.items():
        a, b = (v, v) if np.isscalar(v) else v
        data[name] = ("epoch", np.linspace(a, b, len(epochs)))
    ds = xr.Dataset(data, coords={"epoch": list(epochs)})
    return with_run_coords(ds, {"variant": variant, "dataset": dataset, "arch": arch, "tau": float(tau), "d": d,
                                "K": K, "seed": seed})


def metrics(*runs) -> xr.Dataset:
    return combine_runs(list(runs))


def codes(values: dict[tuple[int, int], tuple[float, float]] | None = None, ufm=None, gram=None) -> xr.Dataset:
    """codes.nc stand-in: {(d, K): (softmax_value, tammes_ovr)} with the verdict 'differ' where softmax_value >
    tammes_ovr ('same' elsewhere), ufm {(d, K): {tau: ovr}}, gram (seed, k, k2)."""
    parts = []
    for (d, K), (s, t) in (values or {}).items():
        parts.append(xr.Dataset({"softmax_value": xr.DataArray([[s]], dims=("d", "K")),
                                 "tammes_ovr": xr.DataArray([[t]], dims=("d", "K")),
                                 "verdict": xr.DataArray([[1.0 if s > t else 0.0]], dims=("d", "K"))},
                                coords={"d": [d], "K": [K]}))
    for (d, K), by_tau in (ufm or {}).items():
        taus = sorted(by_tau)
        parts.append(xr.Dataset({"ufm_ovr": xr.DataArray(np.array([by_tau[t] for t in taus])[:, None, None],
                                                         dims=("ufm_tau", "d", "K"))},
                                coords={"ufm_tau": taus, "d": [d], "K": [K]}))
    if gram is not None:
        g = np.asarray(gram, dtype=float)
        parts.append(xr.Dataset({"gram": xr.DataArray(g[None, None], dims=("dataset", "arch", "seed", "k", "k2"))},
                                coords={"dataset": ["digits"], "arch": ["smallcnn"], "seed": np.arange(len(g)),
                                        "k": np.arange(g.shape[1]), "k2": np.arange(g.shape[1])}))
    return xr.merge(parts, join="outer", compat="no_conflicts") if parts else xr.Dataset()


def check(claim_id, m, c=None) -> C.Finding:
    claim = next(x for x in C.CLAIMS if x.id == claim_id)
    return claim.check(C.Study(C.run_table(m), C.Codes(c)))


def square(relabel=False):
    """Gram of a square code: classes (0, 2) and (1, 3) antipodal, or (0, 1) and (2, 3) relabelled."""
    angles = np.radians([0, 180, 90, 270] if relabel else [0, 90, 180, 270])
    W = np.stack([np.cos(angles), np.sin(angles)], 1)
    return W @ W.T


# ------------------------------------------------------------------------------ falls (GNC1/3)

def test_gnc1_and_gnc3_fall():
    good = metrics(run({"gnc1": (6.0, 0.01), "gnc3": (1.0, 0.01)}),
                   run({"gnc1": (6.0, 0.5), "gnc3": (1.0, 0.05)}, tau=1.0))
    assert check("gnc1_falls", good).holds is True and check("gnc3_falls", good).holds is True
    bad = metrics(run({"gnc1": (6.0, 0.01), "gnc3": (1.0, 0.01)}),
                  run({"gnc1": (6.0, 1.0), "gnc3": (1.0, 0.5)}, tau=1.0))
    f = check("gnc1_falls", bad)
    assert f.holds is False and f.value == pytest.approx(1.0 / 6.0)
    assert check("gnc3_falls", bad).holds is False
    # linear-head runs are not GNC runs: a linear run that does not collapse does not count
    other = metrics(run({"gnc1": (6.0, 0.01), "gnc3": (1.0, 0.01)}),
                    run({"gnc1": (6.0, 6.0), "gnc3": (1.0, 1.0)}, variant="linear-ce", K=10))
    assert check("gnc1_falls", other).holds is True
    # nor is a HardMax run (the claims are about CE training)
    other = metrics(run({"gnc1": (6.0, 0.01), "gnc3": (1.0, 0.01)}),
                    run({"gnc1": (6.0, 6.0), "gnc3": (1.0, 1.0)}, variant="normalized-hardmax"))
    assert check("gnc1_falls", other).holds is True and check("gnc3_falls", other).holds is True


def test_falls_is_not_tested_without_an_initial_checkpoint():
    m = metrics(run({"gnc1": 0.01, "gnc3": 0.01}, epochs=(10,)))
    f = check("gnc1_falls", m)
    assert f.holds is None and "not tested" in f.note


# ------------------------------------------------------------------------------------ τ sweep

def tau_sweep(gnc2, acc, train=(0.98, 0.999, 0.999), taus=(1.0, 0.2, 0.1), ncc=(0.5, 0.999, 0.999)):
    return metrics(*[run({"gnc2": g, "test_acc": a, "train_acc": t, "ncc_train_acc": n, "gnc1": (6, 0.01),
                          "gnc3": (1, 0.01)}, tau=tau)
                     for tau, g, a, t, n in zip(taus, gnc2, acc, train, ncc)])


def test_gnc2_smaller_tau():
    c = codes({(10, 100): (0.66, 0.64)})
    assert check("gnc2_smaller_tau", tau_sweep((0.1, 0.3, 0.35), (0.6, 0.7, 0.72)), c).holds is True
    # within tolerance: a dip of 0.005 from tau 0.2 to 0.1 still counts as non-decreasing
    assert check("gnc2_smaller_tau", tau_sweep((0.1, 0.3, 0.295), (0.6, 0.7, 0.72)), c).holds is True
    f = check("gnc2_smaller_tau", tau_sweep((0.1, 0.3, 0.2), (0.6, 0.7, 0.72)), c)
    assert f.holds is False
    assert check("gnc2_smaller_tau", tau_sweep((0.3, 0.2, 0.25), (0.6, 0.7, 0.72)), c).holds is False
    one_tau = metrics(run({"gnc2": 0.3}))
    assert check("gnc2_smaller_tau", one_tau, c).holds is None


def test_gnc2_near_code():
    c = codes({(10, 100): (0.6, 0.58)})
    assert check("gnc2_near_code", tau_sweep((0.1, 0.5, 0.55), (0.6, 0.7, 0.7)), c).holds is True
    f = check("gnc2_near_code", tau_sweep((0.1, 0.5, 0.5), (0.6, 0.7, 0.7)), c)
    assert f.holds is False and f.value == pytest.approx(0.5 / 0.6)
    assert check("gnc2_near_code", tau_sweep((0.1, 0.5, 0.55), (0.6, 0.7, 0.7)), None).holds is None


def test_test_accuracy_higher_at_small_tau():
    assert check("test_acc_smaller_tau", tau_sweep((0.1, 0.3, 0.35), (0.60, 0.70, 0.75))).holds is True
    f = check("test_acc_smaller_tau", tau_sweep((0.1, 0.3, 0.35), (0.60, 0.61, 0.75)))
    assert f.holds is False and f.value == pytest.approx(0.01)
    no_tau1 = tau_sweep((0.3, 0.35), (0.7, 0.75), train=(1, 1), taus=(0.2, 0.1), ncc=(1, 1))
    assert check("test_acc_smaller_tau", no_tau1).holds is None


def test_tau1_fails_to_fit_and_ncc():
    m = tau_sweep((0.1, 0.3, 0.35), (0.6, 0.7, 0.75), train=(0.95, 1.0, 1.0))
    assert check("tau1_fails_to_fit", m).holds is True
    assert check("ncc_train_fits", m).holds is True
    m = tau_sweep((0.1, 0.3, 0.35), (0.6, 0.7, 0.75), train=(0.995, 1.0, 1.0), ncc=(0.5, 0.98, 1.0))
    assert check("tau1_fails_to_fit", m).holds is False
    f = check("ncc_train_fits", m)
    assert f.holds is False and f.value == pytest.approx(0.98)


def test_hardmax_limit():
    sweep = [run({"gnc2": g}, tau=t) for t, g in ((1.0, 0.1), (0.2, 0.3), (0.1, 0.35))]
    near = metrics(*sweep, run({"gnc2": 0.4, "train_acc": 1.0}, variant="normalized-hardmax"))
    assert check("hardmax_limit", near).holds is True
    far = metrics(*sweep, run({"gnc2": 0.05, "train_acc": 1.0}, variant="normalized-hardmax"))
    assert check("hardmax_limit", far).holds is False
    unfit = metrics(*sweep, run({"gnc2": 0.4, "train_acc": 0.5}, variant="normalized-hardmax"))
    f = check("hardmax_limit", unfit)
    assert f.holds is None and "50.0 %" in f.note
    assert check("hardmax_limit", metrics(*sweep)).holds is None
    # a HardMax run at another grid point is no comparison
    other = metrics(*sweep, run({"gnc2": 0.4, "train_acc": 1.0}, variant="normalized-hardmax", d=5))
    assert check("hardmax_limit", other).holds is None


# ------------------------------------------------------------------------------------ d sweep

def d_sweep(gnc2, ds=(5, 10, 20)):
    return metrics(*[run({"gnc2": g}, d=d) for d, g in zip(ds, gnc2)])


def test_gnc2_and_gap_grow_with_d():
    c = codes({(5, 100): (0.3, 0.3), (10, 100): (0.66, 0.65), (20, 100): (0.9, 0.9)})
    m = d_sweep((0.25, 0.55, 0.7))   # gaps 0.05, 0.11, 0.2
    assert check("gnc2_grows_with_d", m, c).holds is True
    assert check("code_gap_grows_with_d", m, c).holds is True
    m = d_sweep((0.25, 0.62, 0.85))  # gaps 0.05, 0.04, 0.05: not increasing
    assert check("gnc2_grows_with_d", m, c).holds is True
    f = check("code_gap_grows_with_d", m, c)
    assert f.holds is False and f.value == pytest.approx(-0.01)
    m = d_sweep((0.25, 0.55, 0.5))
    assert check("gnc2_grows_with_d", m, c).holds is False
    assert check("code_gap_grows_with_d", m, None).holds is None


# ------------------------------------------------------------------------------- architectures

def test_archs_agree():
    c = codes({(10, 100): (0.6, 0.6)})
    mk = lambda g2, g1=0.01: metrics(run({"gnc1": (6, g1), "gnc2": g2[0], "gnc3": (1, 0.01), "test_acc": 0.7}),  # noqa: E731
                                     run({"gnc1": (6, 0.01), "gnc2": g2[1], "gnc3": (1, 0.01), "test_acc": 0.6},
                                         arch="mlp"))
    assert check("archs_agree", mk((0.50, 0.45)), c).holds is True
    assert check("archs_agree", mk((0.50, 0.40)), c).holds is False     # spread 0.1 > 0.06
    assert check("archs_agree", mk((0.50, 0.45), g1=1.0), c).holds is False  # smallcnn's GNC1 does not fall
    assert check("archs_agree", mk((0.50, 0.45)), None).holds is False  # no code value: the spread cannot be judged
    assert check("archs_agree", metrics(run({"gnc2": 0.5})), c).holds is None


# ------------------------------------------------------------------------------------------ CMF

def test_cmf_matches():
    mk = lambda a: metrics(run({"test_acc": 0.70, "train_acc": 1.0}),  # noqa: E731
                           run({"test_acc": a, "train_acc": 1.0}, variant="cmf0.9-ce"))
    assert check("cmf_matches", mk(0.71)).holds is True
    assert check("cmf_matches", mk(0.69)).holds is True
    f = check("cmf_matches", mk(0.65))
    assert f.holds is False and f.value == pytest.approx(-0.05)
    # CMF at another grid point is no comparison
    other = metrics(run({"test_acc": 0.7}), run({"test_acc": 0.6}, variant="cmf0.9-ce", d=5))
    assert check("cmf_matches", other).holds is None


# ------------------------------------------------------------------------------- softmax/Tammes

def test_softmax_not_tammes():
    c = codes({(10, 25): (0.89, 0.69), (10, 100): (0.66, 0.66)})
    m = metrics(run({"gnc2": 0.85, "train_acc": 1.0}, K=25), run({"gnc2": 0.3, "train_acc": 1.0}))
    f = check("softmax_not_tammes", m, c)
    assert f.holds is True and "K=100" not in f.measured  # (10, 100): the codes do not differ
    m = metrics(run({"gnc2": 0.75, "train_acc": 1.0}, K=25))
    f = check("softmax_not_tammes", m, c)
    assert f.holds is False and f.note == ""
    f = check("softmax_not_tammes", metrics(run({"gnc2": 0.5, "train_acc": 1.0}, K=25)), c)
    assert f.holds is False and "below both" in f.note
    # a run that does not fit is not judged
    m = metrics(run({"gnc2": 0.75, "train_acc": 0.9}, K=25))
    assert check("softmax_not_tammes", m, c).holds is None
    assert check("softmax_not_tammes", metrics(run({"gnc2": 0.3, "train_acc": 1.0})), c).holds is None
    # with a verdict in codes.nc only 'differ' counts: an undecided (10, 25) is not judged
    c["verdict"] = xr.DataArray([[2.0, np.nan]], dims=("d", "K"), coords={"d": [10], "K": [25, 100]})
    f = check("softmax_not_tammes", metrics(run({"gnc2": 0.85, "train_acc": 1.0}, K=25)), c)
    assert f.holds is None and "differ" in f.note
    c["verdict"] = c["verdict"].fillna(0).where(c["verdict"] != 2, 1.0)
    assert check("softmax_not_tammes", metrics(run({"gnc2": 0.85, "train_acc": 1.0}, K=25)), c).holds is True


def test_ufm_reaches_code():
    c = codes({(10, 25): (0.89, 0.69)}, ufm={(10, 25): {1.0: 0.69, 0.02: 0.888}})
    m = metrics(run({"gnc2": 0.5}))
    assert check("ufm_reaches_code", m, c).holds is True
    c = codes({(10, 25): (0.89, 0.69)}, ufm={(10, 25): {1.0: 0.89, 0.02: 0.69}})
    f = check("ufm_reaches_code", m, c)
    assert f.holds is False and f.value == pytest.approx(0.69 / 0.89)
    assert check("ufm_reaches_code", m, codes({(10, 25): (0.89, 0.69)})).holds is None


def test_closed_forms():
    m = metrics(run({"gnc2": 0.5}))
    good = codes({(2, 5): (1 - math.cos(2 * math.pi / 5), 0.0), (10, 4): (4 / 3, 0.0), (3, 6): (1.0, 0.0),
                  (10, 100): (0.66, 0.6)})
    f = check("codes_closed_forms", m, good)
    assert f.holds is True and "K=100" not in f.measured
    bad = codes({(2, 5): (0.68, 0.0)})
    assert check("codes_closed_forms", m, bad).holds is False
    assert check("codes_closed_forms", m, codes({(10, 100): (0.66, 0.6)})).holds is None
    # the closed forms themselves, against independent computations
    K = 7
    W = np.stack([np.cos(2 * np.pi * np.arange(K) / K), np.sin(2 * np.pi * np.arange(K) / K)], 1)
    G = W @ W.T
    np.fill_diagonal(G, -np.inf)
    assert C.closed_form(2, K)[1] == pytest.approx(1 - G.max())  # polygon: rho = 1 - max cos
    from gnc.metrics.ovr import ovr_distances

    etf = np.eye(5) - 1 / 5  # simplex ETF of K = 5 in R^5 (rank 4, so it also fits d = 4)
    assert C.closed_form(4, 5)[1] == pytest.approx(float(np.min(ovr_distances(etf).dist)), abs=1e-9)
    cross = np.concatenate([np.eye(4), -np.eye(4)])
    assert C.closed_form(4, 8) == ("cross-polytope", pytest.approx(float(np.min(ovr_distances(cross).dist)), abs=1e-9))


# ---------------------------------------------------------------------------------- assignment

def test_square_code():
    good = metrics(*[run({"gnc2": 0.99, "train_acc": 1.0}, dataset="digits", d=2, K=4, seed=s) for s in range(3)])
    assert check("square_code", good).holds is True
    bad = metrics(run({"gnc2": 0.99, "train_acc": 1.0}, dataset="digits", d=2, K=4, seed=0),
                  run({"gnc2": 0.2, "train_acc": 1.0}, dataset="digits", d=2, K=4, seed=1))
    assert check("square_code", bad).holds is False
    assert check("square_code", metrics(run({"gnc2": 0.5}))).holds is None


def test_antipodal_pairing_and_assignment():
    assert C.antipodal_pairing(square()) == ((0, 2), (1, 3))
    assert C.antipodal_pairing(square(relabel=True)) == ((0, 1), (2, 3))
    m = metrics(run({"gnc2": 0.5}))
    same = codes(gram=[square(), square(), square()])
    assert check("assignment_same", m, same).holds is True
    f = check("assignment_same", m, codes(gram=[square(), square(relabel=True), square()]))
    assert f.holds is False and f.value == pytest.approx(2 / 3)
    assert check("assignment_same", m, codes()).holds is None


# ------------------------------------------------------------------------------ Papyan NC1–NC4

NC = ("nc1", "nc2_equinorm_means", "nc2_equinorm_weights", "nc2_equiangular_means", "nc2_equiangular_weights",
      "nc2_maxangle_means", "nc2_maxangle_weights", "nc3", "nc4")


def test_nc_falls_for_the_linear_head():
    vals = {n: (1.0, 0.1) for n in NC}
    good = metrics(run({**vals, "train_acc": 1.0}, variant="linear-ce", dataset="digits", d=16, K=10))
    ids = ("nc1_falls", "nc2_equinorm_falls", "nc2_equiangular_falls", "nc2_maxangle_falls", "nc3_falls",
           "nc4_falls", "linear_fits")
    assert all(check(i, good).holds is True for i in ids)
    bad = metrics(run({**vals, "nc2_equinorm_weights": (0.2, 0.15), "nc4": (0.9, 0.6), "train_acc": 0.95},
                      variant="linear-ce", dataset="digits", d=16, K=10))
    assert check("nc2_equinorm_falls", bad).holds is False   # the weights' equinorm does not halve
    assert check("nc1_falls", bad).holds is True
    assert check("nc4_falls", bad).holds is False
    assert check("linear_fits", bad).holds is False
    # K > d + 1 is not Papyan's regime: not tested
    gnc = metrics(run({**vals}, variant="linear-ce", d=10, K=100))
    assert check("nc1_falls", gnc).holds is None


# -------------------------------------------------------------------------------------- writer

def test_write_claims(tmp_path):
    m = metrics(*[run({"gnc1": (6, 0.01), "gnc3": (1, 0.01), "gnc2": g, "test_acc": a, "train_acc": 1.0},
                      tau=t) for t, g, a in ((1.0, 0.1, 0.6), (0.1, 0.4, 0.7))])
    c = codes({(10, 100): (0.66, 0.64)})
    mp, cp = tmp_path / "metrics.nc", tmp_path / "codes.nc"
    write_netcdf(m, mp)
    write_netcdf(c, cp)
    out = tmp_path / "claims.csv"
    frame = C.write_claims(mp, cp, out, rst_out=tmp_path / "claims.rst")
    back = pd.read_csv(out, keep_default_na=False)
    assert list(back.columns) == list(C.COLUMNS)
    assert list(back["claim"]) == [c.id for c in C.CLAIMS]
    assert len({c.id for c in C.CLAIMS}) == len(C.CLAIMS)
    row = back.set_index("claim").loc["test_acc_smaller_tau"]
    assert row["holds"] == "true" and float(row["value"]) == pytest.approx(0.1)
    assert back.set_index("claim").loc["cmf_matches", "holds"] == ""  # no CMF run: not tested, with a note
    assert "not tested" in back.set_index("claim").loc["cmf_matches", "note"]
    assert set(back["holds"]) <= {"true", "false", ""}
    prov = json.loads((tmp_path / "claims.provenance.json").read_text())
    assert prov["gnc_stage"] == "claims" and str(mp) in json.loads(prov["gnc_sources"])
    rst = (tmp_path / "claims.rst").read_text()
    assert "list-table" in rst and rst.count("   * - ") == len(C.CLAIMS) + 1
    assert len(frame) == len(C.CLAIMS)


def test_metrics_without_any_claim_variable_is_an_error():
    ds = metrics(run({"something_else": 1.0}))
    with pytest.raises(ValueError, match="none of the variables"):
        C.evaluate(ds)


def test_the_default_study_holds_every_experiment_the_claims_need():
    """config.yaml trains what every claim needs: a τ sweep with τ = 1 and τ ≤ 1/5, ≥ 2 architectures,
    ≥ 3 d at a K > d + 1, ≥ 3 nested K with equal SGD steps, CMF and HardMax next to CE, d = 2 / K = 4 over
    several seeds, a linear head with K ≤ d + 1 — and ≥ 6 checkpoints in every run."""
    from pathlib import Path

    from gnc.config import load_study, read_config_file

    cfg, runs = load_study(read_config_file(Path(__file__).resolve().parents[1] / "config.yaml"))
    frame = pd.DataFrame([{**r.coords, "variant": r.variant, "epochs": r.recipe["epochs"],
                           "n_ckpt": len(r.recipe["checkpoints"]), "first": r.recipe["checkpoints"][0]}
                          for r in runs.values()])
    assert (frame["n_ckpt"] >= 6).all()
    # epoch 0 = the untrained model, except CMF: its classifier does not exist before the first step
    assert (frame["first"][~frame["variant"].str.startswith("cmf")] == 0).all()
    ce = frame[frame["variant"] == "normalized-ce"]
    keys = [k for k in RUN_DIMS if k != "variant"]

    def levels(vary):
        """(number of levels, levels, the fixed coordinates) of the largest sweep over ``vary``."""
        others = [k for k in keys if k != vary]
        return max((g[vary].nunique(), tuple(sorted(g[vary])), tuple(g[others].iloc[0]))
                   for _, g in ce.groupby(others))

    n_tau, taus, _ = levels("tau")
    assert n_tau >= 3 and 1.0 in taus and min(taus) <= 0.2
    assert levels("arch")[0] >= 2
    n_d, ds, fixed = levels("d")
    K = dict(zip([k for k in keys if k != "d"], fixed))["K"]
    assert n_d >= 3 and K > max(ds) + 1
    n_K, Ks, _ = levels("K")
    assert n_K >= 3
    k_runs = {r.K: r for r in runs.values() if "k_sweep" in r.experiment}
    steps = {K: r.recipe["epochs"] * K for K, r in k_runs.items()}  # ∝ SGD steps on equally sized classes
    assert len(set(steps.values())) == 1, steps
    point = ["dataset", "arch", "tau", "d", "K", "seed"]
    for head in ("cmf", "normalized-hardmax"):
        other = frame[frame["variant"].str.startswith(head)]
        assert len(other) and len(other.merge(ce, on=point)) == len(other), head
    sq = ce[(ce["d"] == 2) & (ce["K"] == 4)]
    assert sq["seed"].nunique() >= 3
    lin = frame[frame["variant"] == "linear-ce"]
    assert len(lin) and (lin["K"] <= lin["d"] + 1).all()

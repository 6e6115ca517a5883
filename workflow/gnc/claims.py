"""Which claims of the two papers hold in a study: ``results/claims.csv``.

One :class:`Claim` per statement of Jiang et al. (GNC, ICML 2024) or Papyan, Han & Donoho (NC,
PNAS 2020) that a study can test. Each claim has the place in the paper it comes from, the paper's
own number, a rule written in words and, next to it, the function that applies that rule to the
study's results. The function returns a :class:`Finding`: the measured values (text), one headline
number, and ``holds`` — True/False, or None when the study has no run the claim needs (then
``note`` says what is missing). A claim that fails is reported as failing, never dropped.

Inputs: ``results/metrics.nc`` (dims variant, dataset, arch, tau, d, K, seed, epoch; see
:mod:`gnc.results`) and, for the claims about codes, ``results/codes.nc``. Everything read from
codes.nc is named in :data:`CODES_VARS` and read through :class:`Codes`, which returns NaN / None
for what is absent, so a change of that file's layout turns the affected claims into "not tested"
with a note instead of an error.

Rules compare *final* values (the last checkpoint with a value) with *initial* ones (the first
checkpoint, epoch 0 = the untrained model). Groups are formed from the results alone: e.g. "the τ
sweep" is every set of normalized-head CE runs that share (dataset, arch, d, K, seed) and differ in
τ; a claim holds when its rule holds in every group it finds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from .grid import RUN_DIMS, same_tau, tau_value
from .io import open_netcdf, rst_escape, sha256_file, write_json_atomic, write_text_atomic
from .provenance import merge_dataset_attrs, provenance, sidecar_of

#: every variable read from codes.nc: role -> variable name (dims in the comment)
CODES_VARS = {
    "softmax": "softmax_value",    # (d, K) best known softmax-code value rho_ovr
    "tammes": "tammes_ovr",        # (d, K) rho_ovr of the Tammes solution
    "verdict": "verdict",          # (d, K) 0 same, 1 differ, 2 undecided (gnc.codes.cross.VERDICTS)
    "ufm": "ufm_ovr",              # (ufm_tau, d, K) rho_ovr of the UFM's classifier
    "gram": "gram",                # (dataset, arch, seed, k, k2) cosines of trained classifier rows
}

#: every variable read from metrics.nc
METRICS_VARS = ("train_acc", "test_acc", "ncc_train_acc", "gnc1", "gnc2", "gnc3", "nc1",
                "nc2_equinorm_means", "nc2_equinorm_weights", "nc2_equiangular_means",
                "nc2_equiangular_weights", "nc2_maxangle_means", "nc2_maxangle_weights", "nc3", "nc4")

#: a run "fits" the training set at this train accuracy (the terminal phase, within 1 %)
FIT = 0.99
#: "falls" for GNC1/GNC3: final <= FALL_GNC * initial
FALL_GNC = 0.1
#: "falls" for Papyan's NC measures: final <= FALL_NC * initial
FALL_NC = 0.5
#: test-accuracy differences smaller than this are noise (2 points; the default study's 1,600-image
#: test set has a binomial standard error of a difference of up to 1.8 points)
ACC_MARGIN = 0.02
#: GNC2 "near the softmax code": GNC2 >= NEAR_CODE * softmax_value (the paper's τ = 1/7: 0.96)
NEAR_CODE = 0.9
#: tolerance of monotone trends in GNC2 (one-vs-rest distance units)
GNC2_TOL = 0.01
#: largest tau counted as "small" (the paper's τ ≤ 1/5; see _small_tau)
SMALL_TAU = 0.2
#: agreement with a closed-form code value
CLOSED_FORM_TOL = 1e-6


@dataclass
class Finding:
    holds: bool | None
    value: float = math.nan
    measured: str = ""
    note: str = ""

    def __post_init__(self):
        self.holds = None if self.holds is None else bool(self.holds)
        self.value = float(self.value)


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str          # "Jiang et al. 2024" | "Papyan et al. 2020"
    where: str          # figure / section
    statement: str
    paper_value: str
    rule: str
    check: Callable[["Study"], Finding]


# ------------------------------------------------------------------------------------- inputs

def run_table(metrics) -> pd.DataFrame:
    """One row per run (RUN_DIMS): ``<var>`` = its last value over the checkpoints, ``<var>_0`` = its
    first (the untrained model when epoch 0 was kept), ``epoch`` = the last checkpoint, ``epochs`` =
    the number of checkpoints with values; plus ``head`` and ``loss`` parsed from the variant."""
    names = [v for v in METRICS_VARS if v in metrics.data_vars]
    if not names:
        raise ValueError("metrics: none of the variables the claims read is present "
                         f"(looked for {', '.join(METRICS_VARS)})")
    frame = metrics[names].to_dataframe().reset_index()
    frame = frame.dropna(how="all", subset=names).sort_values(list(RUN_DIMS) + ["epoch"])
    g = frame.groupby(list(RUN_DIMS), sort=True)
    every = list(METRICS_VARS)  # absent variables as NaN columns, so rules see "no value"
    out = g[names].last().reindex(columns=every).join(g[names].first().reindex(columns=every).add_suffix("_0"))
    out["epoch"] = g["epoch"].max()
    out["epochs"] = g["epoch"].nunique()
    out = out.reset_index()
    out["head"] = out["variant"].map(lambda v: str(v).split("-", 1)[0])  # variant = <head>-<loss>
    out["loss"] = out["variant"].map(lambda v: str(v).rsplit("-", 1)[-1])
    return out


@dataclass
class Codes:
    """Read-only view of codes.nc through :data:`CODES_VARS`; absent variables or grid points give NaN."""

    ds: object = None  # the codes.nc xarray.Dataset, or None

    def _has(self, role: str) -> bool:
        return self.ds is not None and CODES_VARS[role] in self.ds.data_vars

    def value(self, role: str, d: int, K: int) -> float:
        if not self._has(role) or not {"d", "K"} <= set(self.ds[CODES_VARS[role]].dims):
            return math.nan
        try:
            v = self.ds[CODES_VARS[role]].sel(d=int(d), K=int(K)).values
        except (KeyError, IndexError):
            return math.nan
        return float(v) if np.ndim(v) == 0 else math.nan

    def softmax(self, d, K) -> float:
        return self.value("softmax", d, K)

    def differ(self, d, K) -> bool:
        """The two problems' codes differ at (d, K): the verdict says *differ* (1)."""
        return self.value("verdict", d, K) == 1

    def ufm(self) -> dict[tuple[int, int], dict[float, float]]:
        """{(d, K): {tau: ufm rho_ovr}} for the (d, K) with values."""
        if not self._has("ufm") or set(self.ds[CODES_VARS["ufm"]].dims) != {"ufm_tau", "d", "K"}:
            return {}
        da = self.ds[CODES_VARS["ufm"]]
        out = {}
        for (d, K, t), v in da.transpose("d", "K", "ufm_tau").to_series().dropna().items():
            out.setdefault((int(d), int(K)), {})[float(t)] = float(v)
        return out

    def pairs(self) -> list[tuple[int, int]]:
        if not self._has("softmax"):
            return []
        values = self.ds[CODES_VARS["softmax"]].transpose("d", "K").to_series()
        return [(int(d), int(K)) for (d, K), v in values.items() if np.isfinite(v)]

    def grams(self) -> list[tuple[str, np.ndarray]]:
        """[(label, gram (seeds, K, K))] for every (dataset, arch) with a gram of several seeds."""
        if not self._has("gram") or not {"seed", "k", "k2"} <= set(self.ds[CODES_VARS["gram"]].dims):
            return []
        da = self.ds[CODES_VARS["gram"]]
        others = [dim for dim in da.dims if dim not in ("seed", "k", "k2")]
        stacked = da.stack(_g=others) if others else da.expand_dims(_g=[0])
        out = []
        for i in range(stacked.sizes["_g"]):
            g = stacked.isel(_g=i).transpose("seed", "k", "k2").values
            keep_k = ~np.all(np.isnan(g), axis=(0, 2))
            g = g[:, keep_k][:, :, keep_k]
            g = g[~np.all(np.isnan(g), axis=(1, 2))]  # the seeds with values
            if g.shape[0] and g.shape[1]:
                label = "/".join(str(x) for x in np.atleast_1d(stacked["_g"].values[i])) if others else "gram"
                out.append((label, g))
        return out


@dataclass
class Study:
    runs: pd.DataFrame  # run_table(metrics)
    codes: Codes


# ------------------------------------------------------------------------------------ helpers

def _fmt(x: float, digits: int = 3) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _pct(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{100 * x:.1f} %"


def _runs(study: Study, *, head, loss=None) -> pd.DataFrame:
    heads = (head,) if isinstance(head, str) else tuple(head)
    r = study.runs[study.runs["head"].map(lambda h: any(h.startswith(x) for x in heads))]
    if loss is not None:
        r = r[r["loss"] == loss]
    return r


def _groups(frame: pd.DataFrame, vary: str):
    """Sub-frames that share every run coordinate but ``vary`` (and the variant), with >= 2 distinct
    values of ``vary``, sorted by it."""
    keys = [d for d in RUN_DIMS if d != vary]
    by = [frame[d].map(tau_value) if d == "tau" else frame[d] for d in keys]  # τ by its grid value (same_tau)
    for key, sub in frame.groupby(by, sort=True):
        if sub[vary].nunique() >= 2:
            yield dict(zip(keys, key)), sub.sort_values(vary)


def _label(g: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in g.items() if k != "variant")


def _small_tau(taus) -> np.ndarray:
    """τ ≤ SMALL_TAU, counting a τ that is the same grid value as SMALL_TAU (gnc.grid.same_tau)."""
    return np.asarray((taus <= SMALL_TAU) | same_tau(taus, SMALL_TAU), dtype=bool)


def _untested(what: str) -> Finding:
    return Finding(None, note=f"not tested: the study has no {what}")


def _verdicts(rows: list, what: str, worst=min) -> Finding:
    """A rule judged group by group, ``rows`` = [(holds, value, text)] of the judged groups: it holds when
    it holds in every group, with the worst value; not tested (no ``what``) when no group was judged."""
    if not rows:
        return _untested(what)
    return Finding(all(ok for ok, _, _ in rows), float(worst(v for _, v, _ in rows)),
                   "; ".join(text for _, _, text in rows))


# -------------------------------------------------------------------------------------- rules

def _falls(var: str, factor: float, runs: pd.DataFrame, what: str) -> Finding:
    r = runs.dropna(subset=[var, f"{var}_0"])
    r = r[r["epochs"] >= 2]
    if r.empty:
        return _untested(what)
    ratio = r[var] / r[f"{var}_0"]
    worst = r.loc[ratio.idxmax()]
    measured = (f"{len(r)} runs; final/initial {var}: median {_fmt(float(ratio.median()))}, worst "
                f"{_fmt(float(ratio.max()))} ({_fmt(float(worst[f'{var}_0']))} -> {_fmt(float(worst[var]))}, "
                f"{worst['dataset']} {worst['variant']} {worst['arch']} tau={worst['tau']:g} d={worst['d']} "
                f"K={worst['K']} seed={worst['seed']})")
    return Finding(bool((ratio <= factor).all()), float(ratio.max()), measured)


def _gnc_falls(var: str) -> Callable[[Study], Finding]:
    return lambda study: _falls(var, FALL_GNC, _runs(study, head=("normalized", "cmf"), loss="ce"),
                                "normalized-head run with an initial and a final checkpoint")


def _ce_groups(study: Study, vary: str):
    """The groups of normalized-head CE runs that differ only in ``vary`` (see _groups)."""
    return list(_groups(_runs(study, head="normalized", loss="ce"), vary))


def gnc2_smaller_tau(study: Study) -> Finding:
    groups = _ce_groups(study, "tau")
    if not groups:
        return _untested("τ sweep (normalized-head CE runs differing only in τ)")
    rows = []
    for g, sub in groups:
        sub = sub.dropna(subset=["gnc2"]).sort_values("tau", ascending=False)  # largest τ first
        vals, taus = sub["gnc2"].to_numpy(), sub["tau"].to_numpy()
        if len(vals) < 2:
            continue
        code = study.codes.softmax(g["d"], g["K"])
        frac = "" if not np.isfinite(code) else f" (softmax code {_fmt(code, 4)})"
        rows.append((np.all(np.diff(vals) >= -GNC2_TOL) and vals[-1] > vals[0], vals[-1] - vals[0],
                     f"{_label(g)}: " + ", ".join(f"tau={t:g} {_fmt(v)}" for t, v in zip(taus, vals)) + frac))
    return _verdicts(rows, "τ sweep with GNC2 values")


def acc_smaller_tau(study: Study) -> Finding:
    rows = []
    for g, sub in _ce_groups(study, "tau"):
        small = sub[_small_tau(sub["tau"])]
        if small.empty or not same_tau(sub["tau"], 1.0).any():
            continue
        base = float(sub.loc[same_tau(sub["tau"], 1.0), "test_acc"].iloc[0])
        gain = small["test_acc"] - base
        rows.append(((gain >= ACC_MARGIN).all(), gain.min(), f"{_label(g)}: tau=1 {_pct(base)}, " +
                     ", ".join(f"tau={t:g} {_pct(a)}" for t, a in zip(small["tau"], small["test_acc"]))))
    return _verdicts(rows, "τ sweep containing τ = 1 and a τ ≤ 1/5")


def tau1_fails_to_fit(study: Study) -> Finding:
    r = _runs(study, head="normalized", loss="ce")
    r = r[same_tau(r["tau"], 1.0)].dropna(subset=["train_acc"])
    rows = [(x.train_acc < FIT, x.train_acc, f"{x.dataset} {x.arch} d={x.d} K={x.K} seed={x.seed}: train "
             f"{_pct(x.train_acc)}") for x in r.itertuples()]
    return _verdicts(rows, "normalized-head CE run at τ = 1", max)


def gnc2_near_code(study: Study) -> Finding:
    groups = _ce_groups(study, "tau")
    if not groups:
        return _untested("τ sweep (normalized-head CE runs differing only in τ)")
    rows = []
    for g, sub in groups:
        x = sub.iloc[0]  # smallest τ
        code = study.codes.softmax(g["d"], g["K"])
        if np.isfinite(code) and np.isfinite(x["gnc2"]):
            f = float(x["gnc2"]) / code
            rows.append((f >= NEAR_CODE, f, f"{_label(g)} tau={x['tau']:g}: GNC2 {_fmt(x['gnc2'], 4)} / code "
                                            f"{_fmt(code, 4)} = {_fmt(f)}"))
    return _verdicts(rows, "softmax-code value for the τ sweep's (d, K)")


def gnc2_grows_with_d(study: Study) -> Finding:
    rows = []
    for g, sub in _ce_groups(study, "d"):
        inc = np.diff(sub["gnc2"].to_numpy())
        rows.append((np.all(inc > 0), inc.min(),
                     f"{_label(g)}: " + ", ".join(f"d={d} {_fmt(v)}" for d, v in zip(sub["d"], sub["gnc2"]))))
    return _verdicts(rows, "d sweep (normalized-head CE runs differing only in d)")


def code_gap_grows_with_d(study: Study) -> Finding:
    groups = _ce_groups(study, "d")
    if not groups:
        return _untested("d sweep (normalized-head CE runs differing only in d)")
    rows = []
    for g, sub in groups:
        codes = np.array([study.codes.softmax(d, g["K"]) for d in sub["d"]])
        if np.all(np.isfinite(codes)):
            gap = codes - sub["gnc2"].to_numpy()
            inc = np.diff(gap)
            steps = zip(sub["d"], codes, sub["gnc2"], gap)
            rows.append((np.all(inc > 0), inc.min(), f"{_label(g)}: " + ", ".join(
                f"d={d} {_fmt(c, 4)} - {_fmt(v, 4)} = {_fmt(x)}" for d, c, v, x in steps)))
    return _verdicts(rows, "softmax-code values for the d sweep")


def archs_agree(study: Study) -> Finding:
    rows = []
    for g, sub in _ce_groups(study, "arch"):
        code = study.codes.softmax(g["d"], g["K"])
        falls = ((sub["gnc1"] <= FALL_GNC * sub["gnc1_0"]) & (sub["gnc3"] <= FALL_GNC * sub["gnc3_0"])).all()
        spread = float(sub["gnc2"].max() - sub["gnc2"].min())
        tol = 0.1 * code if np.isfinite(code) else math.nan
        rows.append((falls and np.isfinite(tol) and spread <= tol, spread, f"{_label(g)}: " + ", ".join(
            f"{a} GNC1 {_fmt(x1)} GNC2 {_fmt(x2)} GNC3 {_fmt(x3)} test {_pct(t)}"
            for a, x1, x2, x3, t in zip(sub["arch"], sub["gnc1"], sub["gnc2"], sub["gnc3"], sub["test_acc"]))
            + f"; GNC2 spread {_fmt(spread)} (allowed {_fmt(tol)})"))
    return _verdicts(rows, "architecture comparison (normalized-head CE runs differing only in arch)", max)


def cmf_matches(study: Study) -> Finding:
    """Each run is trained with its own experiment's recipe (the CMF classifier needs several samples per
    class in a batch, so its batch may be larger): the finding compares the two classifiers as each is
    trained, not at one recipe."""
    cmf = _runs(study, head="cmf", loss="ce")
    learn = _runs(study, head="normalized", loss="ce")
    keys = [d if d != "tau" else "tau_value" for d in RUN_DIMS if d != "variant"]  # τ by same_tau
    both = cmf.assign(tau_value=cmf["tau"].map(tau_value)).merge(learn.assign(tau_value=learn["tau"].map(tau_value)),
                                                               on=keys, suffixes=("_cmf", "_w"))
    if both.empty:
        return _untested("CMF run next to a learnable-classifier run at the same grid point")
    diff = both["test_acc_cmf"] - both["test_acc_w"]
    parts = [f"{x.dataset} {x.arch} tau={x.tau_cmf:g} d={x.d} K={x.K} seed={x.seed}: CMF {_pct(x.test_acc_cmf)} "
             f"(train {_pct(x.train_acc_cmf)}) vs learnable {_pct(x.test_acc_w)} (train {_pct(x.train_acc_w)})"
             for x in both.itertuples()]
    return Finding(bool((diff >= -ACC_MARGIN).all()), float(diff.min()), "; ".join(parts))


def hardmax_limit(study: Study) -> Finding:
    """HardMax runs that do not fit the training set (train < 99 %) are no HardMax solution."""
    hm = _runs(study, head="normalized", loss="hardmax")
    if hm.empty:
        return _untested("HardMax run")
    unfit = hm[~(hm["train_acc"] >= FIT)]
    hm = hm[hm["train_acc"] >= FIT]
    if hm.empty:
        return Finding(None, note="not tested: no HardMax run fits the training set (" + "; ".join(
            f"{x.dataset} {x.arch} d={x.d} K={x.K} seed={x.seed}: train {_pct(x.train_acc)}, GNC2 {_fmt(x.gnc2)}"
            for x in unfit.itertuples()) + ")")
    rows = []
    for g, sub in _ce_groups(study, "tau"):
        h = hm[(hm["dataset"] == g["dataset"]) & (hm["arch"] == g["arch"]) & (hm["d"] == g["d"])
               & (hm["K"] == g["K"]) & (hm["seed"] == g["seed"])]
        if h.empty:
            continue
        target = float(h["gnc2"].iloc[0])
        lo, hi = sub.iloc[0], sub.iloc[-1]
        rows.append((abs(lo["gnc2"] - target) < abs(hi["gnc2"] - target), math.nan,
                     f"{_label(g)}: HardMax GNC2 {_fmt(target)}; CE tau={lo['tau']:g} {_fmt(lo['gnc2'])}, "
                     f"tau={hi['tau']:g} {_fmt(hi['gnc2'])}"))
    return _verdicts(rows, "HardMax run next to a CE τ sweep at the same grid point")


def softmax_not_tammes(study: Study) -> Finding:
    """The two codes differ where codes.nc's verdict says *differ* (see Codes.differ)."""
    r = _runs(study, head="normalized", loss="ce")
    rows = [(x, study.codes.softmax(x.d, x.K), study.codes.value("tammes", x.d, x.K))
            for x in r[r["train_acc"] >= FIT].itertuples() if study.codes.differ(x.d, x.K)]
    if not rows:
        pairs = study.codes.pairs()
        return Finding(None, note="not tested: at no trained (d, K) do the two problems' codes differ (verdict "
                                  f"'differ' in codes.nc; codes for {pairs})")
    closer = [abs(x.gnc2 - s) < abs(x.gnc2 - t) for x, s, t in rows]
    parts = [f"{x.dataset} {x.arch} tau={x.tau:g} d={x.d} K={x.K} seed={x.seed}: GNC2 {_fmt(x.gnc2, 4)}, "
             f"softmax {_fmt(s, 4)}, Tammes {_fmt(t, 4)}" for x, s, t in rows]
    below = all(x.gnc2 < t for x, s, t in rows)
    note = ("every GNC2 is below both code values: training stopped short of either code, so the values "
            "cannot tell which one it was heading for" if below else "")
    return Finding(bool(all(closer)), float(np.mean(closer)), "; ".join(parts), note)


def ufm_reaches_code(study: Study) -> Finding:
    rows = []
    for (d, K), by_tau in sorted(study.codes.ufm().items()):
        code = study.codes.softmax(d, K)
        if np.isfinite(code) and code > 0:
            t = min(by_tau)
            rows.append((by_tau[t] / code >= 0.99, by_tau[t] / code,
                         f"(d={d}, K={K}) tau={t:g}: {_fmt(by_tau[t], 4)} / {_fmt(code, 4)}"))
    return _verdicts(rows, "UFM study with softmax-code values")


def closed_form(d: int, K: int) -> tuple[str, float] | None:
    """The proved softmax-code value where one is known: d = 2 regular K-gon, K <= d + 1 simplex,
    K = 2d cross-polytope (Jiang et al., Thm 3.3)."""
    if K <= d + 1:
        return "simplex", K / (K - 1)
    if d == 2:
        return "K-gon", 1 - math.cos(2 * math.pi / K)
    if K == 2 * d:
        return "cross-polytope", 1.0
    return None


def codes_closed_forms(study: Study) -> Finding:
    rows = []
    for d, K in study.codes.pairs():
        if (cf := closed_form(d, K)) is not None:
            (name, c), v = cf, study.codes.softmax(d, K)
            rows.append((abs(v - c) <= CLOSED_FORM_TOL, abs(v - c),
                         f"(d={d}, K={K}) {name}: {_fmt(v, 8)} vs {_fmt(c, 8)}"))
    return _verdicts(rows, "(d, K) with a closed-form softmax code", max)


def square_code(study: Study) -> Finding:
    r = _runs(study, head="normalized")
    r = r[(r["d"] == 2) & (r["K"] == 4)]
    if r.empty:
        return _untested("run with d = 2, K = 4")
    parts = [f"{x.dataset} {x.arch} tau={x.tau:g} seed={x.seed}: GNC2 {_fmt(x.gnc2, 4)}, train {_pct(x.train_acc)}"
             for x in r.itertuples()]
    ok = bool(((r["gnc2"] >= NEAR_CODE) & (r["train_acc"] >= FIT)).all())
    return Finding(ok, float(r["gnc2"].min()), "; ".join(parts))


def antipodal_pairing(gram: np.ndarray) -> tuple[tuple[int, int], ...]:
    """For a K x K cosine matrix: each class's most opposite class, as sorted pairs (a perfect matching
    for a square code)."""
    g = np.array(gram, dtype=float)
    np.fill_diagonal(g, np.inf)
    return tuple(sorted({tuple(sorted((k, int(np.argmin(g[k]))))) for k in range(len(g))}))


def assignment_same(study: Study) -> Finding:
    rows = []
    for label, g in study.codes.grams():
        if g.shape[0] >= 2:
            counts = pd.Series([str(antipodal_pairing(s)) for s in g]).value_counts()
            rows.append((len(counts) == 1, counts.iloc[0] / len(g), f"{label}: {len(g)} seeds, pairings " +
                         ", ".join(f"{p} x{n}" for p, n in counts.items())))
    return _verdicts(rows, "small-K grid point trained with several seeds (gram in codes.nc)")


def ncc_train_fits(study: Study) -> Finding:
    r = _runs(study, head="normalized", loss="ce")
    r = r[_small_tau(r["tau"])].dropna(subset=["ncc_train_acc"])
    if r.empty:
        return _untested("normalized-head CE run at τ ≤ 1/5")
    worst = r.loc[r["ncc_train_acc"].idxmin()]
    measured = (f"{len(r)} runs; lowest NCC train accuracy {_pct(worst['ncc_train_acc'])} ({worst['dataset']} "
                f"{worst['arch']} tau={worst['tau']:g} d={worst['d']} K={worst['K']} seed={worst['seed']})")
    return Finding(bool((r["ncc_train_acc"] >= FIT).all()), float(r["ncc_train_acc"].min()), measured)


def _linear(study: Study) -> pd.DataFrame:
    r = _runs(study, head="linear")
    return r[r["K"] <= r["d"] + 1]


def linear_fits(study: Study) -> Finding:
    r = _linear(study).dropna(subset=["train_acc"])
    rows = [(x.train_acc >= FIT, x.train_acc, f"{x.dataset} {x.arch} d={x.d} K={x.K} seed={x.seed}: train "
             f"{_pct(x.train_acc)}, test {_pct(x.test_acc)}") for x in r.itertuples()]
    return _verdicts(rows, "linear-head run with K ≤ d + 1")


def _nc_falls(names: tuple[str, ...]) -> Callable[[Study], Finding]:
    def check(study: Study) -> Finding:
        r = _linear(study)
        if r.empty:
            return _untested("linear-head run with K ≤ d + 1")
        findings = [_falls(n, FALL_NC, r, "linear-head run with initial and final values") for n in names]
        rows = [(f.holds, f.value, f"{n}: {f.measured}") for n, f in zip(names, findings) if f.holds is not None]
        return _verdicts(rows, "", max) if rows else findings[0]
    return check


# ------------------------------------------------------------------------------------- claims

J, P = "Jiang et al. 2024", "Papyan et al. 2020"
_NC2_RULE = (f"every linear-head run with K ≤ d + 1: final ≤ {FALL_NC} x initial for the means and the "
             "classifier")

CLAIMS: tuple[Claim, ...] = (
    Claim("gnc1_falls", J, "Fig. 2 (GNC1); Fig. 3", "GNC1: within-class variability of the normalized features "
          "collapses during training", "6.72 -> 3.4e-4 to 5.4e-4 (CIFAR-100, ResNet18, d = 10)",
          f"every normalized/CMF-head CE run: final GNC1 ≤ {FALL_GNC} x initial", _gnc_falls("gnc1")),
    Claim("gnc3_falls", J, "Fig. 2 (GNC3); Fig. 3", "GNC3: class means align with their classifier vectors "
          "(self-duality) during training", "0.999 -> 0.0009 to 0.016",
          f"every normalized/CMF-head CE run: final GNC3 ≤ {FALL_GNC} x initial", _gnc_falls("gnc3")),
    Claim("gnc2_smaller_tau", J, "Fig. 2 (GNC2)", "GNC2: the classifier ends closer to the softmax code at "
          "smaller temperature", "0.007 (tau = 1), 0.553 (1/5), 0.582 (1/6), 0.591 (1/7); code 0.614",
          f"every τ group: final GNC2 non-decreasing (tolerance {GNC2_TOL}) as τ decreases, and larger at the "
          "smallest τ than at the largest", gnc2_smaller_tau),
    Claim("gnc2_near_code", J, "Fig. 2 (GNC2), Fig. 3", "at small τ the trained classifier approaches the "
          "softmax code", "0.591 / 0.614 = 0.96 (tau = 1/7); 0.93-0.96 across architectures (tau = 1/10)",
          f"every τ group: GNC2 at the smallest τ >= {NEAR_CODE} x softmax-code value", gnc2_near_code),
    Claim("test_acc_smaller_tau", J, "Fig. 2 (test accuracy)", "test accuracy is higher at small temperature",
          "42.0 % (tau = 1) vs 73.9-74.1 % (tau = 1/5, 1/6, 1/7)",
          f"every τ group with τ = 1: each τ ≤ 1/5 beats τ = 1 by ≥ {100 * ACC_MARGIN:g} points of test "
          "accuracy", acc_smaller_tau),
    Claim("tau1_fails_to_fit", J, "Fig. 2; App. (NCC accuracy)", "with the normalized head at τ = 1 the network "
          "does not fit the training set", "NCC train accuracy 51.7 %, test 37.3 % (tau = 1)",
          f"every normalized-head CE run at τ = 1 ends below {100 * FIT:g} % train accuracy", tau1_fails_to_fit),
    Claim("ncc_train_fits", J, "App. (NCC accuracy)", "at small τ the nearest-class-centre classifier fits the "
          "training set", "NCC train 99.85-99.92 % (tau = 1/10)",
          f"every normalized-head CE run at τ ≤ 1/5: NCC train accuracy ≥ {100 * FIT:g} %", ncc_train_fits),
    Claim("archs_agree", J, "Fig. 3 (architectures)", "GNC appears alike for every architecture",
          "GNC2 0.571 / 0.578 / 0.590 (ResNet18 / DenseNet121 / ResNeXt50; code 0.614)",
          f"every architecture group: each arch's GNC1 and GNC3 fall (final ≤ {FALL_GNC} x initial) and the "
          "archs' final GNC2 lie within 0.1 x the softmax-code value", archs_agree),
    Claim("gnc2_grows_with_d", J, "Sec. 4 / App. (feature dimension)", "GNC2 grows with the feature dimension d",
          "0.571 (d = 10), 0.764 (20), 0.832 (30) at K = 100",
          "every d group: final GNC2 strictly increasing in d", gnc2_grows_with_d),
    Claim("code_gap_grows_with_d", J, "Sec. 4 / App. (feature dimension)", "the gap between the trained "
          "classifier and the softmax code grows with d", "0.043 (d = 10), 0.049 (20), 0.057 (30) below the "
          "paper's code values", "every d group: softmax-code value - final GNC2 strictly increasing in d",
          code_gap_grows_with_d),
    Claim("softmax_not_tammes", J, "Sec. 3 (softmax code vs Tammes)", "where the two differ, training approaches "
          "the softmax code (max one-vs-rest distance), not the Tammes code (max pairwise distance)",
          "(stated for the HardMax/UFM optimum; no trained value given)",
          "every fitting normalized-head CE run at a (d, K) where the Tammes code's one-vs-rest distance is "
          "smaller: final GNC2 nearer the softmax-code value than the Tammes code's", softmax_not_tammes),
    Claim("ufm_reaches_code", J, "Thm 3.1-3.2 (τ → 0)", "as τ → 0 the UFM's optimal classifier becomes a "
          "softmax code", "(theorem)", "every (d, K): UFM one-vs-rest distance at the smallest τ ≥ 0.99 x "
          "softmax-code value", ufm_reaches_code),
    Claim("hardmax_limit", J, "Thm 3.1 (HardMax = τ → 0 limit of CE)", "CE at small τ behaves like HardMax",
          "(theorem)", "every τ group with a HardMax run that fits (≥ 99 % train): CE's final GNC2 at the "
          "smallest τ is closer to HardMax's than CE's at the largest τ", hardmax_limit),
    Claim("codes_closed_forms", J, "Thm 3.3 (special cases)", "d = 2: regular K-gon; K ≤ d + 1: simplex ETF; "
          "K = 2d: cross-polytope", "1 - cos(2π/K); K/(K-1); 1",
          f"every (d, K) with a closed form: |softmax-code value - closed form| ≤ {CLOSED_FORM_TOL:g}",
          codes_closed_forms),
    Claim("square_code", J, "Sec. 4 (assignment, d = 2, K = 4)", "with d = 2 and K = 4 the classifier becomes "
          "the square (the softmax code)", "rho = 1 (square)",
          f"every normalized-head run with d = 2, K = 4 fits (≥ {100 * FIT:g} %) and ends with GNC2 ≥ "
          f"{NEAR_CODE}", square_code),
    Claim("assignment_same", J, "Sec. 4 (assignment problem)", "which classes become antipodal is decided by the "
          "data, not by the seed", "(CIFAR-10 Automobile/Cat/Dog/Truck; placement not given numerically)",
          "every small-K grid point with several seeds: the same antipodal class pairs in every seed",
          assignment_same),
    Claim("cmf_matches", J, "Sec. 5 (CMF classifier)", "a classifier fixed to the class-mean features (CMF) "
          "matches the learnable classifier", "test 72.2 / 73.6 / 74.9 % (CMF) vs 70.8 / 72.6 / 74.0 % "
          "(learnable)", f"every grid point with both, each run with its experiment's recipe (CMF's batch may be "
          f"larger): CMF test accuracy ≥ learnable's - {100 * ACC_MARGIN:g} points", cmf_matches),
    Claim("linear_fits", P, "Fig. 1 (terminal phase)", "training reaches zero training error (the terminal "
          "phase of training)", "train error 0", f"every linear-head run with K ≤ d + 1: train accuracy ≥ "
          f"{100 * FIT:g} %", linear_fits),
    Claim("nc1_falls", P, "Fig. 6 (NC1)", "NC1: within-class variability collapses", "tr(Σ_W Σ_B^+)/K falls by "
          "orders of magnitude", f"every linear-head run with K ≤ d + 1: final NC1 ≤ {FALL_NC} x initial",
          _nc_falls(("nc1",))),
    Claim("nc2_equinorm_falls", P, "Fig. 2 (NC2 equinorm)", "NC2: class means and classifier rows become "
          "equinorm", "CoV of norms → 0", _NC2_RULE,
          _nc_falls(("nc2_equinorm_means", "nc2_equinorm_weights"))),
    Claim("nc2_equiangular_falls", P, "Fig. 3 (NC2 equiangularity)", "NC2: class means and classifier rows "
          "become equiangular", "std of cosines → 0", _NC2_RULE,
          _nc_falls(("nc2_equiangular_means", "nc2_equiangular_weights"))),
    Claim("nc2_maxangle_falls", P, "Fig. 4 (NC2 maximal angle)", "NC2: pairwise cosines approach -1/(K-1) (the "
          "simplex ETF)", "mean |cos + 1/(K-1)| → 0", _NC2_RULE,
          _nc_falls(("nc2_maxangle_means", "nc2_maxangle_weights"))),
    Claim("nc3_falls", P, "Fig. 5 (NC3)", "NC3: the classifier converges to the class means (self-duality)",
          "||W/||W|| - M/||M|| ||² → 0", f"every linear-head run with K ≤ d + 1: final NC3 ≤ {FALL_NC} x initial",
          _nc_falls(("nc3",))),
    Claim("nc4_falls", P, "Fig. 7 (NC4)", "NC4: the classifier's decisions become the nearest-class-centre "
          "decisions", "mismatch → 0", f"every linear-head run with K ≤ d + 1: final NC4 ≤ {FALL_NC} x initial",
          _nc_falls(("nc4",))),
)

COLUMNS = ("claim", "paper", "where", "statement", "paper_value", "rule", "measured", "value", "holds", "note")


def evaluate(metrics, codes=None) -> pd.DataFrame:
    """claims.csv as a DataFrame: one row per claim (``holds`` True/False, or empty when not tested)."""
    study = Study(run_table(metrics), Codes(codes))
    rows = []
    for c in CLAIMS:
        f = c.check(study)
        holds = "" if f.holds is None else ("true" if f.holds else "false")
        rows.append([c.id, c.paper, c.where, c.statement, c.paper_value, c.rule, f.measured, f.value, holds,
                     f.note])
    return pd.DataFrame(rows, columns=list(COLUMNS))


def claims_rst(frame: pd.DataFrame) -> str:
    """The report's front page: the claims table."""
    n = len(frame)
    held, failed = (int((frame["holds"] == v).sum()) for v in ("true", "false"))
    lines = [f"{held} of {n} claims of Jiang et al. (2024) and Papyan et al. (2020) hold in this study, "
             f"{failed} fail, {n - held - failed} are not tested (the study has no run they need). A failed "
             "claim is a finding of the study. Each rule is in the table; results/claims.csv has the measured "
             "values.", "", ".. list-table::", "   :header-rows: 1", "",
             "   * - claim", "     - paper", "     - rule", "     - holds"]
    for r in frame.itertuples():
        verdict = {"true": "**holds**", "false": "**fails**"}.get(r.holds, "not tested")
        lines += [f"   * - {rst_escape(r.statement)}", f"     - {rst_escape(r.where)}: {rst_escape(r.paper_value)}",
                  f"     - {rst_escape(r.rule)}", f"     - {verdict}"]
    return "\n".join(lines) + "\n"


def write_claims(metrics_path, codes_path, csv_out, *, rst_out=None) -> pd.DataFrame:
    """Evaluate the claims on the files and write claims.csv, its provenance sidecar and (``rst_out``)
    the report page, atomically."""
    metrics, codes = open_netcdf(metrics_path), open_netcdf(codes_path)
    frame = evaluate(metrics, codes)
    write_text_atomic(csv_out, frame.to_csv(index=False, float_format="%.6g"))
    sources = {str(p): {"sha256": sha256_file(p)} for p in (metrics_path, codes_path)}
    prov = provenance(stage="claims", claims_file=str(csv_out), sources=sources,
                      claims_read={"metrics": list(METRICS_VARS), "codes": dict(CODES_VARS)})
    prov.update(merge_dataset_attrs(metrics.attrs, codes.attrs))
    write_json_atomic(sidecar_of(csv_out), prov)
    if rst_out is not None:
        write_text_atomic(rst_out, claims_rst(frame))
    return frame

"""Cross-polish of the Tammes and softmax codes of one (d, K), and the verdict same / differ / undecided.

Neither solver may lose on its own objective to a code the study holds.  :func:`cross_refine` takes a
pool of candidate codes -- the two solvers' codes and the normalised final classifiers of the trained
runs at this (d, K) -- evaluates every candidate on both objectives (minimum angle; exact rho_ovr with
its certified gap), polishes the best ``n_polish`` distinct candidates of each objective for that
objective (the polished codes join the pool), and returns

* ``tammes`` = the pool's code of largest minimum angle,
* ``softmax`` = the pool's code of largest rho_ovr,

both among the candidates whose rho_ovr is certified to ``GAP_TOL``.  When one candidate is within the
tolerances (``ANGLE_TOL``; ``OVR_TOL`` plus its gap) of the best on both objectives, it is both codes
(optimal sets are often not unique: rattlers move freely).  Both are maxima over the same set, so
``tammes.angle >= softmax.angle`` and ``softmax.ovr >= tammes.ovr`` hold by construction.

Polish: the SLP of :mod:`gnc.codes._polish` (softmax codes: joint in (W, H), H = the dual directions
of the exact one-vs-rest projections) when the LP is small, else for softmax codes the sharp smoothed
refinement of :mod:`gnc.codes.softmax`.  The time budget is split evenly between the two objectives;
each polish gets what is left of its share.

Verdict (:func:`verdict`), with the tolerances below:

* ``same``: the two codes are equal up to rotation/reflection and relabelling --
  :func:`gnc.codes.compare.code_distance` (RMS distance per vector) <= ``SAME_TOL`` -- and that code is
  first-order optimal for both problems (KKT residuals below, <= ``KKT_TOL``): one code that is merely
  the best found for both within a budget is not evidence that the problems share an optimum;
* ``differ``: each code is first-order optimal for its own problem (KKT residual of
  :mod:`gnc.codes._polish` <= ``KKT_TOL``) and beats the other on its own objective by more than the
  tolerance (angle: ``ANGLE_TOL`` degrees; rho_ovr: ``OVR_TOL`` plus both certified gaps);
* ``undecided``: anything else (the budget did not bring the codes to a first-order point, or the
  difference is within the tolerance while the codes are not equal).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import torch

from ..maths import normalize_rows
from . import softmax, tammes
from ._common import exact_ovr, min_angle_deg, tammes_rattlers
from ._polish import kkt_residual_softmax, kkt_residual_tammes, slp_softmax, slp_tammes
from ._smooth import Schedule, smooth_softmax
from .compare import code_distance

#: a published one-vs-rest value must be certified to this duality gap (relative to max(1, value));
#: candidates whose value is not are kept in the pool's record but never chosen
GAP_TOL = 1e-7
#: RMS distance per vector after the best rotation/reflection and relabelling below which two codes are the same
SAME_TOL = 1e-3
#: differences of the minimum angle (degrees) at or below this are not a difference
ANGLE_TOL = 1e-7
#: differences of rho_ovr at or below this plus the two certified gaps are not a difference
OVR_TOL = 1e-7
#: a code is first-order optimal for its problem when its KKT residual is at most this
KKT_TOL = 1e-6
#: active-set tolerance of the KKT checks
ACTIVE_TOL = 1e-9

VERDICTS = ("same", "differ", "undecided")


@dataclasses.dataclass
class Candidate:
    """One code of the pool with both objectives evaluated (``ovr`` certified to ``ovr_gap``)."""

    name: str
    W: np.ndarray
    angle: float
    ovr: float
    ovr_gap: float
    H: np.ndarray | None            # dual directions of the exact one-vs-rest projections (None: one is 0)
    seconds: float                  # polish time (0 for a given code)
    dist: np.ndarray                # per-class exact one-vs-rest distances


def evaluate(name: str, W: np.ndarray, seconds: float = 0.0) -> Candidate:
    """Both objectives of ``W`` (rows normalised): min angle and the certified exact rho_ovr."""
    W = normalize_rows(W)
    res = exact_ovr(W)
    return Candidate(name, W, min_angle_deg(W), float(res.value), float(res.value_gap),
                     softmax.dual_from_ovr(W, res), seconds, np.asarray(res.dist, dtype=np.float64))


def _polish_tammes(c: Candidate, time_limit: float | None) -> np.ndarray | None:
    K, d = c.W.shape
    if K * (d - 1) > tammes.POLISH_MAX_VARS:
        return None
    return slp_tammes(c.W, r0=1e-4, time_limit=time_limit)[0]


def _polish_softmax(c: Candidate, time_limit: float | None) -> np.ndarray:
    K, d = c.W.shape
    H = c.W if c.H is None else c.H
    if 2 * K * (d - 1) <= softmax.POLISH_MAX_VARS:
        return slp_softmax(c.W, H, time_limit=time_limit)[0]
    Wt = torch.as_tensor(c.W, dtype=torch.float64)[None]
    Ht = torch.as_tensor(H, dtype=torch.float64)[None]
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    return smooth_softmax(Wt, Ht, Schedule(*softmax.DENSE_REFINE), deadline=deadline)[0][0].numpy()


def _distinct(cands: list[Candidate], key, n: int) -> list[Candidate]:
    """The ``n`` best candidates by ``key`` whose values differ (equal values: the same code met twice)."""
    out: list[Candidate] = []
    for c in sorted(cands, key=key, reverse=True):
        if not math.isfinite(key(c)):
            continue
        if all(abs(key(c) - key(o)) > 1e-12 for o in out):
            out.append(c)
        if len(out) == n:
            break
    return out


@dataclasses.dataclass
class CrossResult:
    d: int
    K: int
    tammes: Candidate
    softmax: Candidate
    pool: list[Candidate]
    evidence: dict
    seconds: float


def cross_refine(d: int, K: int, candidates: dict[str, np.ndarray], *, time_budget: float | None = 30.0,
                 n_polish: int = 2) -> CrossResult:
    """Best Tammes and softmax codes over ``candidates`` and their polishes (see the module docstring).
    ``time_budget`` (seconds, evaluation included; None: every polish runs until it stops improving)."""
    if not candidates:
        raise ValueError(f"cross_refine(d={d}, K={K}): no candidate codes")
    for name, W in candidates.items():
        if np.shape(W) != (K, d):
            raise ValueError(f"cross_refine(d={d}, K={K}): candidate {name!r} has shape {np.shape(W)}, "
                             f"expected ({K}, {d})")
    t0 = time.perf_counter()
    pool = [evaluate(name, W) for name, W in candidates.items()]
    objectives = (("tammes", lambda c: c.angle, _polish_tammes), ("softmax", lambda c: c.ovr, _polish_softmax))
    for i, (obj, key, polish) in enumerate(objectives):
        for c in _distinct(pool, key, n_polish):
            left = None if time_budget is None else t0 + (i + 1) * time_budget / 2.0 - time.perf_counter()
            if left is not None and left <= 0.05:
                break
            tp = time.perf_counter()
            W = polish(c, left)
            if W is not None:
                pool.append(evaluate(f"{c.name}>{obj}", W, time.perf_counter() - tp))
    eligible = [c for c in pool if certified(c)]
    if not eligible:
        raise ValueError(f"cross_refine(d={d}, K={K}): no candidate's one-vs-rest value could be certified to a "
                         f"duality gap <= {GAP_TOL:g}: " + ", ".join(f"{c.name} (gap {c.ovr_gap:.1e})" for c in pool))
    tam = max(eligible, key=lambda c: c.angle)
    soft = max(eligible, key=lambda c: c.ovr)
    # a code within the tolerance of the best on both objectives is the answer to both problems
    both = [c for c in eligible if c.angle >= tam.angle - ANGLE_TOL and c.ovr >= soft.ovr - OVR_TOL - c.ovr_gap]
    if both:
        tam = soft = max(both, key=lambda c: (c.angle, c.ovr))
    return CrossResult(d, K, tam, soft, pool, verdict(tam, soft), time.perf_counter() - t0)


def certified(c: Candidate) -> bool:
    """Whether the candidate's rho_ovr is certified to the published tolerance ``GAP_TOL``."""
    return math.isfinite(c.ovr) and math.isfinite(c.ovr_gap) and c.ovr_gap <= GAP_TOL * max(1.0, abs(c.ovr))


def verdict(tam: Candidate, soft: Candidate) -> dict:
    """Evidence and the verdict same / differ / undecided for the two problems' best codes."""
    dist = 0.0 if tam.W is soft.W else code_distance(tam.W, soft.W)
    kt = kkt_residual_tammes(tam.W, tol=ACTIVE_TOL)
    ks = kkt_residual_softmax(soft.W, soft.W if soft.H is None else soft.H, tol=ACTIVE_TOL)
    angle_gain = tam.angle - soft.angle                 # >= 0 by construction
    ovr_gain = soft.ovr - tam.ovr                       # >= 0 by construction
    ovr_tol = OVR_TOL + soft.ovr_gap + tam.ovr_gap
    first_order = kt["kkt_residual"] <= KKT_TOL and ks["kkt_residual"] <= KKT_TOL
    if dist <= SAME_TOL and first_order:
        v, why = "same", (f"aligned RMS distance {dist:.2e} <= {SAME_TOL:g}, first-order optimal for both problems "
                          f"(KKT {kt['kkt_residual']:.1e}, {ks['kkt_residual']:.1e})")
    elif first_order and angle_gain > ANGLE_TOL and ovr_gain > ovr_tol:
        v, why = "differ", (f"both first-order optimal (KKT {kt['kkt_residual']:.1e}, {ks['kkt_residual']:.1e}); "
                            f"Tammes code wins the angle by {angle_gain:.3e} deg, softmax code rho_ovr by "
                            f"{ovr_gain:.3e}")
    else:
        reasons = []
        if not first_order:
            reasons.append(f"not both first-order optimal (KKT residual Tammes {kt['kkt_residual']:.1e}, "
                           f"softmax {ks['kkt_residual']:.1e} > {KKT_TOL:g})")
        if angle_gain <= ANGLE_TOL or ovr_gain <= ovr_tol:
            reasons.append(f"a gain within the tolerance (angle {angle_gain:.1e} deg, rho_ovr {ovr_gain:.1e})")
        v, why = "undecided", f"codes {dist:.2e} apart; " + "; ".join(reasons)
    return {"verdict": v, "reason": why, "align_distance": float(dist), "angle_gain": float(angle_gain),
            "ovr_gain": float(ovr_gain), "ovr_tol": float(ovr_tol), "tammes_kkt": float(kt["kkt_residual"]),
            "softmax_kkt": float(ks["kkt_residual"]), "tammes_n_active": int(kt["n_active"]),
            "softmax_n_active": int(ks["n_active"])}


#: contact tolerance of the rattler counts (cosine for Tammes, distance for softmax codes)
RATTLER_TOL = 1e-6


def cross_dataset(r: CrossResult):
    """The per-(d, K) file of the refine stage: both final codes, the pool and the verdict evidence."""
    import xarray as xr

    n_soft_rattlers = int(np.sum(r.softmax.dist > r.softmax.ovr + RATTLER_TOL))
    pool = [{"name": c.name, "angle": c.angle, "ovr": c.ovr, "ovr_gap": c.ovr_gap, "certified": certified(c),
             "seconds": c.seconds} for c in r.pool]
    return xr.Dataset({
        f"{p}_code": (("k", "component"), c.W, {"long_name": f"best {name} code (unit rows)", "units": "1"})
        for p, name, c in (("tammes", "Tammes", r.tammes), ("softmax", "softmax", r.softmax))
    }, attrs={
        "d": r.d, "K": r.K, "seconds": r.seconds, "tammes_source": r.tammes.name, "softmax_source": r.softmax.name,
        "tammes_angle": r.tammes.angle, "tammes_ovr": r.tammes.ovr, "tammes_ovr_gap": r.tammes.ovr_gap,
        "softmax_angle": r.softmax.angle, "softmax_ovr": r.softmax.ovr, "softmax_ovr_gap": r.softmax.ovr_gap,
        "tammes_rattlers": int(len(tammes_rattlers(r.tammes.W, RATTLER_TOL))), "softmax_rattlers": n_soft_rattlers,
        **r.evidence,
        "pool": json.dumps(pool),
    })


def load_candidates(tammes_path, softmax_path, trained: dict) -> dict[str, np.ndarray]:
    """The candidate pool of one (d, K): the two solvers' codes and the final classifier ``W`` of every
    trained run (``{run_id: features file}``), rows normalised."""
    # deferred: gnc.codes imports this module, and importing a solver must not load the I/O layer
    from ..io import open_netcdf
    from .store import load_solution

    out = {"tammes": load_solution(tammes_path).W, "softmax": load_solution(softmax_path).W}
    for run_id, path in sorted(trained.items()):
        with open_netcdf(path) as f:
            out[f"trained:{run_id}"] = normalize_rows(f["W"].values)
    return out

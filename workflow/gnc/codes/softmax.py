"""Softmax codes: K unit vectors in R^d maximising rho_ovr(W) = min_k dist(w_k, conv{w_j : j != k}).

Method.  By the dual form (docs/methods.md §2.3) ``dist_k(W) = max_{|h|=1} min_{j!=k} <w_k - w_j, h>``, so
maximising rho_ovr is the joint max-min problem over classifier rows W and dual directions H
(the HardMax problem with one feature per class, docs/methods.md §4):

    max_{W, H unit rows}  min_{k != j}  <h_k, w_k - w_j>.

1. *Smoothed continuation*, batched over restarts: soft-min (log-sum-exp) of all K(K-1) margins
   with sharpness growing from ``beta[0]`` to ``beta[1]``; Adam steps on the tangent gradients of
   W and H, rows re-normalised; rows processed in blocks for large K.  Restarts start from random
   codes with H = W, from a Tammes run (``init="tammes"``), or both (``"mixed"``, default).
   The first round is a quick one (``QUICK`` = 8 restarts x 600 steps) so that a good code exists
   after a fraction of a second (anytime behaviour); then the configured round(s) follow.
   Large K (> 2048): each class's soft-min sees only its ``neighbours`` = 32 smallest margins (64 in
   the refinement),
   re-selected every ``refresh`` = 25 steps by one blocked full product (which also gives the
   exact min margin, i.e. the certified lower bound recorded in the history); the steps use sparse
   kernels, O(K m d) instead of O(K^2 d) -- 13x cheaper per step at (512, 10000).
2. *Refinement* (problems too large for the polish) of the best restart alone: a second, short
   continuation at very large sharpness (``refine`` = (iterations, beta0, beta1, lr0, lr1); default
   2000 steps, beta 5e3 -> 1e6; 300 sparse steps for large K, repeated from the best code while
   it improves when a time budget is left).
3. *Exact polish* of the best code of each round by sequential linear programming on the near-active margins
   (:func:`gnc.codes._polish.slp_softmax`) when the joint LP is small (2K(d-1) <= ``POLISH_MAX_VARS``);
   for larger problems the LP is slow and degenerate and the refinement reaches the same value
   (e.g. (10,100): 1 s of refinement ~ 400 s of SLP).  For the smallest problems (``hops`` > 0)
   the rounds' best is not polished directly but goes through ``hops`` basin hops: ``HOP_BATCH``
   copies perturbed by ``hop_scale``·sqrt(value) Gaussian noise, annealed together on the short,
   sharp ``HOP_SCHEDULE``; the best copy is polished and kept when it improves (if none does, the
   rounds' best is polished).
4. *Exact evaluation*: ``value = ovr = rho_ovr(W)`` from :func:`gnc.metrics.ovr.ovr_distances`.
   ``certificate["lower_bound"]`` is the min margin of the returned (W, H): since every h_k is a
   unit vector it proves ``rho_ovr(W) >= lower_bound`` without any QP.
   ``rattlers`` are classes whose one-vs-rest distance exceeds the minimum by more than
   ``certificate["rattler_tol"]`` (their constraint is inactive).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ._common import (CodeSolution, History, default_dtype, exact_ovr, min_angle_deg, normalize_rows,
                      ovr_fields, polish_limit, solver_start, torch_device)
from ._polish import kkt_residual_softmax, slp_softmax
from ._smooth import Schedule, min_margin_batched, smooth_softmax, smooth_tammes
from .tammes import random_sphere

#: the quick first round: (restarts, iterations)
QUICK = (8, 600)

#: polish only when the joint LP has at most this many variables (2*K*(d-1))
POLISH_MAX_VARS = 600

#: basin hops: copies of the perturbed best code annealed together, and their short, sharp schedule
#: (iterations, beta0, beta1, lr0, lr1); the best copy is then polished
HOP_BATCH = 8
HOP_SCHEDULE = (200, 1e3, 2e5, 2e-3, 1e-6)


def dual_from_ovr(W: np.ndarray, res) -> np.ndarray | None:
    """Unit dual directions h_k = (w_k - P_k w_k)/|.| from the projections of an OVRResult
    (``support``/``weights``); None when the result carries no support."""
    if res is None or getattr(res, "support", None) is None or getattr(res, "weights", None) is None:
        return None
    H = np.empty_like(W)
    for k in range(W.shape[0]):
        r = W[k] - np.asarray(res.weights[k]) @ W[np.asarray(res.support[k], dtype=np.int64)]
        n = np.linalg.norm(r)
        if n == 0:
            return None
        H[k] = r / n
    return H


def min_margin(W: np.ndarray, H: np.ndarray, block: int = 2048) -> float:
    """min_{k != j} <h_k, w_k - w_j> in float64 (row blocks): a proof that rho_ovr(W) >= this value
    when the rows of H are unit vectors."""
    W = np.asarray(W, dtype=np.float64)
    H = normalize_rows(H)
    K = W.shape[0]
    diag = np.einsum("kd,kd->k", H, W)
    best = np.inf
    for s in range(0, K, block):
        G = H[s:s + block] @ W.T
        M = diag[s:s + block, None] - G
        idx = np.arange(s, min(s + block, K))
        M[idx - s, idx] = np.inf
        best = min(best, float(M.min()))
    return best


def _defaults(d: int, K: int) -> dict:
    size = K * d
    if size <= 400:
        # + basin hops: at (3, 60) the rounds' best polishes to the 0.1104133 basin for 7 of 8 seeds;
        # the hops find 0.1105136 / 0.1105264 (the ovr value of the best-known Tammes code)
        return dict(restarts=8, iters=600, hops=8)
    if size <= 4000:
        return dict(restarts=16, iters=3000)
    if size <= 40000:
        return dict(restarts=4, iters=3000)
    if K <= 2048:
        return dict(restarts=1, iters=400)
    # large K: sparse steps on the 32 nearest margins, started sharp (measured at (512, 10000), 1 thread:
    # beta0 = 300, lr0 = 0.005 reach a given value ~2x sooner than the dense schedule's 5 / 0.02, and
    # 32 neighbours certify 0.8635 after 28 s where 64 take 45 s); one round (a second random
    # restart rarely beats a refined first one), then refinement on the 64 nearest margins, repeated
    # from the best code while it improves and time is left
    return dict(restarts=1, iters=300, neighbours=32, beta=(300.0, 1e5), lr=(0.005, 1e-5),
                refine=(300, 5e3, 1e6, 3e-4, 1e-7), refine_neighbours=64, rounds=1)


#: schedule defaults of the dense path: soft-min sharpness and Adam step, first -> last step
DENSE_BETA, DENSE_LR = (5.0, 2e4), (0.02, 1e-5)
#: refinement of the best code (dense path): (iterations, beta0, beta1, lr0, lr1)
DENSE_REFINE = (2000, 5e3, 1e6, 3e-4, 1e-7)


def solve_softmax_code(d: int, K: int, *, restarts: int | None = None, seed: int = 0, device: str = "cpu",
                       time_budget: float | None = None, iters: int | None = None,
                       beta: tuple[float, float] | None = None, lr: tuple[float, float] | None = None,
                       init: str | np.ndarray = "mixed", tammes_iters: int | None = None,
                       refine: tuple | str | None = "auto",
                       polish: bool = True, polish_time: float | None = 60.0, block: int | None = None,
                       dtype=None, evaluate_ovr: bool = True, verbose: bool = False,
                       neighbours: int | str | None = "auto", refresh: int = 25,
                       hops: int | None = None, hop_scale: float = 0.05) -> CodeSolution:
    """Best softmax code found in R^d with K classes (``value`` = exact rho_ovr).

    ``neighbours``: each class's soft-min sees only its m nearest margins, refreshed every
    ``refresh`` steps (O(K m d) per step instead of O(K^2 d); ``"auto"``: m = 32 for K > 2048 and
    64 in the refinement, dense below; ``None``: always dense).

    ``init``: ``"random"``, ``"tammes"``, ``"mixed"`` (half of the restarts each) or a (K, d)
    array that seeds restart 0.  With ``time_budget`` (seconds) rounds of restarts are repeated
    until the budget is spent (the polish gets what is left, at most ``polish_time``) -- except with
    hops, which then get the budget after the planned rounds.
    """
    dfl = _defaults(d, K)
    t_start, deadline, restarts, iters = solver_start(d, K, time_budget, dfl, restarts, iters)
    dev = torch_device(device)
    tdtype = default_dtype(K, d, dtype)
    if block is None and K > 4096:
        block = 512
    nbrs = dfl.get("neighbours") if neighbours == "auto" else neighbours
    beta = dfl.get("beta", DENSE_BETA) if beta is None else beta
    lr = dfl.get("lr", DENSE_LR) if lr is None else lr
    refine = dfl.get("refine", DENSE_REFINE) if isinstance(refine, str) and refine == "auto" else refine
    hist = History(t_start)
    smooth_deadline = deadline
    can_polish = polish and 2 * K * (d - 1) <= POLISH_MAX_VARS
    if deadline is not None:
        smooth_deadline = t_start + (0.7 if can_polish else 0.85) * float(time_budget)

    best = None  # (L, W, H)
    cert: dict = {"polished": False, "refined": False}
    polish_info: dict | None = None

    max_hops = dfl.get("hops", 0) if hops is None else int(hops)
    use_hops = can_polish and max_hops > 0  # then the hops polish, not the rounds
    polished = False  # whether best is the result of a polish

    def polish(W0: np.ndarray, H0: np.ndarray):
        """SLP polish of (W0, H0) within the budget; the result becomes ``best`` when it is at least
        as good (every accepted step goes to the history)."""
        nonlocal best, polish_info, polished
        Wp, Hp, Lp, info = slp_softmax(W0, H0, time_limit=polish_limit(polish_time, deadline), on_accept=hist.add)
        if Lp >= best[0]:
            best, polish_info, polished = (Lp, Wp, Hp), info, True
            hist.add(Lp)

    # round plan: a quick round first (few restarts, short schedule: a good code fast), then the
    # configured rounds (quality); with a time budget the configured round repeats until it is spent
    quick = (min(restarts, QUICK[0]), min(iters, QUICK[1]))
    plan = [quick] if quick != (restarts, iters) else []
    n_rounds = 0
    while True:
        B, T = plan[n_rounds] if n_rounds < len(plan) else (restarts, iters)
        sched = Schedule(T, beta[0], beta[1], lr[0], lr[1])
        X0 = random_sphere(B, K, d, seed * 100003 + n_rounds, tdtype, dev)
        mode = init if isinstance(init, str) else "random"
        if mode not in ("random", "tammes", "mixed"):
            raise ValueError(f"unknown init {init!r}")
        n_t = {"random": 0, "tammes": B, "mixed": B // 2}[mode]
        if n_t > 0:
            t_it = max(T // 3, 50) if tammes_iters is None else int(tammes_iters)
            X0[:n_t] = smooth_tammes(X0[:n_t], Schedule(t_it, 5.0, 300.0, 0.05, 1e-3), block=block,
                                     deadline=smooth_deadline)
        if not isinstance(init, str) and n_rounds == 0:
            X0[0] = torch.as_tensor(normalize_rows(init), dtype=tdtype, device=dev)

        def cb(t, W, H, L=None):
            L = min_margin_batched(W, H, block) if L is None else L
            hist.add(float(L.max()))

        W, H = smooth_softmax(X0, X0.clone(), sched, block=block, deadline=smooth_deadline, callback=cb,
                              every=max(T // 30, 1), neighbours=nbrs, refresh=refresh)
        L = min_margin_batched(W, H, block).cpu().numpy()
        b = int(np.argmax(L))
        hist.add(float(L[b]))
        if best is None or L[b] > best[0]:
            best = (float(L[b]), normalize_rows(W[b].to(torch.float64).cpu().numpy()),
                    normalize_rows(H[b].to(torch.float64).cpu().numpy()))
            polished = False
            if can_polish and not use_hops:
                polish(best[1], best[2])
        n_rounds += 1
        if verbose:
            print(f"[softmax d={d} K={K}] round {n_rounds} (B={B}, iters={T}): best lower bound {best[0]:.8f} "
                  f"({hist.elapsed():.1f}s)")
        if smooth_deadline is not None and time.perf_counter() > smooth_deadline:
            break
        if "rounds" in dfl and n_rounds >= dfl["rounds"] and restarts == dfl["restarts"]:
            break
        # without a time budget the plan's rounds only; with hops too: the budget goes to the hops,
        # whose polishes need it ((10, 25): one polish takes ~27 s; rounds repeated until 70 % of a
        # 30 s budget left the hop's polish 9 s and a code 1.4e-6 below the converged one)
        if (smooth_deadline is None or use_hops) and n_rounds >= len(plan) + 1:
            break

    # basin hops (polished problems): HOP_BATCH copies of the best code, each perturbed by
    # hop_scale * sqrt(value) Gaussian noise, annealed together on a short sharp schedule; the best
    # copy is polished and kept if it improves; with a time budget until it is spent.  (3, 60), 8
    # seeds: the round's best polishes to the 0.1104133 basin in 7 of 8; one hop reaches >= 0.11045
    # in 7 of 8, in about the time of one polish started from a perturbed code
    n_hops = 0
    if use_hops:
        rng = np.random.default_rng(seed + 7919)
        while (n_hops < max_hops) if deadline is None else (time.perf_counter() < deadline):
            L0, W0, _ = best
            Y = W0[None] + hop_scale * math.sqrt(max(L0, 1e-12)) * rng.standard_normal((HOP_BATCH,) + W0.shape)
            Y = torch.as_tensor(Y, dtype=tdtype, device=dev)
            Y = Y / Y.norm(dim=-1, keepdim=True)
            Wh, Hh = smooth_softmax(Y, Y.clone(), Schedule(*HOP_SCHEDULE), block=block, deadline=deadline)
            Lh = min_margin_batched(Wh, Hh, block)
            b = int(Lh.argmax())
            hist.add(float(Lh[b]))
            polish(Wh[b].to(torch.float64).cpu().numpy(), Hh[b].to(torch.float64).cpu().numpy())
            n_hops += 1
        if not polished:  # no hop improved on the round's (unpolished) best: polish that
            polish(best[1], best[2])
    cert["hops"] = n_hops
    L, Wb, Hb = best
    r_nbrs = dfl.get("refine_neighbours", nbrs) if neighbours == "auto" else nbrs
    n_refine = 0
    while not can_polish and refine is not None and refine[0] > 0 and \
            (deadline is None or time.perf_counter() < deadline):
        # one pass without a time budget; with one, passes from the best code while they improve
        Wt = torch.as_tensor(Wb, dtype=tdtype, device=dev)[None]
        Ht = torch.as_tensor(Hb, dtype=tdtype, device=dev)[None]
        Wr, Hr = smooth_softmax(Wt, Ht, Schedule(int(refine[0]), *map(float, refine[1:])), block=block,
                                deadline=deadline, neighbours=r_nbrs, refresh=refresh,
                                callback=lambda t, W_, H_, L_: L_ is not None and hist.add(float(L_.max())))
        Lr = float(min_margin_batched(Wr, Hr, block)[0])
        cert["refined"] = True
        n_refine += 1
        improved = Lr > L + 1e-7 * max(1.0, abs(L))
        if Lr > L:
            L, Wb, Hb = Lr, normalize_rows(Wr[0].to(torch.float64).cpu().numpy()), \
                normalize_rows(Hr[0].to(torch.float64).cpu().numpy())
            hist.add(L)
        if deadline is None or not improved:
            break
    if n_refine:
        cert["refine_passes"] = n_refine
    if polish_info is not None:
        info = polish_info
        cert.update(polished=True, polish_iterations=info["iterations"], polish_seconds=info["seconds"],
                    polish_stopped=info.get("stopped", "converged"))
        cert.update(kkt_residual_softmax(Wb, Hb, tol=1e-9))
    cert["lower_bound"] = min_margin(Wb, Hb)          # recomputed in float64
    res = exact_ovr(Wb) if evaluate_ovr else None
    of = ovr_fields(res)
    cert.update({k: v for k, v in of.items() if k != "ovr"})
    value = of["ovr"]
    if res is not None and not isinstance(init, str):
        # never return something worse than the code we were given
        res0 = exact_ovr(normalize_rows(init))
        if res0 is not None and res0.value > value:
            Wb = normalize_rows(init)
            Hb = Wb.copy()
            res, of = res0, ovr_fields(res0)
            value = of["ovr"]
            cert.update({k: v for k, v in of.items() if k != "ovr"})
            cert["returned_init"] = True
            cert["lower_bound"] = min_margin(Wb, Hb)
    if res is not None:
        He = dual_from_ovr(Wb, res)
        if He is not None:
            Le = min_margin(Wb, He)
            if Le > cert["lower_bound"]:
                Hb, cert["lower_bound"] = He, Le
                cert["dual_from"] = "ovr projections"
    rattler_tol = 1e-6 if cert["polished"] else 1e-3
    cert["rattler_tol"] = rattler_tol
    if res is not None:
        dist = np.asarray(res.dist, dtype=np.float64)
        rattlers = np.nonzero(dist > value + rattler_tol)[0].astype(np.int64)
        hist.add(value)
    else:
        rattlers = np.zeros(0, dtype=np.int64)
    settings = dict(restarts=restarts, iters=iters, beta=list(beta), lr=list(lr),
                    init=init if isinstance(init, str) else "array", tammes_iters=tammes_iters,
                    refine=None if refine is None else list(refine),
                    polish=bool(can_polish), polish_time=polish_time, rounds=n_rounds, time_budget=time_budget,
                    neighbours=nbrs, refine_neighbours=r_nbrs, refresh=refresh if nbrs else None,
                    hops=max_hops if can_polish else 0, hop_scale=hop_scale,
                    device=str(dev), dtype=str(tdtype), block=block)
    return CodeSolution(W=Wb, problem="softmax", d=d, K=K, value=float(value), min_angle_deg=min_angle_deg(Wb),
                        ovr=float(value), certificate=cert, rattlers=rattlers, settings=settings, seed=seed,
                        seconds=time.perf_counter() - t_start, H=Hb, history=hist.points)

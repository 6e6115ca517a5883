"""Tammes problem: K unit vectors in R^d maximising the minimum pairwise angle.

Method (see :mod:`gnc.codes._smooth` and :mod:`gnc.codes._polish`):

1. *Smoothed continuation*, batched: ``restarts`` random configurations optimised together as one
   (B, K, d) tensor on the soft maximum cosine (log-sum-exp with sharpness growing from
   ``beta[0]`` to ``beta[1]``), Adam steps on the sphere.
2. *Exact polish*: the best ``n_polish`` restarts are polished by sequential linear programming on
   the active pairs (trust region, HiGHS) to a point that satisfies the first-order conditions of
   the max-min problem to ~1e-10.
3. *Basin hopping* (optional, small problems): the best code is perturbed (Gaussian noise of
   ``hop_scale`` times the minimum angle) and re-polished; improvements are kept.

With ``time_budget`` rounds of 1.+2. are repeated, and then hops, until the budget is spent.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ._common import (CodeSolution, History, default_dtype, exact_ovr, max_cosine, normalize_rows, ovr_fields,
                      polish_limit, solver_start, tammes_rattlers, torch_device)
from ._polish import kkt_residual_tammes, slp_tammes
from ._smooth import Schedule, max_cos_batched, smooth_tammes

#: polish only when the LP has at most this many variables (K*(d-1))
POLISH_MAX_VARS = 6000


def _defaults(d: int, K: int) -> dict:
    size = K * d
    if size <= 400:
        # small codes: polish every restart, then 120 basin hops from the best (R^3 records K <= 60:
        # with 32 polishes and 40 hops K = 40 and K = 57 stayed 0.11-0.14 % below the record)
        return dict(restarts=64, iters=400, n_polish=64, hops=120)
    if size <= 4000:
        return dict(restarts=32, iters=800, n_polish=4, hops=0)
    if size <= 40000:
        return dict(restarts=8, iters=1500, n_polish=1, hops=0)
    return dict(restarts=1, iters=300, n_polish=0, hops=0)


def random_sphere(B: int, K: int, d: int, seed: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    X = torch.randn(B, K, d, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=-1, keepdim=True)
    return X.to(device=device, dtype=dtype)


def solve_tammes(d: int, K: int, *, restarts: int | None = None, seed: int = 0, device: str = "cpu",
                 time_budget: float | None = None, iters: int | None = None,
                 beta: tuple[float, float] = (5.0, 300.0), lr: tuple[float, float] = (0.05, 1e-3),
                 polish: bool = True, n_polish: int | None = None, hops: int | None = None,
                 hop_scale: float = 0.15, polish_time: float | None = 300.0, block: int | None = None,
                 dtype=None, init: np.ndarray | None = None, evaluate_ovr: bool = True,
                 verbose: bool = False) -> CodeSolution:
    """Best code found for the Tammes problem in R^d with K points (``value`` = min angle, degrees).

    ``init`` (K, d) seeds the first restart.  ``polish_time`` caps each SLP polish (seconds).
    ``device`` is any torch device ("cpu", "cuda").  ``block`` processes rows in blocks of that
    size (memory O(block*K)); chosen automatically.
    """
    dfl = _defaults(d, K)
    t_start, deadline, restarts, iters = solver_start(d, K, time_budget, dfl, restarts, iters)
    n_polish = min(dfl["n_polish"] if n_polish is None else int(n_polish), restarts)
    hops = dfl["hops"] if hops is None else int(hops)
    can_polish = polish and K * (d - 1) <= POLISH_MAX_VARS
    dev = torch_device(device)
    tdtype = default_dtype(K, d, dtype)
    if block is None and K > 4096:
        block = 1024
    sched = Schedule(iters, beta[0], beta[1], lr[0], lr[1])
    hist = History(t_start)
    rng = np.random.default_rng(seed)

    best_X, best_mu = None, np.inf
    n_rounds = 0
    n_polished = 0
    polish_info: dict = {}
    values_seen: list[float] = []

    def consider(X: np.ndarray, mu: float):
        nonlocal best_X, best_mu
        if mu < best_mu - 1e-15:
            best_X, best_mu = X, mu
            progress(mu)

    def progress(mu: float):  # the anytime curve, also fed by accepted polish steps (each a valid code)
        hist.add(math.degrees(math.acos(min(1.0, mu))))

    while True:
        X0 = random_sphere(restarts, K, d, seed * 100003 + n_rounds, tdtype, dev)
        if init is not None and n_rounds == 0:
            X0[0] = torch.as_tensor(normalize_rows(init), dtype=tdtype, device=dev)
        X = smooth_tammes(X0, sched, block=block, deadline=deadline)
        mu = max_cos_batched(X, block).cpu().numpy()
        Xn = X.to(torch.float64).cpu().numpy()
        order = np.argsort(mu)
        consider(normalize_rows(Xn[order[0]]), float(mu[order[0]]))
        if can_polish:
            for b in order[:n_polish]:
                Xp, mup, info = slp_tammes(Xn[b], r0=2e-3, time_limit=polish_limit(polish_time, deadline),
                                           on_accept=progress)
                n_polished += 1
                polish_info = info
                values_seen.append(math.degrees(math.acos(min(1.0, mup))))
                consider(Xp, mup)
                if deadline is not None and time.perf_counter() > deadline:
                    break
        n_rounds += 1
        if verbose:
            print(f"[tammes d={d} K={K}] round {n_rounds}: best {math.degrees(math.acos(best_mu)):.9f} deg "
                  f"({hist.elapsed():.1f}s)")
        if deadline is None:
            break
        round_deadline = deadline if (hops == 0 or not can_polish) else t_start + 0.5 * float(time_budget)
        if time.perf_counter() > round_deadline:
            break

    n_hops = 0
    if can_polish and hops > 0:
        theta = math.acos(min(1.0, best_mu))
        while (n_hops < hops) if deadline is None else (time.perf_counter() < deadline):
            Y = best_X + hop_scale * theta * rng.standard_normal(best_X.shape)
            Yp, muy, _ = slp_tammes(Y, r0=0.05, time_limit=polish_limit(polish_time, deadline), on_accept=progress)
            n_hops += 1
            values_seen.append(math.degrees(math.acos(min(1.0, muy))))
            consider(Yp, muy)

    W = normalize_rows(best_X)
    mu = max_cosine(W)                                  # float64, whatever precision was used above
    polished = can_polish and n_polished + n_hops > 0
    tol = 1e-9 if polished else 1e-6
    cert: dict = {"polished": bool(polished), "contact_tol": tol}
    if polished:
        cert.update(kkt_residual_tammes(W, tol=tol))
        cert["polish_iterations"] = polish_info.get("iterations")
        if values_seen:
            vs = np.asarray(values_seen)
            cert["n_local_optima_hitting_best"] = int((vs >= vs.max() - 1e-7).sum())
            cert["n_local_optima"] = int(len(vs))
    angle = math.degrees(math.acos(min(1.0, mu)))
    ovr_res = exact_ovr(W) if evaluate_ovr else None
    of = ovr_fields(ovr_res)
    cert.update({k: v for k, v in of.items() if k != "ovr"})
    settings = dict(restarts=restarts, iters=iters, beta=list(beta), lr=list(lr), polish=bool(can_polish),
                    n_polish=n_polish, hops=hops, hop_scale=hop_scale, rounds=n_rounds, n_polished=n_polished,
                    n_hops=n_hops, time_budget=time_budget, device=str(dev), dtype=str(tdtype), block=block)
    return CodeSolution(W=W, problem="tammes", d=d, K=K, value=angle, min_angle_deg=angle, ovr=of["ovr"],
                        certificate=cert, rattlers=tammes_rattlers(W, tol), settings=settings, seed=seed,
                        seconds=time.perf_counter() - t_start, history=hist.points)

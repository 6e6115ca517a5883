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

import dataclasses
import math
import time

import numpy as np
import torch

from ..maths import normalize_rows
from ._common import (CodeSolution, SolverRun, add_ovr_fields, exact_ovr, max_cosine, resolve_options,
                      tammes_rattlers)
from ._polish import kkt_residual_tammes, slp_tammes
from ._smooth import Schedule, max_cos_batched, smooth_tammes

#: polish only when the LP has at most this many variables (K*(d-1))
POLISH_MAX_VARS = 6000


def _defaults(d: int, K: int) -> dict:
    size = K * d
    if size <= 400:
        # small codes: polish every restart, then 120 basin hops from the best (with 32 polishes and
        # 40 hops some R^3 records K <= 60, e.g. K = 40 and 57, are missed by about 0.1 %)
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


@dataclasses.dataclass(frozen=True)
class TammesOptions:
    """Tuning knobs of :func:`solve_tammes` (steps 1-3 of the module docstring); ``None`` takes the
    default for the problem's size (:func:`_defaults`).

    * ``beta``, ``lr``: soft-max sharpness and Adam step of the continuation, first -> last step.
    * ``polish``, ``n_polish``, ``polish_time``: SLP polish of the ``n_polish`` best restarts of each
      round when the LP is small (K(d-1) <= ``POLISH_MAX_VARS``), at most ``polish_time`` s each.
    * ``block``: rows per block of the K x K products (1024 for K > 4096, else all rows).
    * ``dtype``: torch dtype of the continuation (float64 up to ~2e7 pair-dims, float32 beyond).
    """

    beta: tuple[float, float] = (5.0, 300.0)
    lr: tuple[float, float] = (0.05, 1e-3)
    polish: bool = True
    n_polish: int | None = None
    hops: int | None = None
    hop_scale: float = 0.15
    polish_time: float | None = 300.0
    block: int | None = None
    dtype: object = None


def solve_tammes(d: int, K: int, *, restarts: int | None = None, seed: int = 0, device: str = "cpu",
                 time_budget: float | None = None, iters: int | None = None, init: np.ndarray | None = None,
                 evaluate_ovr: bool = True, options: TammesOptions | None = None, **knobs) -> CodeSolution:
    """Best code found for the Tammes problem in R^d with K points (``value`` = min angle, degrees).

    ``init`` (K, d) seeds the first restart; ``restarts`` and ``iters`` (steps per restart) default by
    size.  Tuning knobs: ``options`` (a :class:`TammesOptions`) or its fields as keywords, which
    override ``options`` (``solve_tammes(3, 24, hops=0, polish_time=10)``).
    """
    opts = resolve_options(TammesOptions, options, knobs, "solve_tammes")
    run = _TammesRun(d, K, restarts=restarts, seed=seed, device=device, time_budget=time_budget, iters=iters,
                     init=init, opts=opts)
    run.rounds()
    run.hops()
    return run.result(evaluate_ovr)


class _TammesRun(SolverRun):
    """One solve: the settings resolved against the size defaults, the clock, the best code so far
    (``best_X`` with max cosine ``best_mu``), the anytime history and the polished local optima."""

    def __init__(self, d, K, *, opts: TammesOptions, **kw):
        dfl = _defaults(d, K)
        super().__init__(d, K, dfl, opts=opts, **kw)
        self.n_polish = min(dfl["n_polish"] if opts.n_polish is None else int(opts.n_polish), self.restarts)
        self.max_hops = dfl["hops"] if opts.hops is None else int(opts.hops)
        self.can_polish = opts.polish and K * (d - 1) <= POLISH_MAX_VARS
        self.block = 1024 if opts.block is None and K > 4096 else opts.block
        self.sched = Schedule(self.iters, opts.beta[0], opts.beta[1], opts.lr[0], opts.lr[1])
        self.rng = np.random.default_rng(self.seed)
        self.best_X, self.best_mu = None, np.inf
        self.n_rounds = self.n_polished = self.n_hops = 0
        self.polish_info: dict = {}
        self.values_seen: list[float] = []  # angle (degrees) of every polished local optimum

    def _consider(self, X: np.ndarray, mu: float) -> None:
        if mu < self.best_mu - 1e-15:
            self.best_X, self.best_mu = X, mu
            self._progress(mu)

    def _progress(self, mu: float) -> None:
        """The anytime curve, also fed by accepted polish steps (each a valid code)."""
        self.hist.add(math.degrees(math.acos(min(1.0, mu))))

    def _polish(self, X: np.ndarray, r0: float) -> float:
        """SLP polish of X within the budget, considered for ``best``; returns its max cosine."""
        Xp, mup, info = slp_tammes(X, r0=r0, time_limit=self.polish_limit(), on_accept=self._progress)
        self.values_seen.append(math.degrees(math.acos(min(1.0, mup))))
        self._consider(Xp, mup)
        return info

    def rounds(self) -> None:
        """Rounds of batched restarts, each followed by the polish of its ``n_polish`` best: one round
        without a time budget; with one, until it is spent (half of it when hops follow)."""
        while True:
            self._round()
            self.n_rounds += 1
            if self.deadline is None:
                break
            hops_follow = self.max_hops > 0 and self.can_polish
            round_deadline = self.t_start + 0.5 * float(self.time_budget) if hops_follow else self.deadline
            if time.perf_counter() > round_deadline:
                break

    def _round(self) -> None:
        X0 = random_sphere(self.restarts, self.K, self.d, self.seed * 100003 + self.n_rounds, self.tdtype, self.dev)
        if self.init is not None and self.n_rounds == 0:
            X0[0] = torch.as_tensor(normalize_rows(self.init), dtype=self.tdtype, device=self.dev)
        X = smooth_tammes(X0, self.sched, block=self.block, deadline=self.deadline)
        mu = max_cos_batched(X, self.block).cpu().numpy()
        Xn = X.to(torch.float64).cpu().numpy()
        order = np.argsort(mu)
        self._consider(normalize_rows(Xn[order[0]]), float(mu[order[0]]))
        if not self.can_polish:
            return
        for b in order[:self.n_polish]:
            self.polish_info = self._polish(Xn[b], r0=2e-3)
            self.n_polished += 1
            if self.deadline is not None and time.perf_counter() > self.deadline:
                break

    def hops(self) -> None:
        """Basin hops from the best code (polished problems): a Gaussian perturbation of ``hop_scale``
        times the minimum angle, re-polished; ``max_hops`` of them, or with a budget until it is spent."""
        if not (self.can_polish and self.max_hops > 0):
            return
        theta = math.acos(min(1.0, self.best_mu))
        while (self.n_hops < self.max_hops) if self.deadline is None else (time.perf_counter() < self.deadline):
            Y = self.best_X + self.opts.hop_scale * theta * self.rng.standard_normal(self.best_X.shape)
            self._polish(Y, r0=0.05)
            self.n_hops += 1

    def result(self, evaluate_ovr: bool) -> CodeSolution:
        W = normalize_rows(self.best_X)
        mu = max_cosine(W)                                  # float64, whatever precision was used above
        polished = self.can_polish and self.n_polished + self.n_hops > 0
        tol = 1e-9 if polished else 1e-6
        cert: dict = {"polished": bool(polished), "contact_tol": tol}
        if polished:
            cert.update(kkt_residual_tammes(W, tol=tol))
            cert["polish_iterations"] = self.polish_info.get("iterations")
            if self.values_seen:
                vs = np.asarray(self.values_seen)
                cert["n_local_optima_hitting_best"] = int((vs >= vs.max() - 1e-7).sum())
                cert["n_local_optima"] = int(len(vs))
        angle = math.degrees(math.acos(min(1.0, mu)))
        ovr = add_ovr_fields(cert, exact_ovr(W) if evaluate_ovr else None)
        o = self.opts
        settings = dict(restarts=self.restarts, iters=self.iters, beta=list(o.beta), lr=list(o.lr),
                        polish=bool(self.can_polish), n_polish=self.n_polish, hops=self.max_hops,
                        hop_scale=o.hop_scale, rounds=self.n_rounds, n_polished=self.n_polished, n_hops=self.n_hops,
                        time_budget=self.time_budget, device=str(self.dev), dtype=str(self.tdtype), block=self.block)
        return CodeSolution(W=W, problem="tammes", d=self.d, K=self.K, value=angle, min_angle_deg=angle,
                            ovr=ovr, certificate=cert, rattlers=tammes_rattlers(W, tol), settings=settings,
                            seed=self.seed, seconds=time.perf_counter() - self.t_start, history=self.hist.points)

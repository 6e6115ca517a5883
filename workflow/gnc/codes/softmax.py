"""Softmax codes: K unit vectors in R^d maximising rho_ovr(W) = min_k dist(w_k, conv{w_j : j != k}).

Method.  By the dual form (docs/methods.md §2.3) ``dist_k(W) = max_{|h|=1} min_{j!=k} <w_k - w_j, h>``, so
maximising rho_ovr is the joint max-min problem (the HardMax problem with one feature per class, §4)

    max_{W, H unit rows}  min_{k != j}  <h_k, w_k - w_j>.

1. *Smoothed continuation*, batched over restarts (:func:`gnc.codes._smooth.smooth_softmax`): soft-min of
   all K(K-1) margins with sharpness growing from ``beta[0]`` to ``beta[1]``.  Restarts start from random
   codes with H = W, from a Tammes run (``init="tammes"``), or both (``"mixed"``, default).  A quick
   round (``QUICK`` restarts x steps) comes first, so that a good code exists after a fraction of a
   second; then the configured round(s).  For K > 2048 each class's soft-min sees only its nearest
   margins (:func:`_defaults`): O(K m d) per step instead of O(K^2 d), 13x cheaper at (512, 10000).
2. *Refinement* of the best restart (problems too large for the polish): a short continuation at very
   large sharpness (``refine``), repeated from the best code while it improves and budget is left.
3. *Exact polish* of each round's best by sequential linear programming on the near-active margins
   (:func:`gnc.codes._polish.slp_softmax`) when the joint LP is small (2K(d-1) <= ``POLISH_MAX_VARS``);
   for larger problems the LP is slow and degenerate and the refinement reaches the same value
   ((10, 100): 1 s of refinement ~ 400 s of SLP).  For the smallest problems (``hops`` > 0) the rounds'
   best goes through basin hops instead (:meth:`_SoftmaxRun.hops`).
4. *Exact evaluation*: ``value = ovr = rho_ovr(W)`` (:func:`gnc.metrics.ovr.ovr_distances`).
   ``certificate["lower_bound"]`` is the min margin of the returned (W, H): every h_k is a unit vector,
   so it proves ``rho_ovr(W) >= lower_bound``.  ``rattlers``: classes whose one-vs-rest distance
   exceeds the minimum by more than ``certificate["rattler_tol"]``.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from ..maths import normalize_rows
from ._common import CodeSolution, SolverRun, add_ovr_fields, exact_ovr, min_angle_deg, resolve_options
from ._polish import kkt_residual_softmax, slp_softmax
from ._smooth import Schedule, min_margin_batched, smooth_softmax, smooth_tammes
from .tammes import random_sphere

#: the quick first round: (restarts, iterations)
QUICK = (8, 600)

#: polish only when the joint LP has at most this many variables (2*K*(d-1))
POLISH_MAX_VARS = 600

#: a polished code within this of the best margin (rounding: margins are at most 2) counts as a tie
TIE = 8 * np.finfo(np.float64).eps

#: basin hops: copies of the perturbed best code annealed together, and their short, sharp schedule
#: (iterations, beta0, beta1, lr0, lr1); the best copy is then polished
HOP_BATCH = 8
HOP_SCHEDULE = (200, 1e3, 2e5, 2e-3, 1e-6)


def dual_from_ovr(W: np.ndarray, res) -> np.ndarray | None:
    """Unit dual directions h_k = (w_k - P_k w_k)/|.| from the projections of an OVRResult
    (``support``/``weights``); None when one of them is 0."""
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
        # + basin hops (see _SoftmaxRun.hops)
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


@dataclasses.dataclass(frozen=True)
class SoftmaxOptions:
    """Tuning knobs of :func:`solve_softmax_code` (steps 1-3 of the module docstring); ``None`` /
    ``"auto"`` take the default for the problem's size (:func:`_defaults`).

    * ``beta``, ``lr``: soft-min sharpness and Adam step of the rounds, first -> last step.
    * ``tammes_iters``: steps of the Tammes continuation of the "tammes" restarts (max(iters // 3, 50)).
    * ``refine``: (iterations, beta0, beta1, lr0, lr1) of the refinement; None: no refinement.
    * ``polish``, ``polish_time``: SLP polish when the LP is small, at most ``polish_time`` s each.
    * ``block``: rows per block of the K x K products (512 for K > 4096, else all rows).
    * ``dtype``: torch dtype of the continuation (float64 up to ~2e7 pair-dims, float32 beyond).
    * ``neighbours``, ``refresh``: sparse steps on the m nearest margins (None: always dense).
    * ``hops``, ``hop_scale``: basin hops of polished problems and the scale of their perturbation.
    """

    beta: tuple[float, float] | None = None
    lr: tuple[float, float] | None = None
    tammes_iters: int | None = None
    refine: tuple | str | None = "auto"
    polish: bool = True
    polish_time: float | None = 60.0
    block: int | None = None
    dtype: object = None
    neighbours: int | str | None = "auto"
    refresh: int = 25
    hops: int | None = None
    hop_scale: float = 0.05


def solve_softmax_code(d: int, K: int, *, restarts: int | None = None, seed: int = 0, device: str = "cpu",
                       time_budget: float | None = None, iters: int | None = None,
                       init: str | np.ndarray = "mixed", evaluate_ovr: bool = True,
                       options: SoftmaxOptions | None = None, **knobs) -> CodeSolution:
    """Best softmax code found in R^d with K classes (``value`` = exact rho_ovr).

    ``init``: ``"random"``, ``"tammes"``, ``"mixed"`` (half of the restarts each) or a (K, d)
    array that seeds restart 0 (and is returned if nothing better is found).  With ``time_budget``
    (seconds) rounds of restarts are repeated until the budget is spent (the polish gets what is
    left) -- except with hops, which then get the budget after the planned rounds.  ``restarts``
    and ``iters`` (steps per restart) default by size.  Tuning knobs: ``options`` (a
    :class:`SoftmaxOptions`) or its fields as keywords, which override ``options``.
    """
    opts = resolve_options(SoftmaxOptions, options, knobs, "solve_softmax_code")
    run = _SoftmaxRun(d, K, restarts=restarts, seed=seed, device=device, time_budget=time_budget, iters=iters,
                      init=init, opts=opts)
    run.rounds()
    n_hops = run.hops()
    n_refine = run.refine()
    return run.result(n_hops, n_refine, evaluate_ovr)


class _SoftmaxRun(SolverRun):
    """One solve: the settings resolved against the size defaults, the clock, the best (L, W, H) so
    far (L: its certified min margin) and the anytime history of every valid code seen."""

    def __init__(self, d, K, *, init, opts: SoftmaxOptions, **kw):
        if isinstance(init, str) and init not in ("random", "tammes", "mixed"):
            raise ValueError(f"unknown init {init!r}")
        self.dfl = dfl = _defaults(d, K)
        super().__init__(d, K, dfl, init=init, opts=opts, **kw)
        self.block = 512 if opts.block is None and K > 4096 else opts.block
        auto = opts.neighbours == "auto"
        self.nbrs = dfl.get("neighbours") if auto else opts.neighbours
        self.r_nbrs = dfl.get("refine_neighbours", self.nbrs) if auto else self.nbrs
        self.beta = dfl.get("beta", DENSE_BETA) if opts.beta is None else opts.beta
        self.lr = dfl.get("lr", DENSE_LR) if opts.lr is None else opts.lr
        auto_refine = isinstance(opts.refine, str) and opts.refine == "auto"
        self.refine_schedule = dfl.get("refine", DENSE_REFINE) if auto_refine else opts.refine
        self.can_polish = opts.polish and 2 * K * (d - 1) <= POLISH_MAX_VARS
        # the rounds leave the polish (or the refinement) the last 30 % (15 %) of a budget
        self.smooth_deadline = None if self.deadline is None else \
            self.t_start + (0.7 if self.can_polish else 0.85) * float(self.time_budget)
        self.max_hops = dfl.get("hops", 0) if opts.hops is None else int(opts.hops)
        self.use_hops = self.can_polish and self.max_hops > 0  # then the hops polish, not the rounds
        self.best = None  # (L, W, H)
        self.polish_info: dict | None = None
        self.polished = False  # whether best is the result of a polish
        self.n_rounds = 0

    # -- 1. rounds of batched restarts -----------------------------------------------------------
    def rounds(self) -> None:
        """A quick round first (few restarts, short schedule: a good code fast), then the configured
        round; with a time budget (and no hops) the configured round repeats until the rounds' share
        of the budget is spent."""
        quick = (min(self.restarts, QUICK[0]), min(self.iters, QUICK[1]))
        plan = [quick] if quick != (self.restarts, self.iters) else []
        while True:
            B, T = plan[self.n_rounds] if self.n_rounds < len(plan) else (self.restarts, self.iters)
            self._round(B, T)
            self.n_rounds += 1
            if self._rounds_done(len(plan)):
                break

    def _rounds_done(self, n_planned: int) -> bool:
        if self.smooth_deadline is not None and time.perf_counter() > self.smooth_deadline:
            return True
        if "rounds" in self.dfl and self.n_rounds >= self.dfl["rounds"] and self.restarts == self.dfl["restarts"]:
            return True
        # without a time budget the plan's rounds only; with hops too: the budget goes to the hops,
        # whose polishes need it (at (10, 25) one polish takes ~27 s)
        return (self.smooth_deadline is None or self.use_hops) and self.n_rounds >= n_planned + 1

    def _starts(self, B: int, T: int) -> torch.Tensor:
        """(B, K, d) starting codes of round ``n_rounds``: random, a share improved by a short Tammes
        continuation (``init`` "tammes" or "mixed"), and the given code in restart 0 of round 0."""
        X0 = random_sphere(B, self.K, self.d, self.seed * 100003 + self.n_rounds, self.tdtype, self.dev)
        mode = self.init if isinstance(self.init, str) else "random"
        n_t = {"random": 0, "tammes": B, "mixed": B // 2}[mode]
        if n_t > 0:
            t_it = max(T // 3, 50) if self.opts.tammes_iters is None else int(self.opts.tammes_iters)
            X0[:n_t] = smooth_tammes(X0[:n_t], Schedule(t_it, 5.0, 300.0, 0.05, 1e-3), block=self.block,
                                     deadline=self.smooth_deadline)
        if not isinstance(self.init, str) and self.n_rounds == 0:
            X0[0] = torch.as_tensor(normalize_rows(self.init), dtype=self.tdtype, device=self.dev)
        return X0

    def _record(self, t, W, H, L=None) -> None:
        """Progress callback of the continuation: the best certified min margin of the batch."""
        L = min_margin_batched(W, H, self.block) if L is None else L
        self.hist.add(float(L.max()))

    def _round(self, B: int, T: int) -> None:
        """B restarts of T steps; the best becomes ``best`` when it improves (polished at once unless
        the hops will polish)."""
        X0 = self._starts(B, T)
        sched = Schedule(T, self.beta[0], self.beta[1], self.lr[0], self.lr[1])
        W, H = smooth_softmax(X0, X0.clone(), sched, block=self.block, deadline=self.smooth_deadline,
                              callback=self._record, every=max(T // 30, 1), neighbours=self.nbrs,
                              refresh=self.opts.refresh)
        L = min_margin_batched(W, H, self.block).cpu().numpy()
        b = int(np.argmax(L))
        self.hist.add(float(L[b]))
        if self.best is None or L[b] > self.best[0]:
            self.best = (float(L[b]), normalize_rows(W[b].to(torch.float64).cpu().numpy()),
                         normalize_rows(H[b].to(torch.float64).cpu().numpy()))
            self.polished = False
            if self.can_polish and not self.use_hops:
                self._polish(self.best[1], self.best[2])

    # -- 2. polish and basin hops (small problems) -----------------------------------------------
    def _polish(self, W0: np.ndarray, H0: np.ndarray) -> None:
        """SLP polish of (W0, H0) within the budget; the result becomes ``best`` when it is at least
        as good up to rounding (``TIE``: a polish of a code that is already optimal returns it to the
        last bits, and the polished code carries the KKT certificate); every accepted step goes to
        the history."""
        Wp, Hp, Lp, info = slp_softmax(W0, H0, time_limit=self.polish_limit(), on_accept=self.hist.add)
        if Lp >= self.best[0] - TIE:
            self.best, self.polish_info, self.polished = (Lp, Wp, Hp), info, True
            self.hist.add(Lp)

    def hops(self) -> int:
        """Basin hops (polished problems, ``hops`` > 0), ``max_hops`` or until the budget is spent; if none
        improved on the rounds' (unpolished) best, that is polished.  Small problems have basins the rounds'
        best rarely leaves ((3, 60): 0.1104133 < best-known 0.1105264).  Returns the hops run."""
        if not self.use_hops:
            return 0
        rng = np.random.default_rng(self.seed + 7919)
        n_hops = 0
        while (n_hops < self.max_hops) if self.deadline is None else (time.perf_counter() < self.deadline):
            self._hop(rng)
            n_hops += 1
        if not self.polished:
            self._polish(self.best[1], self.best[2])
        return n_hops

    def _hop(self, rng: np.random.Generator) -> None:
        """``HOP_BATCH`` copies of the best code, each perturbed by hop_scale * sqrt(value) Gaussian
        noise, annealed together on the short sharp ``HOP_SCHEDULE``; the best copy is polished."""
        L0, W0, _ = self.best
        Y = W0[None] + self.opts.hop_scale * math.sqrt(max(L0, 1e-12)) * rng.standard_normal((HOP_BATCH,) + W0.shape)
        Y = torch.as_tensor(Y, dtype=self.tdtype, device=self.dev)
        Y = Y / Y.norm(dim=-1, keepdim=True)
        Wh, Hh = smooth_softmax(Y, Y.clone(), Schedule(*HOP_SCHEDULE), block=self.block, deadline=self.deadline)
        Lh = min_margin_batched(Wh, Hh, self.block)
        b = int(Lh.argmax())
        self.hist.add(float(Lh[b]))
        self._polish(Wh[b].to(torch.float64).cpu().numpy(), Hh[b].to(torch.float64).cpu().numpy())

    # -- 3. refinement (problems too large for the polish) ---------------------------------------
    def refine(self) -> int:
        """Sharp continuation of the best code alone: one pass without a time budget; with one,
        passes from the best code while they improve and time is left.  Returns the passes run."""
        sched = self.refine_schedule
        L, Wb, Hb = self.best
        n_refine = 0
        while not self.can_polish and sched is not None and sched[0] > 0 and \
                (self.deadline is None or time.perf_counter() < self.deadline):
            Wt = torch.as_tensor(Wb, dtype=self.tdtype, device=self.dev)[None]
            Ht = torch.as_tensor(Hb, dtype=self.tdtype, device=self.dev)[None]
            Wr, Hr = smooth_softmax(Wt, Ht, Schedule(int(sched[0]), *map(float, sched[1:])), block=self.block,
                                    deadline=self.deadline, neighbours=self.r_nbrs, refresh=self.opts.refresh,
                                    callback=lambda _t, _W, _H, L: L is not None and self.hist.add(float(L.max())))
            Lr = float(min_margin_batched(Wr, Hr, self.block)[0])
            n_refine += 1
            improved = Lr > L + 1e-7 * max(1.0, abs(L))
            if Lr > L:
                L, Wb, Hb = Lr, normalize_rows(Wr[0].to(torch.float64).cpu().numpy()), \
                    normalize_rows(Hr[0].to(torch.float64).cpu().numpy())
                self.hist.add(L)
            if self.deadline is None or not improved:
                break
        self.best = (L, Wb, Hb)
        return n_refine

    # -- 4. exact evaluation and the result ------------------------------------------------------
    def result(self, n_hops: int, n_refine: int, evaluate_ovr: bool) -> CodeSolution:
        _, Wb, Hb = self.best
        cert: dict = {"polished": False, "refined": n_refine > 0, "hops": n_hops}
        if n_refine:
            cert["refine_passes"] = n_refine
        if self.polish_info is not None:
            info = self.polish_info
            cert.update(polished=True, polish_iterations=info["iterations"], polish_seconds=info["seconds"],
                        polish_stopped=info.get("stopped", "converged"))
            cert.update(kkt_residual_softmax(Wb, Hb, tol=1e-9))
        cert["lower_bound"] = min_margin(Wb, Hb)          # recomputed in float64
        # the exact rho_ovr of the best code, never worse than a given ``init``
        res = exact_ovr(Wb) if evaluate_ovr else None
        if res is not None and not isinstance(self.init, str):
            W0 = normalize_rows(self.init)
            res0 = exact_ovr(W0)
            if res0.value > res.value:
                Wb, Hb, res = W0, W0.copy(), res0
                cert.update(returned_init=True, lower_bound=min_margin(Wb, Hb))
        value = add_ovr_fields(cert, res)
        cert["rattler_tol"] = 1e-6 if cert["polished"] else 1e-3
        rattlers = np.zeros(0, dtype=np.int64)
        if res is not None:
            He = dual_from_ovr(Wb, res)
            Le = -np.inf if He is None else min_margin(Wb, He)
            if Le > cert["lower_bound"]:                  # the dual of the ovr projections proves more
                Hb, cert["lower_bound"], cert["dual_from"] = He, Le, "ovr projections"
            dist = np.asarray(res.dist, dtype=np.float64)
            rattlers = np.nonzero(dist > value + cert["rattler_tol"])[0].astype(np.int64)
            self.hist.add(value)
        o = self.opts
        settings = dict(restarts=self.restarts, iters=self.iters, beta=list(self.beta), lr=list(self.lr),
                        init=self.init if isinstance(self.init, str) else "array", tammes_iters=o.tammes_iters,
                        refine=None if self.refine_schedule is None else list(self.refine_schedule),
                        polish=bool(self.can_polish), polish_time=o.polish_time, rounds=self.n_rounds,
                        time_budget=self.time_budget, neighbours=self.nbrs, refine_neighbours=self.r_nbrs,
                        refresh=o.refresh if self.nbrs else None, hops=self.max_hops if self.can_polish else 0,
                        hop_scale=o.hop_scale, device=str(self.dev), dtype=str(self.tdtype), block=self.block)
        return CodeSolution(W=Wb, problem="softmax", d=self.d, K=self.K, value=float(value),
                            min_angle_deg=min_angle_deg(Wb), ovr=float(value), certificate=cert, rattlers=rattlers,
                            settings=settings, seed=self.seed, seconds=time.perf_counter() - self.t_start, H=Hb,
                            history=self.hist.points)

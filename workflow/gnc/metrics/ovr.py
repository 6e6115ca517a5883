r"""Exact one-vs-rest distances (GNC2) with per-class optimality certificates.

For a classifier ``W`` (K, d) whose rows are the class vectors, let ``ŵ_k = w_k / ||w_k||``. The
one-vs-rest distance of class k is the Euclidean distance from ŵ_k to the convex hull of the other
normalized rows,

    dist_k = min_{λ ∈ Δ}  || ŵ_k − Σ_{j≠k} λ_j ŵ_j ||,       Δ = probability simplex,

and GNC2 = ρ_ovr(Ŵ) = min_k dist_k (docs/methods.md §2.1, §5.2). :func:`ovr_distances` solves the K
quadratic programs *exactly* (to a tolerance on a duality gap that it reports per class).

Algorithm
---------
1. **Candidates** (``_Solve.candidates``). For class k, take the ``m`` rows with the largest cosine
   to ŵ_k (by tiles of the K×K cosine matrix, never stored whole). The projection onto the hull is
   supported on near neighbours, so a small ``m`` usually suffices; step 4 checks it.
2. **Wolfe's minimum-norm-point algorithm, batched** (``_Solve.wolfe``; the lock-step state is a
   ``_Block``). With v_j = ŵ_j − ŵ_k the problem is the minimum-norm point of conv{v_j}. Wolfe (1976)
   keeps a *corral* S (affinely independent points) and weights λ > 0 on S:

   - major step: x = Σ_S λ_j v_j; pick j* = argmin_j <x, v_j>; stop when
     ||x||² − <x, v_j*> ≤ ``tol`` (Wolfe's criterion); else add j* to S;
   - minor step: y = affine minimum-norm point of S, with coefficients α = G'^{-1}1 / 1ᵀG'^{-1}1
     where G' = G_S + c·11ᵀ (G_S the Gram matrix of the corral; c > 0 on the scale of the
     ||v_j||², for conditioning: adding c·11ᵀ does not change the minimizer on {1ᵀα = 1} and makes
     G' non-singular for affinely independent points, so w_k inside the hull — distance 0 — is
     handled). If α > 0 then x = y; otherwise move from λ towards α until a weight hits zero and
     drop that point (repeat).

   Everything runs in λ-space on the candidate Gram matrix G = V Vᵀ (m × m per class, one batched
   matrix product) and all classes of a block advance in lock-step, so each iteration is a handful
   of batched tensor operations (torch: CPU or CUDA). The inverse G'^{-1} is kept up to date by
   O(s²) bordering / Schur-complement updates (s = corral size ≤ d+1), recomputed exactly every
   ``refresh`` iterations; the final weights are re-solved exactly from the vectors. With
   ``pricing = p > 1`` a major step adds up to p violated candidates at once (one block-bordering
   update; optional ones must be clearly affinely independent) — fewer lock-step iterations, same
   optimum, since the stopping rule and the certificate are unchanged.
3. **Certificate** (``_certify``; ``_Solve.settle`` stores the accepted classes). With
   r = ŵ_k − Σ λ_j ŵ_j (so dist_k ≤ ||r||: r is feasible), weak duality gives for the unit vector
   h = r/||r||

       dist_k ≥ min_{j≠k} <ŵ_k − ŵ_j, h>   (the hull lies in that half-space),

   evaluated over **all** j ≠ k (tiled products r·Ŵᵀ) in float64, in vector space (not λ-space).
   ``gap_k = ||r|| − max(0, that bound)`` ≥ 0 is reported; the bound is attained (gap 0) exactly at
   the optimum, i.e. when <ŵ_k − ŵ_j, r> ≥ ||r||² for all j (docs/methods.md §2.3).
   A class is **accepted only if certified**: ``gap_k ≤ gap_tol_k`` (see ``tol`` of
   :func:`ovr_distances`: ≤ 8·tol unless the nearest neighbour is closer than 1e-4), ``λ`` is a point
   of the simplex, every number is finite and ``dist_k ≥ 1 − max_j cos`` (a theorem; a violation
   means a failed solve).
4. **Escalate on failure** (``_Solve.rounds`` runs the rounds and sets up the next one,
   ``_Solve.exact_fallback`` is the last stage, ``_exact_solve`` its per-class solver).
   Classes whose certificate fails are solved again in float64, warm-started from their corral, with
   candidates re-ranked by <ŵ_j, r> (the violated constraints are exactly the j with the largest
   <ŵ_j, r>); from the third round on the number of candidates doubles, up to all K−1. If float64
   Wolfe with all K−1 candidates still fails (a warm start can stall on a corral that is affinely
   dependent in float64), the class is started again cold with exact corral inverses at every step;
   if that fails, the independent exact per-class solver decides: scipy's Lawson–Hanson NNLS on the
   least-distance problem, refined by Wolfe's active-set method in numpy with least-squares affine
   steps (conditioned like the vectors, not like their Gram matrix: it resolves near-duplicate rows).
   A class no stage certifies gets ``dist = gap = NaN``, ``certified = False`` and a warning naming
   it — never an uncertified number.

The reported ``dist`` is ||r|| for a feasible λ (an upper bound that is exact up to ``gap``), so
``dist − gap ≤ true distance ≤ dist`` holds for every returned value.

Cheap bounds (docs/methods.md §2.2): ``lower_k = 1 − max_{j≠k} cos(ŵ_k, ŵ_j) ≤ dist_k ≤
upper_k = min_{j≠k} ||ŵ_k − ŵ_j||``. (If w_k duplicates another row, lower_k = upper_k = 0.)

:func:`ovr_subgradient` is the reference repository's estimator (projected sub-gradient on the dual,
docs/methods.md §9), vectorised, for comparison.

Example::

    >>> import numpy as np
    >>> from gnc.metrics.ovr import ovr_distances
    >>> W = np.array([[1., 0.], [0., 1.], [-1., 0.], [0., -1.]])   # square: 1 - cos(2π/4) = 1
    >>> res = ovr_distances(W)
    >>> round(res.value, 12), float(res.gap.max()) < 1e-12
    (1.0, True)
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import nnls

from ..maths import normalize_rows

__all__ = ["OVRResult", "UncertifiedError", "ovr_distances", "ovr_subgradient"]

_EPS = float(np.finfo(np.float64).eps)

#: cold corrals start from this many nearest candidates (affinely dependent ones skipped, equal
#: weights, a minor step first) instead of the nearest one: fewer lock-step iterations (K = 1000,
#: d = 64: ~15 % less time); same optimum -- Wolfe's minor steps drop the points that do not belong
START_CORRAL = 8

#: floor of Wolfe's tolerance in the float32 first round of ``precision="mixed"`` (that round only
#: identifies the corral; the float64 certificate decides)
TOL32 = 1e-6


def _shift(diag: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-row c in G' = G + c·11ᵀ, on the scale of the squared norms ||v_j||² (conditioning):
    max(min_j ||v_j||², 1e-3·max_j ||v_j||², 1e-30 (float32: 1e-20)) over the ``valid`` candidates."""
    lo = torch.where(valid, diag, math.inf).min(1).values
    hi = torch.where(valid, diag, 0.0).max(1).values
    floor = 1e-30 if lo.dtype == torch.float64 else 1e-20
    return torch.maximum(torch.maximum(lo, 1e-3 * hi), torch.full_like(lo, floor))


# ----------------------------------------------------------------------------------- result type

@dataclass
class OVRResult:
    """Result of :func:`ovr_distances` (all arrays have length K, float64)."""

    dist: np.ndarray  # one-vs-rest distance of each normalized row: ||r|| of a feasible point, exact to gap
    gap: np.ndarray  # certified duality gap, dist − certified lower bound (≥ 0; ~0 at the optimum)
    lower: np.ndarray  # cheap lower bound 1 − max_{j≠k} cos(ŵ_k, ŵ_j), clipped at 0
    upper: np.ndarray  # cheap upper bound min_{j≠k} ||ŵ_k − ŵ_j||
    support: list[np.ndarray] | None = None  # per class, the indices j with λ_j > 0 (sorted), if requested
    weights: list[np.ndarray] | None = None  # per class, the λ_j for support (sum to 1)
    info: dict[str, Any] = field(default_factory=dict)  # timings, device, rounds, counts of each stage
    max_cos: np.ndarray | None = None  # max_{j≠k} cos(ŵ_k, ŵ_j) (min pairwise angle = arccos of its max)
    certified: np.ndarray | None = None  # gap ≤ gap_tol proved; False (dist, gap NaN) if every stage failed
    gap_tol: np.ndarray | None = None  # the tolerance each class was certified to (``tol`` of ovr_distances)

    @property
    def K(self) -> int:
        return int(self.dist.shape[0])

    @property
    def value(self) -> float:
        """ρ_ovr = min_k dist_k (GNC2)."""
        return float(self.dist.min())

    @property
    def mean(self) -> float:
        """Mean one-vs-rest distance over classes."""
        return float(self.dist.mean())

    @property
    def argmin(self) -> int:
        """A class attaining ρ_ovr."""
        return int(self.dist.argmin())

    @property
    def certified_lower(self) -> np.ndarray:
        """Per-class certified lower bound ``dist − gap``."""
        return self.dist - self.gap

    @property
    def value_gap(self) -> float:
        """Certified gap on ρ_ovr: ``min_k dist_k − min_k (dist_k − gap_k)`` (≤ max gap)."""
        return float(self.dist.min() - self.certified_lower.min())

    @property
    def uncertified(self) -> np.ndarray:
        """Classes that could not be certified (their ``dist`` and ``gap`` are NaN); normally empty."""
        return np.flatnonzero(~self.certified)

    def _named(self, classes: np.ndarray) -> str:
        """``class(es) [first 20] (n of K)``, for messages."""
        more = " …" if classes.size > 20 else ""
        return f"class(es) {classes[:20].tolist()}{more} ({classes.size} of {self.K})"

    def require_certified(self, what: str = "W") -> "OVRResult":
        """Return self, or raise :class:`UncertifiedError` naming the classes that are not certified."""
        if self.uncertified.size:
            raise UncertifiedError(f"{what}: one-vs-rest distance of {self._named(self.uncertified)} could "
                                   f"not be certified (gap above the tolerance after every fallback); "
                                   f"refusing to publish them")
        return self


class UncertifiedError(RuntimeError):
    """A one-vs-rest distance could not be certified (see :meth:`OVRResult.require_certified`)."""


# ------------------------------------------------------------------------------------- helpers

def _device(device) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _pad_cols(t: torch.Tensor, width: int, fill) -> torch.Tensor:
    """``t`` (n, s) padded on the right with ``fill`` to (n, width)."""
    return torch.cat([t, t.new_full((t.shape[0], width - t.shape[1]), fill)], 1)


def _topk_rows(Wn: torch.Tensor, rows: torch.Tensor, m: int, tile: int, chunk: int, queries=None):
    """Top-m of <q_i, ŵ_j> over j ≠ rows[i] (q_i = ŵ_rows[i] by default): (values, columns), by chunks
    of rows and tiles of columns (the K×K matrix is never formed)."""
    K = Wn.shape[0]
    vals, idxs = [], []
    for r0 in range(0, rows.numel(), chunk):
        rw = rows[r0:r0 + chunk]
        Q = Wn[rw] if queries is None else queries[r0:r0 + chunk]
        best_v = best_i = None
        for c0 in range(0, K, tile):
            c1 = min(K, c0 + tile)
            S = Q @ Wn[c0:c1].T
            own = (rw >= c0) & (rw < c1)
            if own.any():
                r = own.nonzero().squeeze(1)
                S[r, rw[r] - c0] = -math.inf
            idx = torch.arange(c0, c1, device=Wn.device).expand(S.shape[0], -1)
            if best_v is not None:
                S = torch.cat([best_v, S], 1)
                idx = torch.cat([best_i, idx], 1)
            best_v, sel = torch.topk(S, min(m, S.shape[1]), dim=1)
            best_i = torch.gather(idx, 1, sel)
        vals.append(best_v)
        idxs.append(best_i)
    return torch.cat(vals), torch.cat(idxs)


# ----------------------------------------------------------------------- batched Wolfe (λ-space)

class _Block:
    """Lock-step Wolfe state for a working set of classes (see the module docstring).

    Per working row b: corral slots ``pos[b, :]`` (candidate positions, ``valid`` mask), weights
    ``lam`` (zero on free slots), ``P`` = inverse of G' = G_S + c·11ᵀ on the occupied slots (zero
    rows/columns on free slots), ``u = P·1``, and ``GT[b, t, :] = G[b, pos[b, t], :]`` (the Gram rows
    of the corral, for ``g = Σ_t λ_t GT[t]`` = <x, v_j> over all candidates j).
    All updates act on the whole working set with boolean masks; rows outside a mask are unchanged.
    """

    def __init__(self, G: torch.Tensor, s_limit: int, init=None, pricing: int = 1):
        self.G = G  # (B, m, m) Gram of v_j = ŵ_cand_j − ŵ_k (float64, or float32 for a fast first pass)
        B, m, _ = G.shape
        dev, dt = G.device, G.dtype
        eps = torch.finfo(dt).eps
        self.tiny = torch.finfo(dt).tiny
        self.piv_first = 500 * eps  # pivot thresholds (relative to G'_jj) of the added candidates
        self.piv_extra = max(1e-6, 1e4 * eps)
        self.s_limit = s_limit
        # corral slots start few (grown by half when full): the per-iteration work on P and GT scales
        # with the slots, and most corrals stay far below d + 1 (K = 1000, d = 64: 21 on average)
        s = min(s_limit, 8)
        self.pricing = max(1, min(int(pricing), m))
        self.ids = torch.arange(B, device=dev)
        self.pos = torch.zeros(B, s, dtype=torch.long, device=dev)
        self.valid = torch.zeros(B, s, dtype=torch.bool, device=dev)
        self.lam = torch.zeros(B, s, dtype=dt, device=dev)
        self.P = torch.zeros(B, s, s, dtype=dt, device=dev)
        self.u = torch.zeros(B, s, dtype=dt, device=dev)
        self.GT = torch.zeros(B, s, m, dtype=dt, device=dev)
        self.last = torch.full((B,), -1, dtype=torch.long, device=dev)  # slot added last
        self.n_new = torch.zeros(B, dtype=torch.long, device=dev)  # points added at the last major step
        self.major = torch.ones(B, dtype=torch.bool, device=dev)
        self.done = torch.zeros(B, dtype=torch.bool, device=dev)
        self.status = torch.zeros(B, dtype=torch.int8, device=dev)  # 1 converged, 2 stalled, 3 max_iter
        ar = torch.arange(B, device=dev)
        diag = torch.diagonal(G, dim1=1, dim2=2)
        # cold start at the closest candidate (smallest ||v_j||, i.e. largest cosine)
        j0 = diag.argmin(1)
        self.pos[:, 0] = j0
        self.valid[:, 0] = True
        self.lam[:, 0] = 1.0
        self.c = _shift(diag, torch.ones_like(diag, dtype=torch.bool))  # (B,)
        self.P[:, 0, 0] = 1.0 / (diag[ar, j0] + self.c)
        self.u[:, 0] = self.P[:, 0, 0]
        self.GT[:, 0, :] = G[ar, j0, :]
        if init is not None:  # warm start from a previous corral (rows with an empty one stay cold)
            pos0, valid0, lam0 = init
            warm = valid0.any(1)
            while self.s < pos0.shape[1] and self.grow():
                pass
            wm = warm.unsqueeze(1)
            self.pos = torch.where(wm, _pad_cols(pos0, self.s, 0), self.pos)
            self.valid = torch.where(wm, _pad_cols(valid0, self.s, False), self.valid)
            lam0 = lam0 * valid0
            lam0 = lam0 / lam0.sum(1, keepdim=True).clamp_min(self.tiny)
            self.lam = torch.where(wm, _pad_cols(lam0, self.s, 0.0), self.lam)
            GT = torch.gather(G, 1, self.pos.unsqueeze(2).expand(-1, -1, m)) * self.valid.unsqueeze(2)
            self.GT = torch.where(wm.unsqueeze(2), GT, self.GT)
            self.refresh(warm.nonzero().squeeze(1))
            self.major &= ~warm  # first a minor step: affine minimizer of the warm corral
        elif m > 1:  # cold start from the START_CORRAL nearest candidates
            t = min(START_CORRAL, m, s_limit)
            J = torch.topk(diag.scatter(1, j0.unsqueeze(1), math.inf), t - 1, dim=1, largest=False).indices
            self.add(torch.ones_like(J, dtype=torch.bool), J, seeding=True)
            self.lam = self.valid.to(dt) / self.valid.sum(1, keepdim=True).to(dt)
            self.major.zero_()
            self.last.fill_(-1)
            self.n_new.zero_()
        self.finished: list[tuple] = []

    @property
    def s(self) -> int:
        return self.pos.shape[1]

    def grow(self) -> bool:
        s_old = self.s
        s_new = min(self.s_limit, s_old + max(8, s_old // 2))
        if s_new <= s_old:
            return False
        self.pos = _pad_cols(self.pos, s_new, 0)
        self.valid = _pad_cols(self.valid, s_new, False)
        self.lam = _pad_cols(self.lam, s_new, 0.0)
        self.u = _pad_cols(self.u, s_new, 0.0)
        self.GT = F.pad(self.GT, (0, 0, 0, s_new - s_old))
        self.P = F.pad(self.P, (0, s_new - s_old, 0, s_new - s_old))
        return True

    def add(self, cand_ok: torch.Tensor, J: torch.Tensor, seeding: bool = False):
        """Add candidates J[b, c] (where ``cand_ok[b, c]``) to the corral of row b, all at once.

        Block bordering: with Bm = G'[S, J], Q = P·Bm and the Schur complement Σ = G'[J, J] − Bmᵀ Q,
        the inverse of the enlarged G' is P + Z Σ⁻¹ Zᵀ with Z = Q − E_T (E_T: unit columns at the
        free slots T that receive J) — one pass over P for any number of added points. Candidates
        (numerically) affinely dependent on the corral and the earlier ones are skipped by a greedy
        pivoted elimination on the small Σ; a row that can add nothing is stopped (stalled), except
        when ``seeding`` (the start corral).
        """
        B, p = J.shape
        need = cand_ok.sum(1)
        free = ~self.valid
        while bool((free.sum(1) < need).any()) and self.grow():
            free = ~self.valid
        nfree = free.sum(1)
        cand_ok = cand_ok & (torch.arange(p, device=J.device).unsqueeze(0) < nfree.unsqueeze(1))
        s_ = self.s
        valid = self.valid
        vf = valid.to(self.P.dtype)
        c = self.c.view(B, 1, 1)
        Bm = (torch.gather(self.GT, 2, J.unsqueeze(1).expand(B, s_, p)) + c) * vf.unsqueeze(2)
        Grows = self.G[torch.arange(B, device=J.device).unsqueeze(1), J]  # G[J, :] (B, p, m)
        Cjj = torch.gather(Grows, 2, J.unsqueeze(1).expand(B, p, p)) + c
        BmT = Bm.transpose(1, 2).contiguous()
        Q = torch.bmm(BmT, self.P).transpose(1, 2)  # P·Bm (P symmetric; this orientation is faster)
        Sig = Cjj - torch.bmm(BmT, Q)
        # greedy pivoted elimination on the p×p Schur complements: keep an independent subset
        cdiag = torch.diagonal(Cjj, dim1=1, dim2=2)
        S = Sig.clone()
        use = torch.zeros_like(cand_ok)
        for c in range(p):
            # the most violated candidate only needs to be independent; the optional extra ones must
            # be clearly independent (a tiny pivot would blow up the inverse)
            piv = S[:, c, c]
            ok_c = cand_ok[:, c] & (piv > (self.piv_first if c == 0 else self.piv_extra) * cdiag[:, c])
            use[:, c] = ok_c
            f = torch.where(ok_c, 1.0 / torch.where(ok_c, piv, torch.ones_like(piv)), torch.zeros_like(piv))
            S = S - (S[:, :, c] * f.unsqueeze(1)).unsqueeze(2) * S[:, c, :].unsqueeze(1)
        uu = use.unsqueeze(2) & use.unsqueeze(1)
        eye = torch.eye(p, dtype=Sig.dtype, device=Sig.device)
        Sinv, info = torch.linalg.inv_ex(torch.where(uu, Sig, eye.expand(B, p, p)))
        # a singular or non-finite Schur complement (rounding beat the pivot test) adds nothing
        use &= ((info == 0) & torch.isfinite(Sinv).flatten(1).all(1)).unsqueeze(1)
        uu = use.unsqueeze(2) & use.unsqueeze(1)
        stalled = cand_ok[:, 0] & ~use.any(1) & (not seeding)
        if stalled.any():
            self._stop(stalled, 2)
        rows = use.any(1)
        if not rows.any():
            return
        Sinv = torch.where(uu, Sinv, torch.zeros_like(Sinv))
        # free slots for the used candidates, in order
        key = (~valid) * torch.arange(s_, 0, -1, device=valid.device)  # free slots, lowest index first
        order = torch.topk(key, min(p, s_), dim=1).indices
        rank = torch.cumsum(use.to(torch.long), 1) - 1
        T = torch.gather(order, 1, rank.clamp_min(0))  # slot of candidate c (where used)
        uf = use.to(Q.dtype)
        Z = Q * uf.unsqueeze(1)
        E = torch.zeros_like(Z)
        E.scatter_(1, T.unsqueeze(1), uf.unsqueeze(1))  # E[b, T[b,c], c] = 1 for used c
        Z = Z - E
        Y = torch.bmm(Z, Sinv)
        self.P.baddbmm_(Y, Z.transpose(1, 2))
        self.u.add_(torch.bmm(Y, Z.sum(1).unsqueeze(2)).squeeze(2))
        r, c = use.nonzero(as_tuple=True)
        tt, jj = T[r, c], J[r, c]
        self.pos[r, tt] = jj
        self.valid[r, tt] = True
        self.lam[r, tt] = 0.0
        self.GT[r, tt, :] = Grows[r, c, :]
        self.n_new = use.sum(1)
        self.last = torch.where(use[:, 0], T[:, 0], torch.full_like(self.last, -1))

    def remove(self, mask: torch.Tensor, i: torch.Tensor):
        """Drop slot i[b] of each masked row b (Schur-complement downdate of G'^{-1})."""
        B = mask.shape[0]
        s_ = self.s
        col = torch.gather(self.P, 2, i.view(B, 1, 1).expand(B, s_, 1)).squeeze(2)
        pii = torch.gather(col, 1, i.unsqueeze(1)).squeeze(1)
        f = torch.where(mask, 1.0 / pii, torch.zeros_like(pii))
        cs = col * f.unsqueeze(1)
        self.P.addcmul_(cs.unsqueeze(2), col.unsqueeze(1), value=-1.0)
        self.u.addcmul_(cs, col.sum(1, keepdim=True), value=-1.0)
        r = mask.nonzero().squeeze(1)
        ii = i[r]
        self.P[r, ii, :] = 0.0
        self.P[r, :, ii] = 0.0
        self.u[r, ii] = 0.0
        self.valid[r, ii] = False
        self.lam[r, ii] = 0.0

    def _stop(self, mask: torch.Tensor, code: int):
        self.done |= mask
        self.status[mask] = code

    def corral_gram(self, rows: torch.Tensor) -> torch.Tensor:
        """Exact G' on the corral slots (identity on free slots)."""
        Gs = torch.gather(self.GT[rows], 2, self.pos[rows].unsqueeze(1).expand(-1, self.s, -1))
        return _shifted(Gs, self.valid[rows], self.c[rows])

    def refresh(self, rows: torch.Tensor):
        """Recompute G'^{-1} (and u = P·1) exactly for ``rows`` (drift control)."""
        if rows.numel() == 0:
            return
        Gs = self.corral_gram(rows)
        Pi, info = torch.linalg.inv_ex(Gs)
        good = (info == 0) & torch.isfinite(Pi).flatten(1).all(1)
        valid = self.valid[rows]
        vv = valid.unsqueeze(2) & valid.unsqueeze(1)
        Pi = torch.where(good.view(-1, 1, 1), torch.where(vv, Pi, torch.zeros_like(Pi)), self.P[rows])
        self.P[rows] = Pi
        self.u[rows] = Pi.sum(2)

    def compact(self):
        """Move finished classes out of the working tensors."""
        keep = ~self.done
        fin = self.done
        if fin.any():
            self.finished.append((self.ids[fin], self.pos[fin], self.valid[fin], self.lam[fin],
                                  self.status[fin]))
        for name in ("ids", "G", "c", "tol", "pos", "valid", "lam", "P", "u", "GT", "last", "n_new", "major",
                     "done", "status"):
            setattr(self, name, getattr(self, name)[keep])

    def run(self, tol: torch.Tensor, max_iter: int, refresh: int) -> int:
        """Iterate until every row stops; ``tol`` (per row) is Wolfe's tolerance on ||x||² − min_j <x, v_j>."""
        self.tol = tol
        it = 0
        n_work = self.ids.shape[0]
        while True:
            n_act = int((~self.done).sum())
            if n_act == 0:
                break
            if n_act < 0.5 * n_work:
                self.compact()
                n_work = self.ids.shape[0]
            if it >= max_iter:
                self._stop(~self.done, 3)
                break
            it += 1
            if refresh and it % refresh == 0:
                self.refresh((~self.done).nonzero().squeeze(1))
            # ---- major steps: x = Σ λ v; j* = argmin_j <x, v_j>; stop (Wolfe's criterion) or add j*
            maj = self.major & ~self.done
            if maj.any():
                lam = self.lam
                g = torch.bmm(lam.unsqueeze(1), self.GT).squeeze(1)  # <x, v_j>, all candidates
                gS = torch.gather(g, 1, self.pos)
                xx = (lam * gS).sum(1)  # ||x||²
                # corral points are never candidates (g = ||x||² there up to rounding)
                g = g.scatter(1, self.pos, torch.where(self.valid, torch.full_like(gS, math.inf), gS))
                # Wolfe's rule adds the most violated candidate; with pricing > 1 up to `pricing`
                # violated candidates are added at once (one pass over P, fewer iterations)
                gmins, jmins = _smallest(g, self.pricing)
                conv = maj & ((xx - gmins[:, 0]) <= self.tol)
                self.major &= ~maj
                if conv.any():
                    self._stop(conv, 1)
                addm = maj & ~conv
                if addm.any():
                    self.add(addm.unsqueeze(1) & ((xx.unsqueeze(1) - gmins) > self.tol.unsqueeze(1)), jmins)
            # ---- minor steps: affine minimizer α = P1/1ᵀP1 of the corral; accept or move towards it
            act = ~self.done
            if not act.any():
                continue
            valid, lam, u = self.valid, self.lam, self.u
            alpha = u / u.sum(1, keepdim=True)
            alpha = torch.where(valid, alpha, torch.zeros_like(alpha))
            ok = ((alpha > 0) | ~valid).all(1)
            acc = act & ok
            rej = act & ~ok
            newlam = torch.where(acc.unsqueeze(1), alpha, lam)
            self.major |= acc
            if rej.any():
                neg = valid & (alpha <= 0)
                theta_i = torch.where(neg, lam / (lam - alpha).clamp_min(self.tiny), torch.full_like(lam, math.inf))
                theta, istar = theta_i.min(1)
                theta = theta.clamp(0.0, 1.0).unsqueeze(1)
                mv = ((1 - theta) * lam + theta * alpha).clamp_min(0.0) * valid
                mv[torch.arange(mv.shape[0], device=mv.device), istar] = 0.0
                newlam = torch.where(rej.unsqueeze(1), mv, newlam)
                # dropping the single (most violated) point just added, with no progress: numerical stall
                stall = rej & (theta.squeeze(1) <= 0) & (istar == self.last) & (self.n_new == 1)
                self.lam = newlam
                if stall.any():
                    self._stop(stall, 2)
                rm = rej & ~stall
                if rm.any():
                    self.remove(rm, istar)
            else:
                self.lam = newlam
        self.compact()
        return it

    def results(self, B: int):
        """Padded (B, s) pos, valid, lam and (B,) status, in block order, occupied slots first."""
        s = max(f[1].shape[1] for f in self.finished)
        dev = self.pos.device
        pos = torch.zeros(B, s, dtype=torch.long, device=dev)
        valid = torch.zeros(B, s, dtype=torch.bool, device=dev)
        lam = torch.zeros(B, s, dtype=self.lam.dtype, device=dev)
        status = torch.zeros(B, dtype=torch.int8, device=dev)
        for ids, p, v, l_, st in self.finished:
            w = p.shape[1]
            pos[ids, :w] = p
            valid[ids, :w] = v
            lam[ids, :w] = l_
            status[ids] = st
        width = max(1, int(valid.sum(1).max()))
        order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices[:, :width]
        return torch.gather(pos, 1, order), torch.gather(valid, 1, order), torch.gather(lam, 1, order), status


def _smallest(g: torch.Tensor, k: int):
    """The k smallest entries per row and their columns, ascending (k small: k passes of min,
    cheaper than topk on CPU for rows of ~100)."""
    v, j = g.min(1, keepdim=True)
    if k == 1:
        return v, j
    g = g.clone()
    vs, js = [v], [j]
    for _ in range(k - 1):
        g.scatter_(1, js[-1], math.inf)
        v, j = g.min(1, keepdim=True)
        vs.append(v)
        js.append(j)
    return torch.cat(vs, 1), torch.cat(js, 1)


def _shifted(Gs: torch.Tensor, valid: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """G' = G_S + c·11ᵀ on the corral slots ``valid`` (c per row), identity on the free slots."""
    vv = valid.unsqueeze(2) & valid.unsqueeze(1)
    Gs = torch.where(vv, Gs + c.view(-1, 1, 1), torch.zeros_like(Gs))
    Gs.diagonal(dim1=1, dim2=2).add_((~valid).to(Gs.dtype))
    return Gs


def _exact_weights(Gs: torch.Tensor, valid, lam):
    """Recompute the affine minimizer on the final corral (Gram ``Gs``) exactly; keep it if feasible."""
    Gp = _shifted(Gs, valid, _shift(torch.diagonal(Gs, dim1=1, dim2=2), valid))
    u, info = torch.linalg.solve_ex(Gp, valid.to(Gs.dtype).unsqueeze(-1))
    u = u.squeeze(-1) * valid
    alpha = u / u.sum(1, keepdim=True)
    feas = (info == 0) & torch.isfinite(alpha).all(1) & ((alpha >= -1e-13) | ~valid).all(1)
    alpha = alpha.clamp_min(0.0)
    alpha = alpha / alpha.sum(1, keepdim=True)
    return torch.where(feas.unsqueeze(1), alpha, lam) * valid


def _merge_corral(cand: torch.Tensor, prev: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates ``cand`` (n, m) of a warm-started round with the points of the failed corral ``prev`` =
    (global indices (n, s0), valid, λ) that they miss appended. Returns (candidates (n, m + extra),
    the column of each valid corral point in them (n, s0), 0 on invalid slots)."""
    gidx, gval, _ = prev
    m = cand.shape[1]
    eq = (gidx.unsqueeze(2) == cand.unsqueeze(1)) & gval.unsqueeze(2)  # (n, s0, m)
    found = eq.any(2)
    missing = gval & ~found
    nmiss = missing.sum(1)
    wmiss = int(nmiss.max())
    slot_of = eq.to(torch.int8).argmax(2)  # position in cand of a found corral point
    if wmiss:
        order = torch.sort((~missing).to(torch.int8), dim=1, stable=True).indices[:, :wmiss]
        extra = torch.gather(gidx, 1, order)
        ok = torch.arange(wmiss, device=cand.device).unsqueeze(0) < nmiss.unsqueeze(1)
        cand = torch.cat([cand, torch.where(ok, extra, cand[:, :1])], 1)
        rank_missing = torch.cumsum(missing.to(torch.long), 1) - 1
        slot_of = torch.where(missing, m + rank_missing, slot_of)
    return cand, torch.where(gval, slot_of, torch.zeros_like(slot_of))


def _residuals(Wn: torch.Tensor, rows: torch.Tensor, gpos: torch.Tensor, valid: torch.Tensor, lam: torch.Tensor):
    """Exact weights on the final corrals (global indices ``gpos``) and r = ŵ_k − Σ λ_j ŵ_j, from the
    vectors in float64. Returns (r (n, d), λ (n, s) on the simplex)."""
    Vs = Wn[gpos] - Wn[rows].unsqueeze(1)
    lam = _exact_weights(torch.bmm(Vs, Vs.transpose(1, 2)), valid, lam.to(torch.float64))
    lam = lam / lam.sum(1, keepdim=True).clamp_min(1e-300)  # a point of the simplex (float32 weights too)
    return -(lam.unsqueeze(2) * Vs).sum(1), lam


def _certify(Wn: torch.Tensor, rows: torch.Tensor, R: torch.Tensor, sel: torch.Tensor, lam: torch.Tensor,
             tol_row: torch.Tensor, maxcos_row: torch.Tensor, tile: int, chunk: int):
    """Step 3 for the feasible points r = ŵ_k − Σ λ_j ŵ_j, the rows of ``R`` (λ on the support ``sel``;
    ``tol_row`` = tol·s_k). Returns (accepted mask, dist = ||r||, gap, gap tolerance, ||r||²)."""
    rr = (R * R).sum(1)
    # min_{j≠k} <ŵ_k − ŵ_j, r> = <ŵ_k, r> − max_{j≠k} <r, ŵ_j>
    mins = (Wn[rows] * R).sum(1) - _topk_rows(Wn, rows, 1, tile, chunk, queries=R)[0][:, 0]
    nr = rr.sqrt()
    low = torch.where(nr > 0, mins / nr.clamp_min(1e-300), torch.zeros_like(nr)).clamp_min(0.0)
    g = (nr - low).clamp_min(0.0)
    eps_k = torch.minimum(4.0 * tol_row / nr.clamp_min(1e-300), 2.0 * tol_row.sqrt()).clamp_min(64 * _EPS)
    # λ must be a point of the simplex (then ||r|| ≥ true distance ≥ 1 − max cos)
    lam_ok = ((lam >= 0) | ~sel).all(1) & ((torch.where(sel, lam, torch.zeros_like(lam)).sum(1) - 1).abs() <= 1e-12)
    ok = (torch.isfinite(nr) & torch.isfinite(g) & lam_ok & (g <= eps_k)
          & (nr >= (1.0 - maxcos_row).clamp_min(0.0) - 1e-12))
    return ok, nr, g, eps_k, rr


# ---------------------------------------------------------- exact per-class solver (last fallback)

def _nnls_min_norm(Wn: np.ndarray, k: int, cols: np.ndarray | None = None):
    """Independent exact solver for one class: the least-distance problem through one NNLS.

    With v_j = ŵ_j − ŵ_k (j ≠ k) scaled by σ = max_j ||v_j||, scipy's Lawson–Hanson active-set
    NNLS solves min_{u ≥ 0} ||Σ_j u_j v_j/σ||² + (Σ_j u_j − 1)²; its solution is u = λ*/(1 + D²)
    with λ* the optimal simplex weights and D the distance (write u = tλ, λ ∈ Δ: the objective is
    t²·||Σλ_j v_j||²/σ² + (t − 1)²), so λ* = u / Σu. Over the rows ``cols`` (default: all j ≠ k).
    Returns (indices j, weights λ_j > 0)."""
    K = Wn.shape[0]
    idx = np.delete(np.arange(K), k) if cols is None else np.asarray(cols)
    V = Wn[idx] - Wn[k]
    sigma = math.sqrt(float((V * V).sum(1).max()))
    if sigma == 0.0:  # every other row duplicates ŵ_k
        return idx[:1], np.ones(1)
    E = np.vstack([V.T / sigma, np.ones(len(idx))])
    f = np.zeros(E.shape[0])
    f[-1] = 1.0
    u, _ = nnls(E, f, maxiter=max(1000, 50 * len(idx)))
    total = float(u.sum())
    if not (math.isfinite(total) and total > 0.0):
        raise FloatingPointError(f"NNLS returned no feasible weights for class {k}")
    keep = u > 0
    return idx[keep], u[keep] / total


def _polish_active_set(Wn: np.ndarray, k: int, idx: np.ndarray, lam: np.ndarray, max_steps: int = 200):
    """Wolfe's method for one class in numpy, started from the corral ``idx`` with weights ``lam``,
    with the affine minimizers solved by least squares on the differences ŵ_i − ŵ_base (QR: the
    conditioning of the vectors, not of their Gram matrix — this resolves tiny distances, e.g.
    near-duplicate rows, that a Gram-based solve loses). Returns (indices, weights) on the simplex."""
    wk = Wn[k]
    S, lam = list(map(int, idx)), [float(x) for x in lam]
    added = None
    for _ in range(max_steps):
        for _minor in range(len(S) + 1):  # minor cycle: affine minimizer, or move towards it and drop a point
            b = int(np.argmax(lam))
            rest = [i for t, i in enumerate(S) if t != b]
            if rest:
                D = (Wn[rest] - Wn[S[b]]).T
                alpha = np.linalg.lstsq(D, -(Wn[S[b]] - wk), rcond=None)[0]
                a = np.insert(alpha, b, 1.0 - alpha.sum())
            else:
                a = np.ones(1)
            if (a > 0).all():
                lam = list(a)
                break
            la = np.array(lam)
            neg = a <= 0
            theta = float(np.min(la[neg] / np.maximum(la[neg] - a[neg], 1e-300)))
            la = np.maximum((1 - theta) * la + theta * a, 0.0)
            drop = int(np.flatnonzero(neg)[np.argmin(la[neg])])
            la[drop] = 0.0
            keep = la > 0
            S = [i for i, kp in zip(S, keep) if kp]
            lam = list(la[keep] / la[keep].sum())
        if added is not None and added not in S:  # the point just added left at once: no progress
            break
        x = -_residual_from_base(Wn, k, S, lam)
        g = (Wn - wk) @ x
        g[k] = np.inf
        g[S] = np.inf
        j = int(np.argmin(g))
        if not np.isfinite(g[j]) or float(x @ x) - g[j] <= 0.0:
            break
        S.append(j)
        lam.append(0.0)
        added = j
    lam = np.array(lam) / np.sum(lam)
    return np.array(S), lam, _residual_from_base(Wn, k, S, lam)


def _residual_from_base(Wn: np.ndarray, k: int, S, lam) -> np.ndarray:
    """r = ŵ_k − Σ λ_i ŵ_i written as (ŵ_k − ŵ_b) − Σ_{i≠b} λ_i (ŵ_i − ŵ_b) with b the largest weight:
    accurate to rounding relative to ||r|| even when ŵ_b nearly duplicates ŵ_k."""
    S, lam = np.asarray(S), np.asarray(lam, dtype=np.float64)
    b = int(np.argmax(lam))
    rest = np.arange(len(S)) != b
    return (Wn[k] - Wn[S[b]]) - lam[rest] @ (Wn[S[rest]] - Wn[S[b]])



def _exact_solve(Wn: np.ndarray, k: int, n_near: int | None):
    """NNLS for class k over the ``n_near`` rows of largest cosine to ŵ_k (None: all j ≠ k), refined by
    the active-set method over all rows. Returns (indices, weights, r); NaN weights and r if it fails."""
    K, d = Wn.shape
    cols = None
    if n_near is not None:
        c = Wn @ Wn[k]
        c[k] = -math.inf
        cols = np.argpartition(-c, n_near - 1)[:n_near]
    try:
        return _polish_active_set(Wn, k, *_nnls_min_norm(Wn, k, cols))
    except (RuntimeError, FloatingPointError, ValueError, np.linalg.LinAlgError):
        return np.array([(k + 1) % K]), np.array([math.nan]), np.full(d, math.nan)


def _stack_solutions(sols: list[tuple], dev: torch.device):
    """Per-class (indices, weights, residual) → the padded tensors (global indices, λ, valid, R) that the
    certificate takes."""
    width = max(len(j) for j, _, _ in sols)
    gpos = torch.as_tensor(np.stack([np.pad(j, (0, width - len(j))) for j, _, _ in sols]), device=dev)
    lam = torch.as_tensor(np.stack([np.pad(w, (0, width - len(w))) for _, w, _ in sols]), device=dev)
    sizes = torch.tensor([len(j) for j, _, _ in sols], device=dev)
    valid = torch.arange(width, device=dev).unsqueeze(0) < sizes.unsqueeze(1)
    return gpos, lam, valid, torch.as_tensor(np.stack([r for _, _, r in sols]), device=dev)


# ------------------------------------------------------------------------------ one call's solve

@dataclass
class _Round:
    """How a Wolfe round solves its classes; :meth:`_Solve.rounds` sets the next one."""

    m: int  # candidates per class
    dirs: torch.Tensor | None = None  # candidate ranking directions per class (None: ŵ_k)
    prev: tuple | None = None  # (global corral indices, valid, λ) of the failed try: warm start
    careful: bool = False  # float64 cold start: exact corral inverses at every step, single pricing


class _Solve:
    """One call of :func:`ovr_distances`: its resolved options and what is proved so far per class, with
    the counters and timings of ``info``. The methods are the steps of the module docstring."""

    def __init__(self, W, *, candidates, tol, device, block_size, tile, memory_budget, max_iter, refresh,
                 pricing, precision, return_support):
        self.Wn_np = normalize_rows(W)
        K, d = self.K, self.d = self.Wn_np.shape
        if K < 2:
            raise ValueError(f"one-vs-rest distances need at least 2 classes, got K={K}")
        dev = self.dev = _device(device)
        if precision not in ("auto", "float64", "mixed"):
            raise ValueError(f"precision must be 'auto', 'float64' or 'mixed', got {precision!r}")
        m0 = candidates if candidates is not None else max(32, min((3 * (d + 1)) // 2, 160))
        self.m0 = int(max(1, min(K - 1, m0)))
        self.tol, self.block_size, self.refresh, self.pricing = tol, block_size, refresh, pricing
        self.return_support = return_support
        if not memory_budget and dev.type == "cuda":  # 40 % of the free GPU memory, at most 8 GiB
            memory_budget = int(min(8 << 30, torch.cuda.mem_get_info(dev)[0] * 0.4))
        self.budget = memory_budget or 512 << 20
        self.tile = int(max(1, min(tile, K)))  # columns per tiled product
        self.chunk = int(max(1, min(K, (self.budget // 2) // (8 * (self.tile + 2 * self.m0 + d)))))  # rows
        self.max_iter = max_iter or 50 * (d + 1) + 100
        # the first round's Gram matrices and Wolfe iterations in float32
        self.mixed = precision == "mixed" or (precision == "auto" and dev.type == "cpu")
        self.Wn = torch.as_tensor(self.Wn_np, device=dev)
        self.Wn32 = self.Wn.to(torch.float32) if self.mixed else None
        # tolerances per class, relative to the squared nearest-neighbour distance (clipped to [1e-8, 1]):
        # scale-aware for dense codes with tiny distances, = tol for ordinary codes (set in round 1)
        self.tol_scale = torch.ones(K, dtype=torch.float64, device=dev)
        self.dist = torch.full((K,), math.nan, dtype=torch.float64, device=dev)
        self.gap, self.gap_tol, self.maxcos = self.dist.clone(), self.dist.clone(), self.dist.clone()
        self.certified = torch.zeros(K, dtype=torch.bool, device=dev)
        self.support, self.weights = [np.empty(0, dtype=np.int64)] * K, [np.empty(0)] * K
        self.stats = {"rounds": 0, "iterations": 0, "blocks": 0, "retried": 0, "stalled": 0, "max_iter": 0,
                      "cold_restarts": 0, "exact_fallback": 0, "exact_fallback_all_rows": 0, "uncertified": 0,
                      "t_candidates": 0.0, "t_gram": 0.0, "t_solve": 0.0, "t_certificate": 0.0, "t_fallback": 0.0}

    def clock(self, key: str, t0: float) -> float:
        """Add the time since ``t0`` to ``stats[key]``; return the current time."""
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        t1 = time.perf_counter()
        self.stats[key] += t1 - t0
        return t1

    def rounds(self) -> torch.Tensor:
        """Wolfe rounds until every class is certified or the float64 cold start has failed too.
        Returns the classes left for the exact per-class solver."""
        pending = torch.arange(self.K, device=self.dev)
        rnd = _Round(m=self.m0)
        while pending.numel():
            self.stats["rounds"] += 1
            # mixed precision: the first round's Wolfe in float32, then float64 weights + certificate
            low_prec = self.mixed and self.stats["rounds"] == 1
            t0 = time.perf_counter()
            cand, init_pos = self.candidates(pending, rnd)
            t0 = self.clock("t_candidates", t0)
            R, gpos, sel, lam, t0 = self.wolfe(pending, cand, init_pos, rnd, low_prec, t0)
            ok, rr = self.settle(pending, R, gpos, sel, lam)
            self.clock("t_certificate", t0)
            f = ~ok
            if not f.any():
                return pending[:0]
            failed = pending[f]
            self.stats["retried"] += int(failed.numel())
            if rnd.careful:
                return failed
            # step 4: the next round for the failed classes
            if rnd.m >= self.K - 1 and not low_prec:
                # float64 Wolfe with every candidate did not certify (a warm start can stall on a corral
                # that is affinely dependent in float64): start again cold, exact inverses every step
                self.stats["cold_restarts"] += int(failed.numel())
                rnd = _Round(m=rnd.m, careful=True)
            else:  # warm start; candidates ranked by the residual, their number doubled from round 3 on
                m = min(self.K - 1, 2 * rnd.m if self.stats["rounds"] >= 2 else rnd.m)
                dirs = torch.where(rr[f].unsqueeze(1) > 0, R[f], self.Wn[failed])
                rnd = _Round(m=m, dirs=dirs, prev=(gpos[f], sel[f], lam[f]))
            pending = failed
        return pending

    def candidates(self, pending: torch.Tensor, rnd: _Round):
        """Step 1 (round 1 also records the max cosines and tolerance scales). Returns (candidates
        (n, m'), the warm corral's columns in them or None)."""
        cv, cand = _topk_rows(self.Wn, pending, rnd.m, self.tile, self.chunk, queries=rnd.dirs)
        if self.stats["rounds"] == 1:
            self.maxcos[pending] = cv[:, 0]
            self.tol_scale = (2.0 - 2.0 * self.maxcos).clamp(1e-8, 1.0)
        elif rnd.prev is not None:
            return _merge_corral(cand, rnd.prev)
        return cand, None

    def wolfe(self, pending: torch.Tensor, cand: torch.Tensor, init_pos, rnd: _Round, low_prec: bool, t0: float):
        """Step 2: batched Wolfe on blocks of the pending classes, then exact float64 weights on each final
        corral. Returns (residuals R (n, d), global corral indices, support mask, λ — padded to one width,
        the clock)."""
        Wn, n, d, mc = self.Wn, pending.numel(), self.d, cand.shape[1]
        # classes per block: block_size, or what memory_budget holds; on CPU at most 256, which keeps
        # the per-iteration tensors cache-sized
        s_est = min(mc, d + 1, 128) + 1
        per_class = 8 * (mc * d + 2 * mc * mc + 3 * mc * s_est + 3 * s_est * s_est)
        cap = 256 if self.dev.type == "cpu" else n
        B = self.block_size or int(max(1, min(n, self.budget // per_class, cap)))
        Wv = self.Wn32 if low_prec else Wn  # float32 Wolfe only identifies the corral; float64 decides
        R = torch.empty(n, d, dtype=torch.float64, device=self.dev)
        outs = []
        for b0 in range(0, n, B):
            rows = pending[b0:b0 + B]
            nb = rows.numel()
            self.stats["blocks"] += 1
            cb = cand[b0:b0 + B]
            V = Wv[cb] - Wv[rows].unsqueeze(1)  # (nb, mc, d): v_j = ŵ_j − ŵ_k
            G = torch.bmm(V, V.transpose(1, 2))
            del V
            t0 = self.clock("t_gram", t0)
            init = None
            if rnd.prev is not None:
                init = (init_pos[b0:b0 + B], rnd.prev[1][b0:b0 + B], rnd.prev[2][b0:b0 + B].to(G.dtype))
            blk = _Block(G, s_limit=min(mc, d + 1) + 1, init=init, pricing=1 if rnd.careful else self.pricing)
            t_row = self.tol * self.tol_scale[rows]
            if low_prec:
                t_row = (max(self.tol, TOL32) * self.tol_scale[rows]).to(torch.float32)
            self.stats["iterations"] += blk.run(t_row, 2 * self.max_iter if rnd.careful else self.max_iter,
                                                1 if rnd.careful else self.refresh)
            pos, valid, lam, status = blk.results(nb)
            self.stats["stalled"] += int((status == 2).sum())
            self.stats["max_iter"] += int((status == 3).sum())
            del G, blk
            gpos = torch.gather(cb, 1, pos)
            R[b0:b0 + nb], lam = _residuals(Wn, rows, gpos, valid, lam)
            outs.append((gpos, valid & (lam > 0), lam))
            t0 = self.clock("t_solve", t0)
        smax = max(o[0].shape[1] for o in outs)
        gpos = torch.cat([_pad_cols(o[0], smax, 0) for o in outs])
        sel = torch.cat([_pad_cols(o[1], smax, False) for o in outs])
        lam = torch.cat([_pad_cols(o[2], smax, 0.0) for o in outs])
        return R, gpos, sel, lam, t0

    def settle(self, rows: torch.Tensor, R: torch.Tensor, gpos: torch.Tensor, sel: torch.Tensor,
               lam: torch.Tensor):
        """Step 3: certify the feasible points (:func:`_certify`) and store the accepted classes.
        Returns (accepted mask, ||r||²)."""
        ok, nr, g, eps_k, rr = _certify(self.Wn, rows, R, sel, lam, self.tol * self.tol_scale[rows],
                                        self.maxcos[rows], self.tile, self.chunk)
        acc = rows[ok]
        self.dist[acc] = nr[ok]
        self.gap[acc] = g[ok]
        self.gap_tol[acc] = eps_k[ok]
        self.certified[acc] = True
        if self.return_support:  # per class: the support sorted, and its weights
            j_ok, s_ok, w_ok = gpos[ok].cpu().numpy(), sel[ok].cpu().numpy(), lam[ok].cpu().numpy()
            for k, j, s, w in zip(acc.tolist(), j_ok, s_ok, w_ok):
                order = np.argsort(j[s], kind="stable")
                self.support[k], self.weights[k] = j[s][order], w[s][order]
        return ok, rr

    def exact_fallback(self, pending: torch.Tensor) -> None:
        """Step 4, last stage: :func:`_exact_solve` on the nearest rows by cosine, then on all K−1 rows."""
        t0 = time.perf_counter()
        self.stats["exact_fallback"] = int(pending.numel())
        n_near = min(self.K - 1, max(64, 4 * (self.d + 1)))
        for near in ((True, False) if n_near < self.K - 1 else (False,)):
            if not near:
                self.stats["exact_fallback_all_rows"] = int(pending.numel())
            sols = [_exact_solve(self.Wn_np, k, n_near if near else None) for k in pending.cpu().numpy().tolist()]
            gpos, lam, valid, R = _stack_solutions(sols, self.dev)
            ok, _ = self.settle(pending, R, gpos, valid & (lam > 0), lam)
            pending = pending[~ok]
            if not pending.numel():
                break
        self.stats["uncertified"] = int(pending.numel())
        self.clock("t_fallback", t0)

    def result(self, t_start: float) -> OVRResult:
        """The :class:`OVRResult` of what is stored (``t_start``: the start of the call, for ``info``)."""
        mc = self.maxcos.clamp(-1.0, 1.0).cpu().numpy()
        info = dict(self.stats, seconds=time.perf_counter() - t_start, device=str(self.dev), tol=self.tol,
                    initial_candidates=self.m0, method="wolfe-batched")
        return OVRResult(
            dist=self.dist.cpu().numpy(), gap=self.gap.cpu().numpy(),
            lower=np.maximum(0.0, 1.0 - mc), upper=np.sqrt(np.maximum(0.0, 2.0 - 2.0 * mc)),
            support=self.support if self.return_support else None,
            weights=self.weights if self.return_support else None, info=info, max_cos=mc,
            certified=self.certified.cpu().numpy(), gap_tol=self.gap_tol.cpu().numpy())


# --------------------------------------------------------------------------------- main entry

def ovr_distances(W, *, candidates: int | None = None, tol: float = 1e-12, device=None,
                  block_size: int | None = None, tile: int = 8192, memory_budget: int | None = None,
                  max_iter: int | None = None, refresh: int = 32, pricing: int = 3,
                  precision: str = "auto", return_support: bool = True, warn: bool = True) -> OVRResult:
    """Certified distance of each normalized row of ``W`` to the convex hull of the other rows.

    Every class is either **certified** — ``gap_k ≤ gap_tol_k`` (see ``tol``),
    with ``dist_k − gap_k ≤ true distance ≤ dist_k`` — or, if even the exact fallback cannot
    certify it, reported as ``dist_k = gap_k = NaN`` with ``certified[k] = False`` and a
    ``RuntimeWarning`` naming the class. An uncertified number is never returned.

    Parameters
    ----------
    W : (K, d) array-like (numpy or torch, any float dtype, any row norms); rows are the class
        vectors; normalized here (rows scaled by their largest entry first, so finite rows of any
        magnitude normalize without overflow or underflow).
    candidates : initial number m of nearest neighbours (by cosine) per class searched by the QP;
        default ``min(K−1, max(32, min(1.5·(d+1), 160)))``. Classes whose certificate fails are re-solved
        with 2m, 4m, … up to K−1, so this only affects speed, never the result.
    tol : accuracy. Wolfe's stopping rule is ``||x||² − min_j <x, v_j> ≤ tol·s_k`` (a bound on the
        duality gap of the *squared* distance), with the scale s_k = min_j ||ŵ_k − ŵ_j||² clipped to
        [1e-8, 1] (dense codes with tiny distances keep a relative accuracy). A class is certified
        when its distance gap satisfies ``gap_k ≤ gap_tol_k = max(min(4·tol·s_k / dist_k,
        2·sqrt(tol·s_k)), 64·ε)`` (ε = 2.2e-16; the min only matters for dist_k ≤ 2·sqrt(tol·s_k), where
        gap_k ≤ dist_k holds anyway). Since dist_k ≥ 1 − max_j cos = s_k/2, ``gap_tol_k ≤ 8·tol``
        (8e-12 by default) whenever the nearest neighbour is at distance ≥ 1e-4, and
        ``gap_tol_k ≤ 2·sqrt(tol·1e-8)`` (2e-10) otherwise (e.g. duplicated rows, distance 0).
    device : torch device (``"cpu"``, ``"cuda"``, ``None`` → CUDA if available else CPU).
    block_size : classes solved together; default from ``memory_budget``.
    tile : column tile of the K×K cosine / certificate products.
    memory_budget : bytes for one block's work tensors (default 512 MiB on CPU, 40 % of free GPU
        memory, at most 8 GiB, on CUDA).
    max_iter : cap on lock-step iterations per block (default ``50·(d+1) + 100``; twice that in
        the float64 cold-start round).
    refresh : recompute the corral inverses exactly every this many iterations (0: never).
    pricing : number of most-violated candidates added per major step (1 = Wolfe's rule; more
        means fewer lock-step iterations; the result is the same).
    precision : ``"float64"``: every round in float64; ``"mixed"``: the first round's Gram matrices
        and Wolfe iterations in float32 (about twice as fast on CPUs), which only *identify* the
        corral — the weights are then re-solved exactly in float64 from the vectors and the float64
        certificate decides; classes that fail it go to the float64 rounds. ``"auto"`` (default):
        mixed on CPU, float64 on CUDA. The result is certified either way.
    return_support : also return the support (indices with λ > 0) and weights per class.
    warn : warn (naming the classes) when a class cannot be certified.

    Returns
    -------
    :class:`OVRResult` — see its docstring. ``result.value`` is GNC2 = ρ_ovr.

    Memory is O(K·d) for W plus O(block·(m·d + m² + tile)); the K×K matrix is never stored.
    For K = 100,000, d = 512 use a CUDA device (tiles keep it in memory).
    """
    t_start = time.perf_counter()
    solve = _Solve(W, candidates=candidates, tol=tol, device=device, block_size=block_size, tile=tile,
                   memory_budget=memory_budget, max_iter=max_iter, refresh=refresh, pricing=pricing,
                   precision=precision, return_support=return_support)
    pending = solve.rounds()
    if pending.numel():
        solve.exact_fallback(pending)
    res = solve.result(t_start)
    if warn and res.uncertified.size:
        warnings.warn(f"ovr_distances: {res._named(res.uncertified)} could not be certified by any "
                      f"stage (Wolfe, its float64 cold start, the exact NNLS solver); their dist and gap are "
                      f"NaN and OVRResult.certified is False there. Every other class is certified.",
                      RuntimeWarning, stacklevel=2)
    return res


# ------------------------------------------------------------------ reference (repo) estimator

def ovr_subgradient(W, *, steps: int = 10_000, lr: float = 0.01, decay_every: int = 2000,
                    decay: float = 0.1, seed: int = 0, device=None, block: int = 4096) -> np.ndarray:
    """The reference repository's GNC2 estimator (docs/methods.md §9), vectorised over all classes.

    Dual projected sub-gradient: H (K, d) random Gaussian rows, normalized; objective_k =
    max_{j≠k} <ŵ_j − ŵ_k, h_k>; ``steps`` steps of size ``lr`` (×``decay`` every ``decay_every``),
    re-normalizing the rows of H after each step. Returns ``−objective_k`` at the last iterate, per
    class — for any unit h this is a *lower* bound on dist_k (weak duality), so
    ``ovr_subgradient(W).min() ≤ ovr_distances(W).value``. Cost O(steps·K²·d).
    """
    dev = _device(device)
    Wn = torch.as_tensor(normalize_rows(W), device=dev)
    K, d = Wn.shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    H = torch.randn(K, d, generator=gen, dtype=torch.float64).to(dev)
    H = H / H.norm(dim=1, keepdim=True)
    ar = torch.arange(K, device=dev)

    def objective(H):  # (max_{j≠k} <h_k, ŵ_j> − <h_k, ŵ_k>, its argmax j) per class, by blocks of rows
        vs, js = [], []
        for b0 in range(0, K, block):
            S = H[b0:b0 + block] @ Wn.T  # <h_k, ŵ_j>
            rr = ar[b0:b0 + block]
            own = S[rr - b0, rr].clone()
            S[rr - b0, rr] = -math.inf
            v, j = S.max(1)
            vs.append(v - own)
            js.append(j)
        return torch.cat(vs), torch.cat(js)

    step = lr
    for it in range(steps):
        if it and decay_every and it % decay_every == 0:
            step *= decay
        _, j = objective(H)
        H = H - step * (Wn[j] - Wn)
        H = H / H.norm(dim=1, keepdim=True)
    v, _ = objective(H)
    return (-v).cpu().numpy()

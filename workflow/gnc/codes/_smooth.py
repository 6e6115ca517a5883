"""Batched smoothed solvers (torch, CPU or CUDA) with manual gradients and row blocking.

Both problems are max-min problems over products of unit spheres.  The non-smooth minimum is
replaced by a log-sum-exp soft-min with sharpness ``beta`` that grows geometrically during the run
(continuation); many random restarts are optimised together as one (B, K, d) tensor.  Steps are
Adam steps on the tangent (Riemannian) gradient followed by re-normalisation of the rows
(retraction).  Gradients are written out by hand so that large K can be processed in row blocks
without autograd graphs (memory O(block * K) instead of O(K^2)).

* Tammes:  minimise  (1/beta) log sum_{i != j} exp(beta <x_i, x_j>)        (soft max cosine)
* Softmax: maximise -(1/beta) log sum_{k != j} exp(-beta <h_k, w_k - w_j>)  (soft min margin)
  jointly over classifier rows w_k and dual directions h_k (the HardMax problem of docs/methods.md §4;
  for fixed W the optimal unit h_k gives exactly dist_k(W), docs/methods.md §2.3).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import torch


@dataclass
class Schedule:
    iters: int
    beta0: float
    beta1: float
    lr0: float
    lr1: float

    def at(self, t: int) -> tuple[float, float]:
        fr = t / max(self.iters - 1, 1)
        return (self.beta0 * (self.beta1 / self.beta0) ** fr, self.lr0 * (self.lr1 / self.lr0) ** fr)


#: soft-min / soft-max weights are exp(z) with z clamped to [EXP_FLOOR, 60]: below the floor the
#: weight (< 2e-22 of the largest) cannot matter, and exp of arguments that underflow takes a slow
#: path on CPUs (measured 6x slower for float64 arguments below -708, 12x for float32 below -87)
EXP_FLOOR = -50.0


def _weights(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.clamp(z, min=EXP_FLOOR, max=60.0))


def _retract(X: torch.Tensor) -> torch.Tensor:
    return X / X.norm(dim=-1, keepdim=True)


def _tangent(G: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    return G - (G * X).sum(-1, keepdim=True) * X


class _Adam:
    def __init__(self, like: torch.Tensor, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-12):
        self.m = torch.zeros_like(like)
        self.v = torch.zeros_like(like)
        self.b1, self.b2, self.eps, self.t = b1, b2, eps, 0

    def step(self, G: torch.Tensor, lr: float) -> torch.Tensor:
        self.t += 1
        self.m.mul_(self.b1).add_(G, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(G, G, value=1 - self.b2)
        mh = self.m / (1 - self.b1 ** self.t)
        vh = self.v / (1 - self.b2 ** self.t)
        return lr * mh / (vh.sqrt() + self.eps)


def _blocks(K: int, block: int | None):
    step = K if block is None else block
    return [slice(s, min(s + step, K)) for s in range(0, K, step)]


def max_cos_batched(X: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """(B,) largest off-diagonal cosine of each (K, d) member of the batch."""
    B, K, _ = X.shape
    out = torch.full((B,), -4.0, dtype=X.dtype, device=X.device)
    for sl in _blocks(K, block):
        C = X[:, sl] @ X.transpose(1, 2)
        idx = torch.arange(sl.start, sl.stop, device=X.device)
        C[:, idx - sl.start, idx] = -4.0
        out = torch.maximum(out, C.amax(dim=(1, 2)))
    return out


def min_margin_batched(W: torch.Tensor, H: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """(B,) min over k != j of <h_k, w_k - w_j> -- a certified lower bound on rho_ovr(W)."""
    B, K, _ = W.shape
    out = torch.full((B,), 4.0, dtype=W.dtype, device=W.device)
    for sl in _blocks(K, block):
        G = H[:, sl] @ W.transpose(1, 2)                     # (B, kb, K): <h_k, w_j>
        idx = torch.arange(sl.start, sl.stop, device=W.device)
        diag = G[:, idx - sl.start, idx]                       # <h_k, w_k>
        M = diag.unsqueeze(-1) - G
        M[:, idx - sl.start, idx] = 4.0
        out = torch.minimum(out, M.amin(dim=(1, 2)))
    return out


def smooth_tammes(X: torch.Tensor, sched: Schedule, block: int | None = None,
                  deadline: float | None = None) -> torch.Tensor:
    """Continuation on the soft max-cosine; returns the final (B, K, d) unit rows."""
    X = _retract(X)
    B, K, _ = X.shape
    opt = _Adam(X)
    cref = max_cos_batched(X, block)
    for t in range(sched.iters):
        beta, lr = sched.at(t)
        G = torch.empty_like(X)
        cnew = torch.full_like(cref, -4.0)
        for sl in _blocks(K, block):
            C = X[:, sl] @ X.transpose(1, 2)
            idx = torch.arange(sl.start, sl.stop, device=X.device)
            C[:, idx - sl.start, idx] = -4.0
            cnew = torch.maximum(cnew, C.amax(dim=(1, 2)))
            E = _weights(beta * (C - cref.view(B, 1, 1)))
            G[:, sl] = E @ X
        cref = cnew
        # normalise each restart's gradient (the soft-max weights sum to 1 per restart)
        G = G / G.flatten(1).norm(dim=1).clamp_min(1e-300).view(B, 1, 1)
        G = _tangent(G, X)
        X = _retract(X - opt.step(G, lr))
        if deadline is not None and time.perf_counter() > deadline:
            break
    return X


class _Pattern:
    """Sparsity pattern of the near-active margins of one restart: row k holds its m neighbours
    ``nbr[k]``; CSR index arrays for P (K x K) and for its transpose (same values, permuted)."""

    def __init__(self, nbr: torch.Tensor):
        K, m = nbr.shape
        dev = nbr.device
        self.K = K
        self.crow = torch.arange(0, K * m + 1, m, device=dev)
        self.col = nbr.reshape(-1).contiguous()
        self.rows = torch.arange(K, device=dev).repeat_interleave(m)
        self.perm = torch.argsort(self.col, stable=True)
        self.t_crow = torch.zeros(K + 1, dtype=torch.long, device=dev)
        self.t_crow[1:] = torch.cumsum(torch.bincount(self.col, minlength=K), 0)
        self.t_col = self.rows[self.perm].contiguous()

    def csr(self, values: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        crow, col = (self.t_crow, self.t_col) if transpose else (self.crow, self.col)
        with warnings.catch_warnings():  # torch labels CSR support "beta"; what we use is stable
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, col, values[self.perm] if transpose else values, (self.K, self.K),
                                           check_invariants=False)


def nearest_margins(W: torch.Tensor, H: torch.Tensor, m: int, block: int | None = None):
    """For each class k the m classes j with the smallest margins <h_k, w_k - w_j> (the largest
    <h_k, w_j>), as one :class:`_Pattern` per restart, and the exact min margin over all k != j,
    (B,): one blocked pass."""
    B, K, _ = W.shape
    nbr = torch.empty(B, K, m, dtype=torch.long, device=W.device)
    out = torch.full((B,), 4.0, dtype=W.dtype, device=W.device)
    for sl in _blocks(K, block):
        G = H[:, sl] @ W.transpose(1, 2)
        idx = torch.arange(sl.start, sl.stop, device=W.device)
        diag = G[:, idx - sl.start, idx]
        G[:, idx - sl.start, idx] = -torch.inf
        top = torch.topk(G, m, dim=-1)
        nbr[:, sl] = top.indices
        out = torch.minimum(out, (diag - top.values[..., 0]).amin(dim=1))
    return [_Pattern(nbr[b]) for b in range(B)], out


def _softmin_grads(W, H, beta, mref, block, patterns=None):
    """Gradients (gW, gH) of the soft-min of the margins m_kj = <h_k, w_k - w_j> and their min.

    Dense (``patterns`` None): all j != k, blocked dense products, O(K^2 d).  Sparse: only the
    pairs of each restart's :class:`_Pattern` (the near-active margins), with sparse kernels
    (sampled dense-dense product for the margins, CSR products for the gradients), O(K m d).
    """
    B, K, d = W.shape
    if patterns is not None:
        gW = torch.empty_like(W)
        gH = torch.empty_like(H)
        mnew = torch.empty_like(mref)
        for b, pat in enumerate(patterns):
            w, h = W[b], H[b]
            ones = torch.ones(pat.col.numel(), dtype=W.dtype, device=W.device)
            hw = torch.sparse.sampled_addmm(pat.csr(ones), h, w.t(), beta=0.0).values()  # <h_k, w_j>
            M = (h * w).sum(-1)[pat.rows] - hw
            mnew[b] = M.min()
            P = _weights(-beta * (M - mnew[b]))   # all margins at once: scale by the current min, P <= 1
            rs = torch.zeros(K, dtype=W.dtype, device=W.device).index_add_(0, pat.rows, P).unsqueeze(1)
            gH[b] = rs * w - pat.csr(P) @ w
            gW[b] = rs * h - pat.csr(P, transpose=True) @ h
        return gW, gH, mnew
    gW = torch.zeros_like(W)
    gH = torch.empty_like(H)
    mnew = torch.full_like(mref, 4.0)
    for sl in _blocks(K, block):
        G = H[:, sl] @ W.transpose(1, 2)                  # <h_k, w_j>
        idx = torch.arange(sl.start, sl.stop, device=W.device)
        diag = G[:, idx - sl.start, idx]
        M = diag.unsqueeze(-1) - G                        # m_kj
        M[:, idx - sl.start, idx] = 4.0
        mnew = torch.minimum(mnew, M.amin(dim=(1, 2)))
        P = _weights(-beta * (M - mref.view(B, 1, 1)))
        P[:, idx - sl.start, idx] = 0.0
        rs = P.sum(-1)                                    # (B, kb)
        # d(soft-min)/dh_k ~ sum_j P_kj (w_k - w_j); d/dw_k from its own rows: rs_k h_k;
        # d/dw_j from rows k: -P_kj h_k
        gH[:, sl] = rs.unsqueeze(-1) * W[:, sl] - P @ W
        gW[:, sl] += rs.unsqueeze(-1) * H[:, sl]
        gW -= P.transpose(1, 2) @ H[:, sl]
    return gW, gH, mnew


def smooth_softmax(W: torch.Tensor, H: torch.Tensor, sched: Schedule, block: int | None = None,
                   deadline: float | None = None, callback=None, every: int = 50,
                   neighbours: int | None = None, refresh: int = 25):
    """Continuation on the soft-min margin of the joint (W, H) HardMax problem.

    ``neighbours`` = m: between refreshes (every ``refresh`` steps, one full blocked product) each
    class sees only its m currently nearest margins -- O(K m d) per step instead of O(K^2 d), the
    large-K path.  The refresh also yields the exact min margin, passed to ``callback(t, W, H, L)``
    (a certified lower bound on rho_ovr(W)); in the dense path ``callback(t, W, H, None)``.
    """
    W = _retract(W)
    H = _retract(H)
    B, K, _ = W.shape
    sparse = neighbours is not None and neighbours < K - 1
    optW, optH = _Adam(W), _Adam(H)
    nbr = None
    if sparse:
        nbr, mref = nearest_margins(W, H, int(neighbours), block)
    else:
        mref = min_margin_batched(W, H, block)
    for t in range(sched.iters):
        beta, lr = sched.at(t)
        L = None
        if sparse and t > 0 and t % refresh == 0:
            nbr, L = nearest_margins(W, H, int(neighbours), block)
        gW, gH, mnew = _softmin_grads(W, H, beta, mref, block, nbr)
        mref = mnew if L is None else torch.minimum(mnew, L)
        scale = (gW.flatten(1).norm(dim=1) + gH.flatten(1).norm(dim=1)).clamp_min(1e-300).view(B, 1, 1)
        gW = _tangent(gW / scale, W)
        gH = _tangent(gH / scale, H)
        if callback is not None and (L is not None or (not sparse and (t % every == 0))):
            callback(t, W, H, L)
        # ascent on the soft-min
        W = _retract(W + optW.step(gW, lr))
        H = _retract(H + optH.step(gH, lr))
        if deadline is not None and time.perf_counter() > deadline:
            break
    return W, H

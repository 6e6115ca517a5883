"""Shared pieces of :mod:`gnc.codes`: the :class:`CodeSolution` record, geometry helpers and the
common start of the solvers.  A code is a (K, d) float64 array with unit rows ``w_k``."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from ..maths import normalize_rows


@dataclasses.dataclass
class CodeSolution:
    """A spherical code with everything needed to trust and reproduce it.

    ``value`` is the exact objective of ``problem`` (``"tammes"``: the min angle in degrees;
    ``"softmax" | "hardmax" | "ufm"``: rho_ovr, also in ``ovr``, NaN when not evaluated), higher is
    better.  ``certificate``: how far the value can be trusted (e.g. ``kkt_residual`` of the polished
    active set, ``lower_bound`` proved by the dual vectors, the one-vs-rest gaps).  ``rattlers``: rows
    not in contact (Tammes: no pair at the minimum angle; softmax: one-vs-rest distance above rho_ovr).
    ``H``: the maximising unit directions h_k (softmax, hardmax) or the features (ufm).  ``history``:
    the best-so-far curve ``[(seconds, value), ...]``.
    """

    W: np.ndarray
    problem: str
    d: int
    K: int
    value: float
    min_angle_deg: float
    ovr: float
    certificate: dict = dataclasses.field(default_factory=dict)
    rattlers: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    settings: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    seconds: float = 0.0
    H: np.ndarray | None = None
    history: list | None = None

    def __repr__(self) -> str:  # the arrays are large; keep repr short
        return (f"CodeSolution<{self.problem}(d={self.d}, K={self.K}): value={self.value:.10g} "
                f"min_angle={self.min_angle_deg:.8f} deg ovr={self.ovr:.8f} "
                f"rattlers={len(self.rattlers)} {self.seconds:.1f}s>")


def nearest_cosines(W: np.ndarray, block: int = 2048) -> np.ndarray:
    """(K,) cosine of each row of W with its nearest other row, max_{j != k} cos(w_k, w_j) (row blocks)."""
    W = normalize_rows(W)
    K = W.shape[0]
    rowmax = np.empty(K)
    for s in range(0, K, block):
        C = W[s:s + block] @ W.T
        idx = np.arange(s, min(s + block, K))
        C[idx - s, idx] = -np.inf
        rowmax[idx] = C.max(axis=1)
    return rowmax


def max_cosine(W: np.ndarray, block: int = 2048) -> float:
    """Largest off-diagonal cosine of the rows of W."""
    return float(nearest_cosines(W, block).max())


def min_angle_deg(W: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(max_cosine(W), -1.0, 1.0))))


def tammes_rattlers(W: np.ndarray, tol: float, block: int = 2048) -> np.ndarray:
    """Rows with no neighbour at the minimum angle: max_j cos(w_k, w_j) < max cosine - ``tol``."""
    rowmax = nearest_cosines(W, block)
    return np.nonzero(rowmax < rowmax.max() - tol)[0].astype(np.int64)


def tangent_bases(X: np.ndarray) -> np.ndarray:
    """(K, d, d-1) orthonormal bases of the tangent spaces of the unit rows of X.

    Uses the Householder reflection that maps e_1 to -+x, whose last d-1 columns are orthonormal
    and orthogonal to x.
    """
    X = np.asarray(X, dtype=np.float64)
    K, d = X.shape
    s = np.where(X[:, 0] >= 0, 1.0, -1.0)
    v = X.copy()
    v[:, 0] += s
    n2 = np.einsum("kd,kd->k", v, v)
    Hh = np.eye(d)[None] - 2.0 * v[:, :, None] * v[:, None, :] / n2[:, None, None]
    return Hh[:, :, 1:]


def exact_ovr(W: np.ndarray):
    """rho_ovr of a code by :func:`gnc.metrics.ovr.ovr_distances`, the one implementation (certified)."""
    from gnc.metrics.ovr import ovr_distances

    return ovr_distances(np.ascontiguousarray(W, dtype=np.float64))


def add_ovr_fields(cert: dict, res) -> float:
    """Adds the scalar summary of an OVRResult to the certificate ``cert``; returns rho_ovr (NaN and
    nothing added when ``res`` is None: not evaluated)."""
    if res is None:
        return float("nan")
    cert.update(ovr_mean=float(res.mean), ovr_max_gap=float(np.max(res.gap)), ovr_value_gap=float(res.value_gap),
                ovr_max_gap_tol=float(np.max(res.gap_tol)), ovr_uncertified=int(res.uncertified.size))
    return float(res.value)


def resolve_options(cls, options, knobs: dict, where: str):
    """The solver options: ``options`` (an instance of the frozen dataclass ``cls``; None: its
    defaults) with the fields named in ``knobs`` replaced.  An unknown name is refused, naming it."""
    base = cls() if options is None else options
    if not isinstance(base, cls):
        raise TypeError(f"{where}: options must be a {cls.__name__}, got {type(base).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(knobs) - names)
    if unknown:
        raise TypeError(f"{where}() got unknown keyword argument(s) {unknown}; its options are {sorted(names)}")
    return dataclasses.replace(base, **knobs)


class SolverRun:
    """One solve of the Tammes or softmax-code solver: (d, K) checked, the clock started, restarts and
    iterations resolved against the size defaults ``dfl``, the torch device and dtype, the history."""

    def __init__(self, d, K, dfl: dict, *, restarts, seed, device, time_budget, iters, init, opts):
        import torch

        if K < 2 or d < 2:
            raise ValueError("need K >= 2 and d >= 2")
        self.t_start = time.perf_counter()
        self.deadline = None if time_budget is None else self.t_start + float(time_budget)
        self.restarts = dfl["restarts"] if restarts is None else int(restarts)
        self.iters = dfl["iters"] if iters is None else int(iters)
        self.d, self.K, self.seed, self.init, self.opts = d, K, seed, init, opts
        self.time_budget = time_budget
        self.dev = torch_device(device)
        # float64 for problems up to ~2e7 pair-dims, float32 beyond (memory / speed)
        big = K * K * max(d, 8) > 2e8
        self.tdtype = opts.dtype if opts.dtype is not None else (torch.float32 if big else torch.float64)
        self.hist = History(self.t_start)

    def polish_limit(self) -> float | None:
        """Time limit of one polish: at most ``opts.polish_time`` and never more than what is left of
        the budget (at least 1 s, so a polish started at the deadline still returns a valid code)."""
        if self.deadline is None:
            return self.opts.polish_time
        left = max(self.deadline - time.perf_counter(), 1.0)
        return left if self.opts.polish_time is None else min(self.opts.polish_time, left)


def torch_device(device: Any):
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but CUDA is not available")
    return dev


class History:
    """Best-so-far curve ``[(seconds since start, value)]``."""

    def __init__(self, t0: float | None = None):
        self.t0 = time.perf_counter() if t0 is None else t0
        self.points: list[tuple[float, float]] = []
        self.best = -np.inf

    def add(self, value: float) -> None:
        if float(value) > self.best:
            self.best = float(value)
            self.points.append((time.perf_counter() - self.t0, self.best))

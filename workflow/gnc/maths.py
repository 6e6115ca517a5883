"""Small numerical helpers shared across the library (pure functions: no I/O, no provenance)."""

from __future__ import annotations

import numpy as np


def normalize_rows(W, *, what: str = "W") -> np.ndarray:
    """The row-normalized float64 copy of a (K, d) array or tensor, or of a batch (..., K, d).

    Each row is first divided by its largest absolute entry, so that the squares in its norm can
    neither overflow nor underflow, then by its Euclidean norm.  Keep this arithmetic: the
    one-vs-rest certificates of :mod:`gnc.metrics.ovr` are re-checked with it (tests/test_ovr_stress.py),
    and near-duplicate rows make them sensitive to the last bit.

    Raises ValueError for an array with fewer than 2 dimensions or a zero row, FloatingPointError for
    a row with a non-finite value; ``what`` names the array in the message.
    """
    if hasattr(W, "detach"):  # a torch tensor, on any device
        W = W.detach().cpu().numpy()
    W = np.asarray(W, dtype=np.float64)
    if W.ndim < 2:
        raise ValueError(f"{what} must be 2-D (K, d) or a batch (..., K, d), got shape {W.shape}")
    check_finite_rows(W, what)
    top = np.abs(W).max(axis=-1, keepdims=True) if W.shape[-1] else np.zeros(W.shape[:-1] + (1,))
    zero = top[..., 0] == 0
    if zero.any():
        rows = [i[0] if len(i) == 1 else tuple(i) for i in np.argwhere(zero)[:10].tolist()]
        raise ValueError(f"{what}: row(s) {rows} are zero and cannot be normalized")
    W = W / top  # largest entry ±1 first: no overflow or underflow in the norm
    return W / np.linalg.norm(W, axis=-1, keepdims=True)


def check_finite_rows(a: np.ndarray, what: str) -> None:
    """Raise FloatingPointError naming ``what``, how many rows (along the last axis) hold a non-finite
    value, and the first of them."""
    bad = ~np.isfinite(a).all(axis=-1)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise FloatingPointError(f"{what}: {int(bad.sum())} row(s) with non-finite values (first at index "
                                 f"{first[0] if len(first) == 1 else first})")

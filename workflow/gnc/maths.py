"""Small numerical helpers shared across the library (pure functions: no I/O, no provenance)."""

from __future__ import annotations

import numpy as np


def normalize_rows(W, *, what: str = "W") -> np.ndarray:
    """The row-normalized float64 copy of a (K, d) array or tensor, or of a batch (..., K, d).

    Each row is divided by its Euclidean norm with one rounding per entry: bit for bit ``W / |W|``
    wherever that does not overflow or underflow, and also right where it would, because the row
    is first scaled by the power of two nearest its largest entry (exact, and it keeps the squares
    of the norm in range).

    Raises ValueError for an array with fewer than 2 dimensions or a zero row, FloatingPointError for
    a row with a non-finite value; ``what`` names the array in the message.
    """
    if hasattr(W, "detach"):  # a torch tensor, on any device
        W = W.detach().cpu().numpy()
    W = np.asarray(W, dtype=np.float64)
    if W.ndim < 2:
        raise ValueError(f"{what} must be 2-D (K, d) or a batch (..., K, d), got shape {W.shape}")
    bad = ~np.isfinite(W).all(axis=-1)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise FloatingPointError(f"{what}: {int(bad.sum())} row(s) with non-finite values, e.g. row "
                                 f"{first[0] if len(first) == 1 else first}")
    top = np.abs(W).max(axis=-1, keepdims=True) if W.shape[-1] else np.zeros(W.shape[:-1] + (1,))
    zero = top[..., 0] == 0
    if zero.any():
        rows = [i[0] if len(i) == 1 else tuple(i) for i in np.argwhere(zero)[:10].tolist()]
        raise ValueError(f"{what}: row(s) {rows} are zero and cannot be normalized")
    W = np.ldexp(W, -np.frexp(top)[1])  # largest entry in [0.5, 1), exactly
    return W / np.linalg.norm(W, axis=-1, keepdims=True)

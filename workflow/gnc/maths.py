"""Small numerical helpers shared across the library (pure functions: no I/O, no provenance)."""

from __future__ import annotations

import numpy as np


def normalize_rows(W, *, what: str = "W") -> np.ndarray:
    """The row-normalized float64 copy of a (K, d) array or tensor.

    Raises ValueError for an array that is not 2-D or has a zero row, FloatingPointError for a row
    with a non-finite value; ``what`` names the array in the message.
    """
    if hasattr(W, "detach"):  # a torch tensor, on any device
        W = W.detach().cpu().numpy()
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"{what} must be 2-D (K, d), got shape {W.shape}")
    bad = ~np.isfinite(W).all(axis=1)
    if bad.any():
        raise FloatingPointError(f"{what}: {int(bad.sum())} row(s) with non-finite values, e.g. row {int(np.flatnonzero(bad)[0])}")
    top = np.abs(W).max(axis=1) if W.shape[1] else np.zeros(W.shape[0])
    if (top == 0).any():
        raise ValueError(f"{what}: row(s) {np.flatnonzero(top == 0)[:10].tolist()} are zero and cannot be normalized")
    W = W / top[:, None]  # largest entry ±1 first: no overflow or underflow in the norm
    return W / np.linalg.norm(W, axis=1)[:, None]

"""Comparisons between codes: alignment up to symmetry and the distance between codes.

``align_to_code(W_trained, W_code)`` finds the relabelling ``perm`` and the orthogonal matrix ``R``
(rotation or reflection) minimising ``|| W_trained - W_code[perm] @ R ||_F`` (rows normalised):

* given R, the best relabelling is a linear assignment (Hungarian algorithm,
  :func:`scipy.optimize.linear_sum_assignment`) maximising ``sum_k cos(w_trained_k, (W_code R)_perm[k])``;
* given the relabelling, the best R is the orthogonal Procrustes solution ``R = U V^T`` from the
  SVD ``W_code[perm]^T W_trained = U S V^T``;

the two steps alternate until the assignment stops changing (the objective never increases).  The
problem is non-convex, so ``starts`` starts are tried -- the identity, an assignment of sorted
Gram-matrix rows (rotation invariant), then alternately random relabellings and random orthogonal
matrices -- and the best is returned: the optimum for codes close up to symmetry, a good local
optimum (not a certified global one) for unrelated codes.  For K <= ``exhaustive_max_K`` all K!
relabellings are enumerated, each with its exact Procrustes matrix: the global optimum.  With
``signed=False`` each code vector may also be replaced by its negative (assignment on |cos|), the
right notion when only the lines +-w_k matter.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..maths import normalize_rows


def _procrustes(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """argmin_R orthogonal ||A - B R||_F."""
    U, _, Vt = np.linalg.svd(B.T @ A)
    return U @ Vt


def _random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    Q, Rm = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(Rm))


def _gram_start(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Rotation-invariant start: match sorted Gram rows (neighbour-cosine profiles)."""
    GA = np.sort(A @ A.T, axis=1)
    GB = np.sort(B @ B.T, axis=1)
    return linear_sum_assignment(((GA[:, None, :] - GB[None, :, :]) ** 2).sum(-1))[1]


def _align_exhaustive(A: np.ndarray, B: np.ndarray, signed: bool):
    K = A.shape[0]
    best = (np.inf, None, None)
    sign_sets = [np.ones(K)] if signed else [np.array(s, dtype=float)
                                              for s in itertools.product((1.0, -1.0), repeat=K)]
    for perm in itertools.permutations(range(K)):
        Bp0 = B[list(perm)]
        for signs in sign_sets:
            Bp = signs[:, None] * Bp0
            R = _procrustes(A, Bp)
            dist = float(np.linalg.norm(A - Bp @ R))
            if dist < best[0]:
                best = (dist, np.array(perm), R)
    return best


def align_to_code(W_trained: np.ndarray, W_code: np.ndarray, *, starts: int = 32, seed: int = 0,
                  max_iter: int = 100, signed: bool = True,
                  exhaustive_max_K: int = 7) -> tuple[float, np.ndarray, np.ndarray]:
    """``(distance, perm, R)`` with ``distance = ||W_t - S W_c[perm] R||_F`` minimal (module docstring):
    W_t, W_c row-normalised, ``R`` (d, d) orthogonal, ``S`` = identity (``signed=True``) or the
    diagonal of per-row signs (``signed=False``)."""
    A = normalize_rows(W_trained)
    B = normalize_rows(W_code)
    if A.shape != B.shape:
        raise ValueError(f"shapes differ: {A.shape} vs {B.shape}")
    K, d = A.shape
    if K <= exhaustive_max_K and (signed or K <= 5):
        dist, perm, R = _align_exhaustive(A, B, signed)
        return dist, np.asarray(perm, dtype=np.int64), R

    def run(R):
        prev = None
        for _ in range(max_iter):
            S = A @ (B @ R).T                      # S[k, j] = cos(a_k, (b_j R))
            _, perm = linear_sum_assignment(-(S if signed else np.abs(S)))
            signs = np.ones(K) if signed else np.sign(S[np.arange(K), perm] + 1e-300)
            Bp = signs[:, None] * B[perm]
            R = _procrustes(A, Bp)
            key = (tuple(perm), tuple(signs))
            if key == prev:
                break
            prev = key
        return float(np.linalg.norm(A - Bp @ R)), perm, R

    rng = np.random.default_rng(seed)
    starts_R = [np.eye(d), _procrustes(A, B[_gram_start(A, B)])]
    for i in range(max(starts - 2, 0)):
        starts_R.append(_random_orthogonal(d, rng) if i % 2 else _procrustes(A, B[rng.permutation(K)]))
    dist, perm, R = min((run(R0) for R0 in starts_R), key=lambda out: out[0])
    return dist, np.asarray(perm, dtype=np.int64), R


def code_distance(W: np.ndarray, code: np.ndarray, **kwargs) -> float:
    """The study's one distance between two codes: RMS distance per vector after the best
    rotation/reflection and relabelling, ``align_to_code(W, code)[0] / sqrt(K)`` (0 = the same code;
    2 = antipodal).  ``kwargs`` go to :func:`align_to_code`."""
    return float(align_to_code(W, code, **kwargs)[0] / np.sqrt(np.shape(W)[0]))


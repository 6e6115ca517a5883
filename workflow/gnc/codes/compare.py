"""Comparisons between codes: alignment up to symmetry, neighbour structure, the codes dataset.

``align_to_code(W_trained, W_code)`` finds the relabelling ``perm`` and the orthogonal matrix ``R``
(rotation or reflection) minimising ``|| W_trained - W_code[perm] @ R ||_F`` (rows normalised):

* given R, the best relabelling is a linear assignment (Hungarian algorithm,
  :func:`scipy.optimize.linear_sum_assignment`) maximising ``sum_k cos(w_trained_k, (W_code R)_perm[k])``;
* given the relabelling, the best R is the orthogonal Procrustes solution ``R = U V^T`` from the
  SVD ``W_code[perm]^T W_trained = U S V^T``;

the two steps alternate until the assignment stops changing (the objective never increases).  The
problem is non-convex, so ``starts`` starts are tried -- the identity, an assignment of sorted
Gram-matrix rows (rotation invariant), then alternately random orthogonal matrices and random
relabellings -- and the best is returned.  For K <= ``exhaustive_max_K`` (default 7; e.g. the
4-class assignment experiment) all K! relabellings are enumerated, each with its exact Procrustes
matrix, so the result is the global optimum.  For codes that are close up to symmetry (a trained
classifier near a softmax code) the first starts already find the optimum; for unrelated codes the
result is a good local optimum, not a certified global one.  With ``signed=False`` each code vector may also be replaced by its negative
(assignment on |cos|), which is the right notion when only the lines +-w_k matter.
"""

from __future__ import annotations

import itertools
import json
from typing import Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._common import CodeSolution, normalize_rows


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
    cost = ((GA[:, None, :] - GB[None, :, :]) ** 2).sum(-1)
    _, perm = linear_sum_assignment(cost)
    return perm


def _align_exhaustive(A: np.ndarray, B: np.ndarray, signed: bool):
    K = A.shape[0]
    best = (np.inf, None, None, None)
    sign_sets = [np.ones(K)] if signed else [np.array(s, dtype=float)
                                              for s in itertools.product((1.0, -1.0), repeat=K)]
    for perm in itertools.permutations(range(K)):
        Bp0 = B[list(perm)]
        for signs in sign_sets:
            Bp = signs[:, None] * Bp0
            R = _procrustes(A, Bp)
            dist = float(np.linalg.norm(A - Bp @ R))
            if dist < best[0]:
                best = (dist, np.array(perm), R, signs)
    return best


def align_to_code(W_trained: np.ndarray, W_code: np.ndarray, *, starts: int = 32, seed: int = 0,
                  max_iter: int = 100, signed: bool = True,
                  exhaustive_max_K: int = 7) -> tuple[float, np.ndarray, np.ndarray]:
    """Distance between two codes up to rotation/reflection and relabelling.

    Returns ``(distance, perm, R)`` with ``distance = ||W_t - S W_c[perm] R||_F`` where W_t, W_c are
    row-normalised, ``R`` is (d, d) orthogonal and ``S`` = identity (``signed=True``) or the
    diagonal of per-row signs (``signed=False``, also returned folded into ``perm`` as
    ``perm_signs`` in ``align_to_code.last_signs``).  ``distance / sqrt(K)`` is the RMS
    per-vector distance.
    """
    A = normalize_rows(W_trained)
    B = normalize_rows(W_code)
    if A.shape != B.shape:
        raise ValueError(f"shapes differ: {A.shape} vs {B.shape}")
    K, d = A.shape
    if K <= exhaustive_max_K and (signed or K <= 5):
        best = _align_exhaustive(A, B, signed)
        align_to_code.last_signs = best[3]
        return best[0], np.asarray(best[1], dtype=np.int64), best[2]
    rng = np.random.default_rng(seed)
    best = (np.inf, None, None, None)

    def run(R0=None, perm0=None):
        R = R0
        perm = perm0
        if perm is not None:
            R = _procrustes(A, B[perm])
        signs = np.ones(K)
        prev = None
        for _ in range(max_iter):
            S = A @ (B @ R).T                      # S[k, j] = cos(a_k, (b_j R))
            score = S if signed else np.abs(S)
            _, perm = linear_sum_assignment(-score)
            signs = np.ones(K) if signed else np.sign(S[np.arange(K), perm] + 1e-300)
            Bp = signs[:, None] * B[perm]
            R = _procrustes(A, Bp)
            key = (tuple(perm), tuple(signs))
            if key == prev:
                break
            prev = key
        Bp = signs[:, None] * B[perm]
        return float(np.linalg.norm(A - Bp @ R)), perm, R, signs

    candidates = [dict(R0=np.eye(d)), dict(perm0=_gram_start(A, B))]
    for i in range(max(starts - 2, 0)):
        candidates.append(dict(R0=_random_orthogonal(d, rng)) if i % 2 else dict(perm0=rng.permutation(K)))
    for c in candidates:
        out = run(**c)
        if out[0] < best[0]:
            best = out
    align_to_code.last_signs = best[3]
    return best[0], np.asarray(best[1], dtype=np.int64), best[2]


def gram_neighbours(W: np.ndarray, names: Sequence[str] | None = None, k: int | None = None):
    """Neighbour table of a classifier / code (the assignment question, docs/methods.md §8.2).

    Returns a tidy ``pandas.DataFrame`` with one row per (class, neighbour) for the ``k`` nearest
    neighbours of every class by cosine (all K-1 when ``k`` is None): columns ``class``,
    ``neighbour``, ``rank`` (1 = nearest), ``cos``, ``angle_deg``, ``mutual`` (the class is also
    among the neighbour's k nearest), ``farthest`` (the neighbour is the class's most distant one,
    i.e. the closest to antipodal).
    """
    import pandas as pd

    Wn = normalize_rows(W)
    K = Wn.shape[0]
    names = [str(i) for i in range(K)] if names is None else [str(n) for n in names]
    if len(names) != K:
        raise ValueError("names must have one entry per row of W")
    C = Wn @ Wn.T
    np.fill_diagonal(C, -np.inf)
    kk = K - 1 if k is None else min(int(k), K - 1)
    order = np.argsort(-C, axis=1, kind="stable")[:, :kk]
    nearest = [set(order[i].tolist()) for i in range(K)]
    farthest = np.argmin(np.where(np.isinf(C), np.inf, C), axis=1)
    rows = []
    for i in range(K):
        for r, j in enumerate(order[i]):
            c = float(C[i, j])
            rows.append({"class": names[i], "neighbour": names[j], "rank": r + 1, "cos": c,
                         "angle_deg": float(np.degrees(np.arccos(np.clip(c, -1, 1)))),
                         "mutual": i in nearest[j], "farthest": bool(j == farthest[i])})
    return pd.DataFrame(rows)


def _best_by_key(solutions: Iterable[CodeSolution]) -> dict:
    best: dict = {}
    for s in solutions:
        key = (s.problem, int(s.d), int(s.K))
        if key not in best or s.value > best[key].value:
            best[key] = s
    return best


def codes_dataset(solutions: Iterable[CodeSolution], *, tol: float = 1e-6, attrs: dict | None = None):
    """Assemble Tammes and softmax codes into one ``xr.Dataset`` (``results/codes.nc``).

    Dims ``d``, ``K`` (all values present), ``k`` (row index, up to max K) and ``component``
    (up to max d); arrays are NaN-padded where a (d, K) pair is absent or smaller.

    Variables: ``tammes_code``, ``softmax_code`` (d, K, k, component); per (d, K):
    ``tammes_angle`` (deg), ``tammes_ovr``, ``tammes_rattlers``, ``softmax_value`` (exact rho_ovr),
    ``softmax_min_angle`` (deg), ``softmax_lower_bound``, ``softmax_rattlers``,
    ``ovr_difference = softmax_value - tammes_ovr``, ``angle_difference = tammes_angle -
    softmax_min_angle`` and ``conjecture_holds`` (1 where |ovr_difference| <= tol, 0 where not,
    NaN where either code is missing).  Attribute ``conjecture_differs`` lists every "(d,K)" where
    the Tammes code's one-vs-rest distance differs from the softmax value by more than ``tol``.
    When several solutions share a key the best value is kept.  Other problems (hardmax, ufm)
    are stored as ``<problem>_value`` (d, K).
    """
    import xarray as xr

    best = _best_by_key(solutions)
    if not best:
        raise ValueError("no solutions")
    ds_ = sorted({k[1] for k in best})
    Ks = sorted({k[2] for k in best})
    nk, nc = max(Ks), max(ds_)
    di = {d: i for i, d in enumerate(ds_)}
    ki = {K: i for i, K in enumerate(Ks)}
    shape2 = (len(ds_), len(Ks))
    nan2 = lambda: np.full(shape2, np.nan)  # noqa: E731
    codes = {p: np.full(shape2 + (nk, nc), np.nan) for p in ("tammes", "softmax")}
    v = {name: nan2() for name in ("tammes_angle", "tammes_ovr", "tammes_rattlers", "tammes_seconds",
                                    "softmax_value", "softmax_min_angle", "softmax_lower_bound",
                                    "softmax_rattlers", "softmax_seconds")}
    others: dict[str, np.ndarray] = {}
    meta: dict[str, dict] = {}
    for (p, d, K), s in best.items():
        i, j = di[d], ki[K]
        meta[f"{p}:d{d}:K{K}"] = {"seed": s.seed, "settings": s.settings, "certificate": s.certificate}
        if p in codes:
            codes[p][i, j, :K, :d] = s.W
        if p == "tammes":
            v["tammes_angle"][i, j] = s.min_angle_deg
            v["tammes_ovr"][i, j] = s.ovr
            v["tammes_rattlers"][i, j] = len(s.rattlers)
            v["tammes_seconds"][i, j] = s.seconds
        elif p == "softmax":
            v["softmax_value"][i, j] = s.value
            v["softmax_min_angle"][i, j] = s.min_angle_deg
            v["softmax_lower_bound"][i, j] = s.certificate.get("lower_bound", np.nan)
            v["softmax_rattlers"][i, j] = len(s.rattlers)
            v["softmax_seconds"][i, j] = s.seconds
        else:
            others.setdefault(f"{p}_value", nan2())[i, j] = s.value
    diff = v["softmax_value"] - v["tammes_ovr"]
    holds = np.where(np.isnan(diff), np.nan, (np.abs(diff) <= tol).astype(float))
    differs = [f"({ds_[i]},{Ks[j]})" for i, j in zip(*np.nonzero(holds == 0.0))]
    units = {"tammes_angle": "degree", "softmax_min_angle": "degree", "tammes_seconds": "s", "softmax_seconds": "s"}
    data = {
        "tammes_code": xr.DataArray(codes["tammes"], dims=("d", "K", "k", "component")),
        "softmax_code": xr.DataArray(codes["softmax"], dims=("d", "K", "k", "component")),
    }
    for name, arr in {**v, **others}.items():
        data[name] = xr.DataArray(arr, dims=("d", "K"), attrs={"units": units[name]} if name in units else {})
    data["ovr_difference"] = xr.DataArray(diff, dims=("d", "K"),
                                          attrs={"long_name": "softmax_value - tammes_ovr"})
    data["angle_difference"] = xr.DataArray(v["tammes_angle"] - v["softmax_min_angle"], dims=("d", "K"),
                                            attrs={"units": "degree"})
    data["conjecture_holds"] = xr.DataArray(holds, dims=("d", "K"), attrs={
        "long_name": "Tammes code's min one-vs-rest distance equals the softmax-code value (within tol)",
        "tol": tol})
    out = xr.Dataset(data, coords={"d": ds_, "K": Ks, "k": np.arange(nk), "component": np.arange(nc)})
    out.attrs.update({"conjecture_tol": tol, "conjecture_differs": json.dumps(differs),
                      "solutions": json.dumps(meta, default=_jsonable, sort_keys=True)})
    if attrs:
        out.attrs.update(attrs)
    return out


def _jsonable(o):
    from ..io import _json_default

    try:
        return _json_default(o)
    except TypeError:
        return str(o)

"""Stress test of gnc.metrics.ovr.ovr_distances against an independent exact solver, class by class.

The reference solves each class's least-distance problem with scipy's Lawson–Hanson NNLS (the LDP
reduction: min_{u ≥ 0} ||Σ u_j v_j||² + (Σ u_j − 1)², λ = u / Σu) and certifies its own answer
with a dual bound computed here in numpy (weak duality with h = r/||r|| over all j ≠ k), so every
compared number is bracketed by two certificates computed by different code.

Families: random, trained-like (repulsion steps), nearly degenerate (exact and near duplicates,
antipodal pairs, vectors inside the hull of others before normalization, rattlers in a packed
code, points on a great circle), unnormalised rows (scales from 1e-150 to 1e150), float32 and
float64 inputs, K from 3 to 300, d from 2 to 64, and many codes of the K = 25, d = 10 shape.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from gnc.metrics.ovr import ovr_distances

torch.set_num_threads(1)

#: rounding allowance of two float64 evaluations of unit-vector distances (far below the tolerance)
ROUND = 1e-13


# ------------------------------------------------------------------------ independent reference

def _unit(W):
    W = np.asarray(W, dtype=np.float64)
    W = W / np.abs(W).max(1, keepdims=True)
    return W / np.linalg.norm(W, axis=1, keepdims=True)


def reference(W):
    """Per class: (distance, certified gap) from NNLS on the least-distance problem + a numpy dual bound."""
    Wn = _unit(W)
    K = len(Wn)
    dist, gap = np.empty(K), np.empty(K)
    for k in range(K):
        others = np.delete(Wn, k, 0)
        V = others - Wn[k]
        sigma = np.sqrt((V * V).sum(1).max())
        if sigma == 0:
            dist[k], gap[k] = 0.0, 0.0
            continue
        E = np.vstack([V.T / sigma, np.ones(K - 1)])
        f = np.zeros(E.shape[0])
        f[-1] = 1.0
        u, _ = nnls(E, f, maxiter=100 * K)
        idx = np.delete(np.arange(K), k)[u > 0]
        lam = u[u > 0] / u.sum()
        dist[k], gap[k] = certify(Wn, k, idx, lam)
        if len(idx) > 1:  # KKT on the NNLS support: affine least squares relative to the largest weight
            b = int(np.argmax(lam))
            rest = np.arange(len(idx)) != b
            a = np.linalg.lstsq((Wn[idx[rest]] - Wn[idx[b]]).T, Wn[k] - Wn[idx[b]], rcond=None)[0]
            lam2 = np.insert(a, b, 1.0 - a.sum())
            if (lam2 > 0).all():
                dist2, gap2 = certify(Wn, k, idx, lam2)
                if gap2 < gap[k]:
                    dist[k], gap[k] = dist2, gap2
    return dist, gap


def certify(Wn, k, idx, lam):
    """(||r||, ||r|| − dual bound) for r = ŵ_k − Σ λ_i ŵ_i (numpy; r relative to the largest weight's
    row, so that a near-duplicate of ŵ_k keeps r accurate)."""
    b = int(np.argmax(lam))
    rest = np.arange(len(idx)) != b
    r = (Wn[k] - Wn[idx[b]]) - lam[rest] @ (Wn[idx[rest]] - Wn[idx[b]])
    nr = np.linalg.norm(r)
    others = np.delete(Wn, k, 0)
    low = max(0.0, float(np.min((Wn[k] - others) @ r)) / nr) if nr > 0 else 0.0
    return nr, nr - low


def check(W, label, **kw):
    """Compare ovr_distances(W) with the reference for every class; return the number of mismatches."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an uncertified class would warn: fail instead
        res = ovr_distances(W, **kw)
    ref, ref_gap = reference(np.asarray(W, dtype=np.float64))
    assert res.certified.all(), f"{label}: uncertified classes {res.uncertified}"
    assert np.isfinite(res.dist).all() and np.isfinite(res.gap).all(), label
    # the documented tolerance holds for every class
    assert (res.gap <= res.gap_tol).all() and (res.gap >= 0).all(), label
    assert (res.gap_tol <= 2.1e-10).all(), label
    # our certificate, re-checked in numpy from the returned support and weights
    Wn = _unit(np.asarray(W, dtype=np.float64))
    for k in range(len(Wn)):
        s, w = res.support[k], res.weights[k]
        assert k not in s and (w > 0).all() and abs(w.sum() - 1) < 1e-12, label
        nr, g = certify(Wn, k, s, w)
        assert abs(nr - res.dist[k]) <= ROUND and g <= res.gap_tol[k] + ROUND, f"{label}: class {k}"
    # the reference certified itself, except perhaps next to near-duplicate rows (there the bracket is wider)
    far = res.upper > 1e-4
    assert (ref_gap[far] <= 1e-10).all(), f"{label}: reference gap {ref_gap[far].max():.1e}"
    # two certified intervals [dist − gap, dist] and [ref − ref_gap, ref] both contain the truth
    bad = ((res.dist - res.gap > ref + ROUND) | (ref - ref_gap > res.dist + ROUND)
           | (np.abs(res.dist - ref) > res.gap_tol + ref_gap + ROUND))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        pytest.fail(f"{label}: {int(bad.sum())} class(es) differ, e.g. class {k}: ours {res.dist[k]!r} "
                    f"(gap {res.gap[k]:.1e}) vs reference {ref[k]!r} (gap {ref_gap[k]:.1e})")
    return res


# ------------------------------------------------------------------------------------- families

def random_code(rng, K, d):
    return rng.standard_normal((K, d))


def repel(W, steps, lr=0.05, beta=20.0):
    """Soft-max repulsion from the nearest neighbours (a trained-like, many-contacts code)."""
    W = _unit(W)
    for _ in range(steps):
        C = W @ W.T
        np.fill_diagonal(C, -np.inf)
        E = np.exp(beta * (C - C.max(1, keepdims=True)))
        W = W - lr * (E / E.sum(1, keepdims=True)) @ W
        W /= np.linalg.norm(W, axis=1, keepdims=True)
    return W


def degenerate_code(rng, K, d, kind):
    W = _unit(rng.standard_normal((K, d)))
    if kind == "trained":
        W = repel(W, int(rng.integers(20, 200)))
    elif kind == "duplicates":
        i, j = rng.choice(K, 2, replace=False)
        W[i] = 3.0 * W[j]
    elif kind == "near-duplicates":
        i, j = rng.choice(K, 2, replace=False)
        W[i] = W[j] + 10.0 ** rng.uniform(-9, -5) * rng.standard_normal(d)
    elif kind == "antipodal":
        idx = rng.choice(K, min(K, 2 * max(1, K // 4)), replace=False)
        half = len(idx) // 2
        W[idx[half:2 * half]] = -W[idx[:half]]
    elif kind == "inside":  # before normalization, a row is a convex combination of others
        n_in = max(1, K // 5)
        for i in rng.choice(K, n_in, replace=False):
            src = rng.choice(np.delete(np.arange(K), i), min(K - 1, int(rng.integers(2, d + 2))), replace=False)
            W[i] = rng.dirichlet(np.ones(len(src))) @ W[src]
            if not np.abs(W[i]).max() > 0:
                W[i] = W[src[0]]
    elif kind == "rattler":  # a packed code with a row in a hole, not in contact
        W = repel(W, 150)
        i = int(rng.integers(K))
        nb = np.argsort(-(W @ W[i]))[1:4]
        W[i] = W[nb].mean(0) * 0.9 + 0.1 * W[i]
    elif kind == "great-circle":  # K points of a 2-plane inside d dimensions, plus jitter
        t = np.sort(rng.uniform(0, 2 * np.pi, K))
        Q, _ = np.linalg.qr(rng.standard_normal((d, 2)))
        W = np.stack([np.cos(t), np.sin(t)], 1) @ Q.T + 1e-9 * rng.standard_normal((K, d))
    return W


KINDS = ("random", "trained", "duplicates", "near-duplicates", "antipodal", "inside", "rattler", "great-circle")


def scale_rows(rng, W, how):
    if how == "unit":
        return _unit(W)
    if how == "moderate":
        return W * rng.uniform(0.05, 20.0, (len(W), 1))
    return W * 10.0 ** rng.uniform(-150, 150, (len(W), 1))  # "extreme": any finite magnitude


def make_case(seed, K=None, d=None):
    rng = np.random.default_rng(seed)
    if K is None:
        K = int(np.exp(rng.uniform(np.log(3), np.log(80))))
        d = int(np.clip(np.exp(rng.uniform(np.log(2), np.log(64))), 2, 64))
    kind = KINDS[seed % len(KINDS)]
    W = degenerate_code(rng, K, d, kind)
    how = ("unit", "moderate", "extreme")[(seed // len(KINDS)) % 3]
    if rng.random() < 0.3:  # float32 input (the reference sees the same values), row scales within its range
        W = (_unit(W) * (10.0 ** rng.uniform(-30, 30, (K, 1)) if how == "extreme" else 1.0)).astype(np.float32)
        W = W if how != "moderate" else scale_rows(rng, W, how).astype(np.float32)
    else:
        W = scale_rows(rng, W, how)
    precision = ("auto", "float64", "mixed")[seed % 3]
    return W, f"seed={seed} {kind} K={K} d={d} {W.dtype} precision={precision}", precision


# ---------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("chunk", range(8))
def test_stress_small_and_medium(chunk):
    """320 codes, K from 3 to 80, d from 2 to 64, every family, row scale and input dtype."""
    for seed in range(chunk * 40, chunk * 40 + 40):
        W, label, precision = make_case(seed)
        check(W, label, precision=precision)


def test_stress_k25_d10():
    """120 trained-like and random codes of the trained glyphs classifier's shape (K = 25, d = 10), on which
    a warm-started float64 round can stall."""
    for seed in range(120):
        rng = np.random.default_rng(10_000 + seed)
        W = _unit(rng.standard_normal((25, 10)))
        W = repel(W, int(rng.integers(0, 300)))
        W = W * rng.uniform(0.1, 10.0, (25, 1))
        check(W, f"K=25 d=10 seed={seed}")


@pytest.mark.parametrize("K,d,kind", [(150, 8, "trained"), (300, 3, "random"), (200, 64, "random"),
                                      (300, 16, "antipodal"), (120, 2, "great-circle"), (250, 12, "inside")])
def test_stress_large(K, d, kind):
    rng = np.random.default_rng(K * d)
    W = degenerate_code(rng, K, d, kind)
    check(W * rng.uniform(0.5, 2.0, (K, 1)), f"{kind} K={K} d={d}")


@pytest.mark.parametrize("K,d", [(40, 6), (150, 4)])  # NNLS over all rows / over the nearest 64 first
def test_forced_fallbacks_match_reference(K, d):
    """Wolfe capped at one iteration: the float64 cold start and the exact NNLS solver certify every class."""
    rng = np.random.default_rng(77)
    W = repel(_unit(rng.standard_normal((K, d))), 100)
    res = check(W, f"max_iter=1 K={K} d={d}", max_iter=1)
    assert res.info["exact_fallback"] > 0 and res.info["uncertified"] == 0
    if K > 65:  # the nearest-rows pass (64 rows) certified every class by itself
        assert res.info["exact_fallback_all_rows"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(10))
def test_stress_thousands(chunk):
    """4,000 codes (slow): K up to 300, d up to 64."""
    for seed in range(100_000 + chunk * 400, 100_000 + chunk * 400 + 400):
        rng = np.random.default_rng(seed)
        K = int(np.exp(rng.uniform(np.log(3), np.log(300))))
        d = int(np.clip(np.exp(rng.uniform(np.log(2), np.log(64))), 2, 64))
        W, label, precision = make_case(seed, K, d)
        check(W, label, precision=precision)

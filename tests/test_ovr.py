"""Tests of gnc.metrics.ovr: closed forms of symmetric codes, an independent slow reference, certificates."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, nnls

import gnc.metrics.ovr as ovr_mod
from _polytopes import cell600, cross_polytope, demicube5, e8_roots, icosahedron, polygon, simplex_etf
from gnc.metrics.ovr import _certify, _merge_corral, ovr_distances, ovr_subgradient

torch.set_num_threads(1)


# ------------------------------------------------------------------ constructions from definitions

def _rotate_permute(X, seed):
    """Random orthogonal transform and row permutation (the distances are invariant)."""
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    Q = Q * np.sign(np.diag(R))
    X = X @ Q.T
    scale = rng.uniform(0.5, 3.0, size=(X.shape[0], 1))  # row scales must not matter (normalized inside)
    return (X * scale)[rng.permutation(X.shape[0])]


CASES = [
    ("simplex K=4 d=3", simplex_etf(4, 3), 4 / 3),
    ("simplex K=10 d=9", simplex_etf(10, 9), 10 / 9),
    ("simplex K=6 d=12", simplex_etf(6, 12), 6 / 5),
    ("cross-polytope d=3", cross_polytope(3), 1.0),
    ("cross-polytope d=7", cross_polytope(7), 1.0),
    ("pentagon", polygon(5), 1 - math.cos(2 * math.pi / 5)),
    ("heptagon", polygon(7), 1 - math.cos(2 * math.pi / 7)),
    ("12-gon", polygon(12), 1 - math.cos(2 * math.pi / 12)),
    ("icosahedron", icosahedron(), 1 - 1 / math.sqrt(5)),
    ("600-cell", cell600(), 1 - (1 + math.sqrt(5)) / 4),
    ("5-demicube", demicube5(), 0.8),
    ("E8 roots", e8_roots(), 0.5),
]


@pytest.mark.parametrize("precision", ["mixed", "float64"])
@pytest.mark.parametrize("name,X,rho", CASES, ids=[c[0] for c in CASES])
def test_closed_forms(name, X, rho, precision):
    W = _rotate_permute(X, seed=len(name))
    res = ovr_distances(W, precision=precision)
    # symmetric codes: every class has the same distance
    np.testing.assert_allclose(res.dist, rho, atol=1e-9, rtol=0)
    assert abs(res.value - rho) < 1e-9
    assert res.gap.max() < 1e-9 and (res.gap >= 0).all()
    # cheap bounds bracket the distance; for these codes the lower bound 1 - mu is tight
    assert (res.lower <= res.dist + 1e-12).all() and (res.dist <= res.upper + 1e-12).all()
    np.testing.assert_allclose(res.lower.min(), rho, atol=1e-9)


# --------------------------------------------------------------------- independent slow reference

def reference_dist(W, k):
    """Per-class exact NNLS (independent): the least-distance problem as min_{u ≥ 0} ||Σ u_j v_j||² +
    (Σ u_j − 1)² with v_j = ŵ_j − ŵ_k, whose solution is u = λ*/(1 + dist²) (Lawson–Hanson)."""
    W = np.asarray(W, dtype=np.float64)
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    V = np.delete(Wn, k, 0) - Wn[k]
    sigma = np.sqrt((V * V).sum(1).max())
    E = np.vstack([V.T / sigma, np.ones(len(V))])
    u, _ = nnls(E, np.eye(E.shape[0])[-1], maxiter=50 * E.shape[1])
    return np.linalg.norm(u @ V / u.sum())


@pytest.mark.parametrize("precision", ["mixed", "float64"])
@pytest.mark.parametrize("K,d,seed", [(30, 3, 0), (60, 5, 1), (120, 10, 2), (80, 20, 3), (25, 30, 4)])
def test_random_against_reference(K, d, seed, precision):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((K, d))
    res = ovr_distances(W, precision=precision)
    ref = np.array([reference_dist(W, k) for k in range(K)])
    np.testing.assert_allclose(res.dist, ref, atol=1e-8, rtol=0)
    assert res.gap.max() < 1e-9
    # the support and weights reproduce the distance
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    for k in range(K):
        s, w = res.support[k], res.weights[k]
        assert k not in s and abs(w.sum() - 1) < 1e-12 and (w > 0).all()
        assert abs(np.linalg.norm(Wn[k] - w @ Wn[s]) - res.dist[k]) < 1e-12


def test_slsqp_reference_small():
    """A second, structurally different reference (SLSQP on the simplex) for a few classes."""
    rng = np.random.default_rng(7)
    W = rng.standard_normal((15, 4))
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    res = ovr_distances(W)
    for k in range(4):
        A = np.delete(Wn, k, 0)
        f = lambda lam: float(np.sum((Wn[k] - lam @ A) ** 2))
        g = lambda lam: -2 * A @ (Wn[k] - lam @ A)
        x0 = np.full(len(A), 1 / len(A))
        sol = minimize(f, x0, jac=g, method="SLSQP", bounds=[(0, 1)] * len(A),
                       constraints=[{"type": "eq", "fun": lambda lam: lam.sum() - 1, "jac": lambda lam: np.ones_like(lam)}],
                       options={"ftol": 1e-16, "maxiter": 1000})
        assert abs(math.sqrt(max(sol.fun, 0)) - res.dist[k]) < 1e-7


def test_trained_like_code_tiles_and_candidates():
    """Small candidate sets, blocks and tiles (the large-K / GPU code path) give identical results."""
    rng = np.random.default_rng(3)
    K, d = 150, 6
    W = rng.standard_normal((K, d))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    for _ in range(100):  # repulsion: a more uniform, "trained-like" code
        C = W @ W.T
        np.fill_diagonal(C, -np.inf)
        E = np.exp(20 * (C - C.max(1, keepdims=True)))
        W -= 0.05 * (E / E.sum(1, keepdims=True)) @ W
        W /= np.linalg.norm(W, axis=1, keepdims=True)
    full = ovr_distances(W)
    tiled = ovr_distances(W, candidates=3, block_size=7, tile=16, precision="float64")
    assert tiled.info["retried"] > 0 and tiled.info["blocks"] > 10
    np.testing.assert_allclose(tiled.dist, full.dist, atol=1e-12)
    assert tiled.gap.max() < 1e-9
    # a tiny memory budget: row chunks of the tiled cosine / certificate products, small blocks
    small = ovr_distances(W, memory_budget=50_000, tile=11, pricing=1)
    np.testing.assert_allclose(small.dist, full.dist, atol=1e-12)
    for k in range(0, K, 15):
        np.testing.assert_array_equal(small.support[k], full.support[k])
    ref = np.array([reference_dist(W, k) for k in range(0, K, 10)])
    np.testing.assert_allclose(full.dist[::10], ref, atol=1e-8)


def test_duplicates_and_inside():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((12, 3))
    W[3] = 2.5 * W[7]  # duplicate direction: both are in the hull of the others
    res = ovr_distances(W)
    assert res.dist[3] < 1e-12 and res.dist[7] < 1e-12
    assert res.gap[3] < 1e-12 and res.lower[3] < 1e-12 and res.upper[3] < 1e-7
    others = [k for k in range(12) if k not in (3, 7)]
    ref = np.array([reference_dist(W, k) for k in others])
    np.testing.assert_allclose(res.dist[others], ref, atol=1e-8)
    assert res.value < 1e-12


def test_duplicate_among_others_and_two_classes():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.2]])
    res = ovr_distances(W)
    ref = [reference_dist(W, k) for k in range(4)]
    np.testing.assert_allclose(res.dist, ref, atol=1e-8)
    two = ovr_distances(np.array([[1.0, 0.0], [0.0, 3.0]]))
    np.testing.assert_allclose(two.dist, [math.sqrt(2)] * 2, atol=1e-14)


def test_bounds_and_torch_input():
    rng = np.random.default_rng(11)
    W = rng.standard_normal((40, 5))
    res = ovr_distances(torch.as_tensor(W, dtype=torch.float32))
    res64 = ovr_distances(W.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(res.dist, res64.dist, atol=1e-14)
    Wn = W.astype(np.float32).astype(np.float64)
    Wn /= np.linalg.norm(Wn, axis=1, keepdims=True)
    C = Wn @ Wn.T - 3 * np.eye(len(W))  # the cheap bounds from the max cosine over j ≠ k
    np.testing.assert_allclose(res.lower, np.maximum(0, 1 - C.max(1)), atol=1e-15)
    np.testing.assert_allclose(res.upper, np.sqrt(2 - 2 * C.max(1)), atol=1e-15)
    assert (res.certified_lower <= res.dist).all() and res.value_gap >= 0
    assert res.argmin == int(np.argmin(res.dist)) and abs(res.mean - res.dist.mean()) < 1e-15


def test_errors():
    with pytest.raises(FloatingPointError, match="1 row"):
        ovr_distances(np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="zero"):
        ovr_distances(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="at least 2"):
        ovr_distances(np.ones((1, 3)))


def test_subgradient_reference_is_lower_bound():
    W = _rotate_permute(icosahedron(), 0)
    est = ovr_subgradient(W, steps=400, lr=0.05, decay_every=100)
    exact = ovr_distances(W)
    assert (est <= exact.dist + 1e-12).all()
    assert abs(est.min() - exact.value) < 5e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(12)
    W = rng.standard_normal((500, 16))
    cpu = ovr_distances(W, device="cpu")
    gpu = ovr_distances(W, device="cuda", tile=64, block_size=100)
    np.testing.assert_allclose(gpu.dist, cpu.dist, atol=1e-12)
    assert gpu.gap.max() < 1e-9


# ------------------------------------------------------------------------------ a trained classifier

GLYPHS_K25 = pathlib.Path(__file__).parent / "data" / "ovr_glyphs_K25_d10_epoch30_W.npy"


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("kw", [{}, {"precision": "float64"}, {"precision": "mixed"}, {"pricing": 1},
                                {"candidates": 16}])
def test_trained_classifier_k25_d10(kw, normalized):
    """The classifier W (float32, rows not normalized) of glyphs / normalized-ce / smallcnn /
    tau0.1-d10-K25-s0 at epoch 30 of the default study. On its class 9 the float64 round warm-started
    by the mixed-precision first round stalls away from the optimum (the float64 cold start certifies
    it): the value must be the exact 0.4507760466, found independently by NNLS and SLSQP (support
    {2,4,7,13,16,17})."""
    W = np.load(GLYPHS_K25)
    assert W.shape == (25, 10)
    Wn = W.astype(np.float64) / np.linalg.norm(W.astype(np.float64), axis=1, keepdims=True)
    res = ovr_distances(Wn if normalized else W, **kw)
    assert res.certified.all() and np.isfinite(res.dist).all()
    assert (res.gap <= res.gap_tol).all() and res.gap_tol.max() <= 8e-12
    ref = np.array([reference_dist(W, k) for k in range(25)])
    np.testing.assert_allclose(res.dist, ref, atol=1e-8, rtol=0)
    # class 9 by SLSQP on the simplex (a structurally different solver)
    A = np.delete(Wn, 9, 0)
    sol = minimize(lambda lam: float(np.sum((Wn[9] - lam @ A) ** 2)), np.full(24, 1 / 24),
                   jac=lambda lam: -2 * A @ (Wn[9] - lam @ A), method="SLSQP", bounds=[(0, 1)] * 24,
                   constraints=[{"type": "eq", "fun": lambda lam: lam.sum() - 1, "jac": lambda lam: np.ones(24)}],
                   options={"ftol": 1e-16, "maxiter": 1000})
    assert abs(math.sqrt(sol.fun) - res.dist[9]) < 1e-7
    assert abs(res.dist[9] - 0.4507760466) < 1e-10 and abs(res.mean - 0.4716450494) < 1e-10
    np.testing.assert_array_equal(res.support[9], [2, 4, 7, 13, 16, 17])


def test_uncertified_is_nan_flagged_and_named(monkeypatch):
    """If every stage fails (simulated: the exact solver raises and Wolfe gets one iteration), the class is
    NaN, flagged and named in the warning; require_certified raises naming it; the others stay certified."""
    def broken(Wn, k, cols=None):
        raise FloatingPointError("simulated failure")

    monkeypatch.setattr(ovr_mod, "_nnls_min_norm", broken)
    W = np.load(GLYPHS_K25)
    with pytest.warns(RuntimeWarning, match=r"could not be certified") as rec:
        res = ovr_distances(W, max_iter=1)
    bad = res.uncertified
    assert bad.size > 0 and np.isnan(res.dist[bad]).all() and np.isnan(res.gap[bad]).all()
    assert str(bad[:20].tolist()) in str(rec[0].message)
    good = res.certified
    ref = np.array([reference_dist(W, k) for k in np.flatnonzero(good)])
    np.testing.assert_allclose(res.dist[good], ref, atol=1e-8)
    assert math.isnan(res.value)  # the minimum over classes is unknown when one class is
    with pytest.raises(ovr_mod.UncertifiedError, match=rf"class\(es\) \[{bad[0]}"):
        res.require_certified("epoch 30")


def test_finite_extreme_rows_never_nan():
    """Finite rows of any magnitude (float64 1e-300 .. 1e300, float32 subnormal .. 1e38) normalize safely."""
    rng = np.random.default_rng(21)
    X = rng.standard_normal((30, 6))
    ref = ovr_distances(X)
    for scale in (1e-300, 1e300):
        res = ovr_distances(X * scale * rng.uniform(0.5, 2, (30, 1)))
        np.testing.assert_allclose(res.dist, ref.dist, atol=1e-12)
    X32 = (X / np.abs(X).max()).astype(np.float32)
    for scale in (np.float32(1e-40), np.float32(1e37)):
        Y = X32 * scale
        res = ovr_distances(Y)
        assert res.certified.all() and np.isfinite(res.dist).all()
        np.testing.assert_allclose(res.dist, [reference_dist(Y.astype(np.float64), k) for k in range(30)], atol=1e-8)


# ------------------------------------------------------------------ the pieces of the solver

def test_certificate_accepts_only_the_optimum_on_the_simplex():
    """The acceptance rule on the square (closed form): class 0 = (1, 0); its optimum is the midpoint of
    (0, 1) and (0, −1), distance 1, gap 0. A feasible point off the optimum (all weight on (0, 1):
    ||r|| = √2, dual bound 0) and weights off the simplex (0.6 + 0.6) are refused."""
    Wn = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    idx = torch.tensor([[1, 3], [1, 3], [1, 3]])
    lam = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.6, 0.6]], dtype=torch.float64)
    sel = lam > 0
    R = Wn[0] - (lam.unsqueeze(2) * Wn[idx]).sum(1)
    rows = torch.zeros(3, dtype=torch.long)
    tol_row = torch.full((3,), 1e-12, dtype=torch.float64)
    ok, dist, gap, gap_tol, rr = _certify(Wn, rows, R, sel, lam, tol_row, torch.zeros(3, dtype=torch.float64),
                                          tile=2, chunk=1)
    assert ok.tolist() == [True, False, False]
    np.testing.assert_allclose(dist.numpy(), [1.0, math.sqrt(2), 1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(gap.numpy(), [0.0, math.sqrt(2), 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(rr.numpy(), dist.numpy() ** 2, rtol=1e-15)
    assert (gap_tol > 0).all() and (gap_tol <= 8e-12).all()


def test_warm_start_candidates_keep_the_old_corral():
    """A warm round's candidates: the ranked ones unchanged, the corral points they miss appended, and
    init_pos giving each valid corral point's column (0 on free slots)."""
    cand = torch.tensor([[5, 3, 9], [1, 2, 4]])
    gidx = torch.tensor([[3, 7, 0], [4, 1, 8]])
    gval = torch.tensor([[True, True, False], [True, True, False]])
    merged, init_pos = _merge_corral(cand, (gidx, gval, None))
    assert merged.shape == (2, 4) and torch.equal(merged[:, :3], cand)
    assert merged[0, 3] == 7  # the missing corral point of row 0
    assert init_pos.tolist() == [[1, 3, 0], [2, 0, 0]]
    for b in range(2):
        assert torch.equal(merged[b][init_pos[b][gval[b]]], gidx[b][gval[b]])

"""gnc.codes.compare and gnc.codes.store: alignment up to symmetry, solution files."""

import itertools

import numpy as np
import pytest
import torch

from gnc.codes import CodeSolution, align_to_code, code_distance
from gnc.codes.store import load_solution, save_solution
from gnc.maths import normalize_rows

from _polytopes import icosahedron

torch.set_num_threads(1)


def _random_orthogonal(d, rng, reflect=False):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    Q = Q * np.sign(np.diag(R))
    if reflect and np.linalg.det(Q) > 0:
        Q[:, 0] *= -1
    return Q


def _brute_force_distance(A, B):
    """Independent reference: all K! relabellings, each with the exact Procrustes rotation."""
    A = A / np.linalg.norm(A, axis=1, keepdims=True)
    B = B / np.linalg.norm(B, axis=1, keepdims=True)
    best = np.inf
    for perm in itertools.permutations(range(len(A))):
        Bp = B[list(perm)]
        U, _, Vt = np.linalg.svd(Bp.T @ A)
        best = min(best, np.linalg.norm(A - Bp @ U @ Vt))
    return best


@pytest.mark.parametrize("reflect", [False, True])
def test_align_recovers_rotation_reflection_and_relabelling(reflect):
    rng = np.random.default_rng(0)
    code = rng.standard_normal((12, 5))
    code /= np.linalg.norm(code, axis=1, keepdims=True)
    Q = _random_orthogonal(5, rng, reflect)
    perm = rng.permutation(12)
    trained = code[perm] @ Q
    dist, p, R = align_to_code(trained, code, seed=1)
    assert dist < 1e-9
    np.testing.assert_array_equal(p, perm)
    np.testing.assert_allclose(R, Q, atol=1e-9)
    assert abs(abs(np.linalg.det(R)) - 1) < 1e-12


@pytest.mark.parametrize("K,noise,exhaustive", [(5, None, 7), (7, 0.15, 0)])
def test_align_is_optimal_against_brute_force(K, noise, exhaustive):
    """Exhaustive path on unrelated random codes; the alternating heuristic (exhaustive search
    switched off) on a noisy, rotated, relabelled copy (the trained-vs-code regime)."""
    rng = np.random.default_rng(3)
    for _ in range(2):
        B = rng.standard_normal((K, 3))
        if noise is None:
            A = rng.standard_normal((K, 3))
        else:
            A = (B / np.linalg.norm(B, axis=1, keepdims=True))[rng.permutation(K)] @ _random_orthogonal(3, rng)
            A = A + noise * rng.standard_normal(A.shape)
        dist, perm, R = align_to_code(A, B, seed=0, exhaustive_max_K=exhaustive)
        ref = _brute_force_distance(A, B)
        assert dist == pytest.approx(ref, abs=1e-9)
        An = A / np.linalg.norm(A, axis=1, keepdims=True)
        Bn = B / np.linalg.norm(B, axis=1, keepdims=True)
        assert np.linalg.norm(An - Bn[perm] @ R) == pytest.approx(dist, abs=1e-12)


def test_align_noise_level_and_symmetric_code():
    rng = np.random.default_rng(5)
    ico = normalize_rows(icosahedron())
    Q = _random_orthogonal(3, rng)
    noisy = ico[rng.permutation(12)] @ Q + 1e-3 * rng.standard_normal((12, 3))
    dist, _, _ = align_to_code(noisy, ico)
    assert dist < 5e-3                           # ~ noise * sqrt(K*d)
    far, _, _ = align_to_code(rng.standard_normal((12, 3)), ico)
    assert far > 0.3
    assert code_distance(noisy, ico) == pytest.approx(dist / np.sqrt(12))


def _sol(problem, d, K, value, ovr=np.nan, seed=0):
    rng = np.random.default_rng(seed + 7 * K + d)
    W = rng.standard_normal((K, d))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    return CodeSolution(W=W, problem=problem, d=d, K=K, value=value, min_angle_deg=value if problem == "tammes" else 50.0,
                        ovr=ovr, certificate={"lower_bound": 0.1}, rattlers=np.array([1]), settings={"x": 1}, seed=seed,
                        seconds=1.0, history=[(0.0, 1.0), (1.0, 2.0)])


def test_solution_file_round_trip(tmp_path):
    sol = _sol("softmax", 3, 5, 0.5, ovr=0.5)
    path = tmp_path / "softmax" / "d3_K5.nc"
    save_solution(sol, path)
    back = load_solution(path)
    np.testing.assert_array_equal(back.W, sol.W)
    assert (back.problem, back.d, back.K, back.value, back.ovr, back.seed) == ("softmax", 3, 5, 0.5, 0.5, 0)
    assert back.settings == {"x": 1} and back.certificate == {"lower_bound": 0.1}
    assert back.history == [(0.0, 1.0), (1.0, 2.0)] and back.rattlers.tolist() == [1] and back.H is None
    assert "gnc_code_version" in __import__("gnc.io", fromlist=["open_netcdf"]).open_netcdf(path).attrs

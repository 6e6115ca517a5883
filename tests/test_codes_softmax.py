"""gnc.codes.solve_softmax_code, the HardMax baseline and the UFM.

Expected values are closed forms (GNC paper Thm 3.3: polygons, simplex, cross-polytope; docs/methods.md §10)
and an independent slow one-vs-rest computation (per-class SLSQP, tests/test_codes_known.py);
nothing is compared with a stored output of our own solvers.
"""

import math

import numpy as np
import pytest
import torch

from gnc.codes import (code_distance, cross_refine, solve_hardmax, solve_softmax_code, solve_tammes,
                       solve_ufm, ufm_tau_sweep)
from gnc.claims import closed_form
from gnc.codes._polish import kkt_residual_softmax
from gnc.maths import normalize_rows

from test_codes_known import _slow_ovr
from test_codes_tammes import simulated_clock
from _polytopes import icosahedron, polygon

torch.set_num_threads(1)


@pytest.mark.parametrize("d,K", [(2, 5), (2, 7), (5, 4), (4, 5), (3, 6), (4, 8)])
def test_proved_softmax_codes(d, K):
    s = solve_softmax_code(d, K, restarts=4, iters=500, seed=0)
    expected = closed_form(d, K)[1]
    assert s.value == pytest.approx(expected, abs=1e-8)
    assert s.ovr == s.value
    assert s.certificate["lower_bound"] <= s.value + 1e-12           # a proof, never above the truth
    assert s.certificate["lower_bound"] == pytest.approx(expected, abs=1e-8)
    assert _slow_ovr(s.W).min() == pytest.approx(expected, abs=1e-6)  # independent evaluation
    assert len(s.rattlers) == 0
    assert s.H.shape == (K, d) and np.allclose(np.linalg.norm(s.H, axis=1), 1)


def test_icosahedron_and_conjecture_in_R3():
    """(3,12): our code is at least as good as the icosahedron (1 - 1/sqrt 5), and the optimal
    Tammes code's one-vs-rest distance equals the softmax value there."""
    s = solve_softmax_code(3, 12, restarts=8, iters=800, seed=1)
    t = solve_tammes(3, 12, restarts=8, n_polish=2, hops=0, iters=300)
    ico = 1 - 1 / math.sqrt(5)
    assert s.value >= ico - 1e-9
    assert s.certificate["kkt_residual"] < 1e-8
    assert t.ovr == pytest.approx(ico, abs=1e-9)
    r = cross_refine(3, 12, {"tammes": t.W, "softmax": s.W}, time_budget=5.0)
    assert r.evidence["verdict"] == "same"
    assert code_distance(r.tammes.W, icosahedron()) < 1e-6
    assert r.softmax.ovr == pytest.approx(_slow_ovr(r.softmax.W).min(), abs=1e-6)


def test_kkt_certificate_softmax():
    W = polygon(5)
    assert kkt_residual_softmax(W, W)["kkt_residual"] < 1e-12          # self-dual optimum
    rng = np.random.default_rng(0)
    W2 = W + 0.05 * rng.standard_normal(W.shape)
    W2 /= np.linalg.norm(W2, axis=1, keepdims=True)
    assert kkt_residual_softmax(W2, W2)["kkt_residual"] > 1e-3


def test_init_array_and_random_init():
    ico = normalize_rows(icosahedron())
    s = solve_softmax_code(3, 12, init=ico, restarts=2, iters=100, polish=False, seed=0)
    assert s.value >= 1 - 1 / math.sqrt(5) - 1e-6
    r = solve_softmax_code(3, 9, init="random", restarts=4, iters=400, seed=0)
    assert r.settings["init"] == "random" and r.value > 0.6


def test_hardmax_baseline_is_a_valid_lower_bound_and_worse_than_ours():
    h = solve_hardmax(3, 8, iters=3000, restarts=2, seed=0, record_every=50)
    ours = solve_softmax_code(3, 8, restarts=4, iters=500, seed=0)
    assert h.certificate["lower_bound"] <= h.value + 1e-12
    assert h.value <= ours.value + 1e-9
    vals = [v for _, v in h.history]
    assert vals == sorted(vals)
    assert _slow_ovr(h.W).min() == pytest.approx(h.value, abs=1e-6)


def test_ufm_approaches_softmax_code_as_tau_decreases():
    ref = solve_softmax_code(3, 8, restarts=4, iters=500, seed=0)
    ds, sols = ufm_tau_sweep(3, 8, 2, [1.0, 0.1, 0.01], reference=ref, steps=600, lr=0.02, max_rounds=3)
    gap = ref.value - ds["ufm_ovr"].values
    assert gap[0] > gap[1] > gap[2] - 1e-9 and gap[2] < 1e-3 and gap[2] > -1e-9
    assert ds["ufm_ovr_ratio"].values == pytest.approx(ds["ufm_ovr"].values / ref.value)
    assert code_distance(sols[2].W, ref.W) < 0.05
    assert ds["ufm_converged"].values[2] == 1 and ds["ufm_stuck"].values[2] == 0
    assert ds.attrs["reference_value"] == ref.value
    for v in ds.variables:
        assert ds[v].attrs.get("long_name") and "units" in ds[v].attrs, v
    assert sols[2].H.shape == (16, 3) and sols[2].settings["tau"] == 0.01
    one = solve_ufm(3, 4, 2, 0.5, steps=300, lr=0.1)
    assert one.value == pytest.approx(4 / 3, abs=1e-4)                 # K <= d+1: simplex ETF
    assert one.certificate["feature_variability"] < 1e-3


def _slow_softmin_grads(W, H, beta, pairs):
    """Minus the gradients of sum_{(k,j) in pairs} exp(-beta (m_kj - min m)), by autograd
    (independent of the hand-written kernels): beta times the soft-min ascent direction."""
    W = W.clone().requires_grad_(True)
    H = H.clone().requires_grad_(True)
    k, j = pairs
    M = (H[k] * (W[k] - W[j])).sum(1)
    f = torch.exp(-beta * (M - M.min().detach())).sum()
    f.backward()
    return -W.grad, -H.grad, float(M.min().detach())


@pytest.mark.parametrize("m", [5, 29])
def test_sparse_margin_kernels_match_autograd(m):
    from gnc.codes._smooth import _softmin_grads, nearest_margins
    from gnc.codes.tammes import random_sphere
    K, d = 30, 6
    W = random_sphere(1, K, d, 0, torch.float64, "cpu")
    H = random_sphere(1, K, d, 1, torch.float64, "cpu")
    pats, L = nearest_margins(W, H, m)
    # the exact min margin over all pairs, directly
    G = H[0] @ W[0].T
    M = G.diag().unsqueeze(1) - G
    M.fill_diagonal_(math.inf)
    assert float(L[0]) == pytest.approx(float(M.min()), abs=1e-14)
    # each class's pattern holds its m smallest margins
    for k in range(K):
        assert set(pats[0].col[k * m:(k + 1) * m].tolist()) == set(torch.argsort(M[k])[:m].tolist())
    gW, gH, mn = _softmin_grads(W, H, 7.0, L, None, pats)
    pairs = (pats[0].rows, pats[0].col)
    rW, rH, rmin = _slow_softmin_grads(W[0], H[0], 7.0, pairs)
    assert float(mn[0]) == pytest.approx(rmin, abs=1e-14)
    # the kernels return the ascent direction without the factor beta (it is normalised away later)
    np.testing.assert_allclose(7.0 * gW[0].numpy(), rW.numpy(), atol=1e-12)
    np.testing.assert_allclose(7.0 * gH[0].numpy(), rH.numpy(), atol=1e-12)


def test_sparse_path_solves_a_code_with_a_certificate():
    """The large-K path (forced on a small problem): a certified value close to the dense solver's."""
    dense = solve_softmax_code(4, 40, restarts=1, iters=400, seed=0, init="random", polish=False, refine=None)
    sparse = solve_softmax_code(4, 40, restarts=1, iters=400, seed=0, init="random", polish=False, refine=None,
                                neighbours=8, refresh=10)
    assert sparse.settings["neighbours"] == 8
    assert sparse.certificate["lower_bound"] <= sparse.value + 1e-12
    assert sparse.value > 0.95 * dense.value


def test_polish_progress_callback_is_increasing_and_ends_at_the_result():
    from gnc.codes._polish import slp_softmax, slp_tammes
    rng = np.random.default_rng(3)
    W = normalize_rows(icosahedron()) + 0.02 * rng.standard_normal((12, 3))
    seen = []
    Wp, Hp, L, info = slp_softmax(W, W.copy(), on_accept=seen.append)
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] == L
    assert L == pytest.approx(1 - 1 / math.sqrt(5), abs=1e-9)
    mus = []
    _, mu, _ = slp_tammes(W, on_accept=mus.append)
    assert mus == sorted(mus, reverse=True) and mus[-1] == mu


def test_smoothed_basin_hops_leave_the_dominant_basin():
    """(3, 60), seed 0: the rounds' best polishes to the 0.1104133 basin; the hops (perturbed copies
    annealed together, best one polished) reach the 0.1105264 basin (the best-known Tammes code's
    one-vs-rest value).  The anytime curve is non-decreasing and ends at the returned code."""
    s = solve_softmax_code(3, 60, seed=0, hops=0)
    h = solve_softmax_code(3, 60, seed=0)
    assert h.value > 0.11051 and h.value >= s.value
    assert h.certificate["hops"] == 8 and h.certificate["polished"]
    vals = [v for _, v in h.history]
    assert vals == sorted(vals) and vals[-1] == pytest.approx(h.value, abs=1e-9)
    assert _slow_ovr(h.W).min() == pytest.approx(h.value, abs=1e-6)


def test_time_budget_goes_to_the_hops(monkeypatch):
    """With hops, the budget is not spent on repeated rounds: the planned rounds, then hops until the
    budget is spent (on a simulated clock)."""
    simulated_clock(monkeypatch)
    s = solve_softmax_code(3, 12, seed=0, restarts=16, time_budget=3.0)
    assert s.settings["rounds"] == 2 and s.certificate["hops"] >= 1 and s.certificate["polished"]
    assert s.value == pytest.approx(1 - 1 / math.sqrt(5), abs=1e-9)


def test_tuning_knobs_as_options_or_keywords():
    """The knobs given as a SoftmaxOptions or as keywords (which override it) are the same solve; an
    unknown keyword is refused by name."""
    from gnc.codes import SoftmaxOptions, TammesOptions

    a = solve_softmax_code(3, 5, restarts=2, iters=60, seed=0, options=SoftmaxOptions(polish=False, refine=None))
    b = solve_softmax_code(3, 5, restarts=2, iters=60, seed=0, polish=False, refine=None)
    c = solve_softmax_code(3, 5, restarts=2, iters=60, seed=0, options=SoftmaxOptions(polish=True), polish=False,
                           refine=None)
    assert np.array_equal(a.W, b.W) and np.array_equal(a.W, c.W) and a.settings == b.settings == c.settings
    assert not a.settings["polish"] and a.settings["refine"] is None
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) \['polsh'\]"):
        solve_softmax_code(3, 5, polsh=False)
    with pytest.raises(TypeError, match="options must be a SoftmaxOptions"):
        solve_softmax_code(3, 5, options=TammesOptions())
    with pytest.raises(ValueError, match="unknown init 'tammess'"):
        solve_softmax_code(3, 5, init="tammess")

"""gnc.codes.solve_tammes against proved optima (closed forms and the literature).

The reference angles come from closed forms (simplex, cross-polytope, polygons, icosahedron) and
from the literature values collected in tests/test_codes_known.py (Cohn's table, OEIS A340918,
A217695, A383860, Robinson's snub cube), never from our own solver.
"""

import math
import time

import numpy as np
import pytest
import torch

from gnc.claims import closed_form
from gnc.codes import known, solve_tammes
from gnc.codes._common import tammes_rattlers
from gnc.codes._polish import kkt_residual_tammes
from gnc.maths import normalize_rows

from test_codes_known import literature_tammes_angles
from _polytopes import icosahedron, polygon

torch.set_num_threads(1)
LIT = literature_tammes_angles()


@pytest.mark.parametrize("d,K", [(5, 4), (4, 5), (6, 7), (3, 6), (4, 7), (4, 8), (2, 5), (2, 7), (3, 12)])
def test_closed_form_optima(d, K):
    s = solve_tammes(d, K, restarts=8, n_polish=2, hops=0, iters=300, seed=0)
    assert s.W.shape == (K, d) and np.allclose(np.linalg.norm(s.W, axis=1), 1)
    assert s.value == pytest.approx(known.best_known_tammes(d, K)[0], abs=1e-7)
    assert s.min_angle_deg == s.value
    assert s.certificate["kkt_residual"] < 1e-6
    # these optimal Tammes codes are also softmax codes with the closed-form rho_ovr
    if K <= d + 1 or K == 2 * d or d == 2:
        assert s.ovr == pytest.approx(closed_form(d, K)[1], abs=1e-8)
    if (d, K) == (3, 12):
        assert s.ovr == pytest.approx(1 - 1 / math.sqrt(5), abs=1e-8)


@pytest.mark.parametrize("K", [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 24])
def test_proved_optima_in_R3(K):
    """Proved Tammes optima in R^3 (Fejes Toth, Schuette-van der Waerden, Danzer, Robinson,
    Musin-Tarasov) to 1e-6 degree.  K = 13 has a small basin: more polished restarts and hops."""
    extra = dict(restarts=16, n_polish=16, hops=24) if K == 13 else dict(restarts=8, n_polish=4, hops=4)
    s = solve_tammes(3, K, iters=300, seed=0, evaluate_ovr=False, **extra)
    assert abs(s.value - LIT[K]) < 1e-6 if K != 24 else abs(s.value - known.best_known_tammes(3, 24)[0]) < 1e-6
    assert s.certificate["kkt_residual"] < 1e-6
    # K = 5 and 6 share the optimum 90 deg; K=5 is not rigid but every point still touches another
    if K in (5, 6, 12, 24):
        assert len(s.rattlers) == 0


def test_rattler_detection_and_kkt_certificate():
    # hexagon in the equator (contacts at 60 deg) + north pole at 90 deg from all: a rattler
    X = np.vstack([np.column_stack([polygon(6), np.zeros(6)]), [[0, 0, 1]]])
    assert tammes_rattlers(X, 1e-9).tolist() == [6]
    assert kkt_residual_tammes(normalize_rows(icosahedron()))["kkt_residual"] < 1e-12
    rng = np.random.default_rng(0)
    bad = normalize_rows(icosahedron()) + 0.05 * rng.standard_normal((12, 3))
    assert kkt_residual_tammes(bad / np.linalg.norm(bad, axis=1, keepdims=True))["kkt_residual"] > 1e-3


def simulated_clock(monkeypatch):
    """time.perf_counter on a simulated clock: every reading advances it by 1 ms, and a test may add
    time (``now[0] += t``), so budgets do not depend on the machine's speed or load."""
    now = [0.0]

    def clock():
        now[0] += 1e-3
        return now[0]

    monkeypatch.setattr(time, "perf_counter", clock)
    return now


def test_time_budget_history_and_settings(monkeypatch):
    """A 1 s budget: the run ends within it plus the 1 s that a polish started at the deadline may take."""
    simulated_clock(monkeypatch)
    s = solve_tammes(3, 20, restarts=4, iters=100, time_budget=1.0, seed=3, evaluate_ovr=False)
    assert 1.0 < s.seconds <= 1.0 + 1.0 + 0.05
    vals = [v for _, v in s.history]
    assert vals == sorted(vals) and vals[-1] == pytest.approx(s.value)
    assert s.settings["rounds"] >= 1 and s.settings["device"] == "cpu" and s.seed == 3
    assert s.settings["n_hops"] >= 1  # the budget left after the rounds goes to the hops
    assert s.value > 0.99 * known.tammes_records()[20]["angle_deg"]


@pytest.mark.parametrize("polish_time", [300.0, 0.4])
def test_time_budget_caps_the_polish(monkeypatch, polish_time):
    """Every polish gets at most what is left of the budget (at least 1 s) and at most ``polish_time``:
    the polish is replaced by a stand-in that uses all the time it is given."""
    import gnc.codes.tammes as tammes_module
    from gnc.codes import max_cosine

    now = simulated_clock(monkeypatch)
    given = []

    def polish_using_all_its_time(X, *, r0, time_limit, on_accept):
        given.append((now[0], time_limit))
        now[0] += time_limit
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        return Xn, max_cosine(Xn), {"iterations": 1}

    monkeypatch.setattr(tammes_module, "slp_tammes", polish_using_all_its_time)
    budget = 4.0
    s = solve_tammes(3, 30, restarts=4, iters=50, time_budget=budget, polish_time=polish_time, seed=0,
                     evaluate_ovr=False)
    assert given and s.certificate["polished"]
    for started, limit in given:
        assert limit <= polish_time and limit <= max(budget - started, 1.0) + 0.01  # the clock started at 1 ms
    assert s.seconds <= budget + min(polish_time, 1.0) + 0.05
    if polish_time < 1.0:
        assert s.settings["n_hops"] >= 1

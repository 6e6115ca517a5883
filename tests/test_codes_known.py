"""Closed-form codes, literature values and the Tammes record table of gnc.codes.known.

Literature values used here (independent of the package data file):
* Cohn, "Table of spherical codes" (cohn.mit.edu/?p=232, data hdl.handle.net/1721.1/142661):
  cosines of the optimal 7-, 8-, 9-point codes in R^3 are roots of 3x^3-9x^2-3x+1, 7x^2+2x-1, 3x-1.
* OEIS A340918 (N=10, Danzer 1963): angle = atan(sqrt((4/sqrt 3) cos(atan(sqrt(687)/9)/3) + 3)).
* OEIS A217695 (N=13, Musin & Tarasov 2012): x0 solves 2 tan(3 pi/8 - x/4) = (1 - 2 cos x)/cos^2 x on
  (1, 1.5); angle = arccos(cos x0 / (1 - cos x0)) = 0.99722359243811916365... rad.
* OEIS A383860 (N=14, Musin & Tarasov 2015): 0.971634742886224075941694947628 rad.
* N=15: cosine = root in (1/2, 7/10) of 13u^5 - u^4 + 6u^3 + 2u^2 - 3u - 1 (github.com/mt0-svg/tammes-15).
* N=24 (Robinson 1961): the snub cube, 43.6907671 deg.
"""

import math

import numpy as np
import pytest
from scipy.optimize import brentq, minimize

from gnc.codes import known
from gnc.maths import normalize_rows

from _polytopes import cell600, cross_polytope, e8_roots, icosahedron, polygon, simplex_etf


def _min_angle(X):
    G = X @ X.T
    np.fill_diagonal(G, -2)
    return math.degrees(math.acos(G.max()))


def _slow_ovr(W):
    """Independent reference for rho_ovr: per-class SLSQP on the simplex (slow, fine for K <= 30)."""
    W = W / np.linalg.norm(W, axis=1, keepdims=True)
    out = []
    for k in range(len(W)):
        A = np.delete(W, k, 0)
        f = lambda lam: float(np.sum((W[k] - lam @ A) ** 2))  # noqa: E731
        g = lambda lam: -2 * A @ (W[k] - lam @ A)  # noqa: E731
        x0 = np.full(len(A), 1 / len(A))
        res = minimize(f, x0, jac=g, method="SLSQP", bounds=[(0, 1)] * len(A),
                       constraints=[{"type": "eq", "fun": lambda lam: lam.sum() - 1}],
                       options={"ftol": 1e-16, "maxiter": 1000})
        out.append(math.sqrt(max(res.fun, 0.0)))
    return np.array(out)


def literature_tammes_angles():
    """Proved optimal Tammes angles in R^3 (degrees) from the closed forms in the module docstring."""
    a = {3: 120.0, 4: math.degrees(math.acos(-1 / 3)), 5: 90.0, 6: 90.0}
    a[7] = math.degrees(math.acos(brentq(lambda x: 3 * x ** 3 - 9 * x ** 2 - 3 * x + 1, 0.1, 0.3, xtol=1e-16)))
    a[8] = math.degrees(math.acos(brentq(lambda x: 7 * x ** 2 + 2 * x - 1, 0.1, 0.4, xtol=1e-16)))
    a[9] = math.degrees(math.acos(1 / 3))
    a[10] = math.degrees(math.atan(math.sqrt((4 / math.sqrt(3)) * math.cos(math.atan(math.sqrt(687) / 9) / 3) + 3)))
    a[11] = a[12] = math.degrees(math.acos(1 / math.sqrt(5)))
    x0 = brentq(lambda x: 2 * math.tan(3 * math.pi / 8 - x / 4) - (1 - 2 * math.cos(x)) / math.cos(x) ** 2,
                1.0, 1.5, xtol=1e-15)
    a[13] = math.degrees(math.acos(math.cos(x0) / (1 - math.cos(x0))))
    a[14] = math.degrees(0.971634742886224075941694947628)
    a[24] = 43.6907671
    return a


def test_literature_values_are_consistent():
    a = literature_tammes_angles()
    assert a[13] == pytest.approx(math.degrees(0.99722359243811916365), abs=1e-10)   # OEIS A217695 digits
    assert a[10] == pytest.approx(math.degrees(1.1544798334192707378), abs=1e-10)     # OEIS A340918 digits
    assert a[7] == pytest.approx(math.degrees(math.acos(0.21013831273060308486)), abs=1e-10)  # Cohn cosine
    assert a[8] == pytest.approx(math.degrees(math.acos(0.26120387496374144251)), abs=1e-10)


def test_record_table_matches_literature():
    rec = known.tammes_records()
    assert sorted(rec) == list(range(3, 61))
    lit = literature_tammes_angles()
    for N, ang in lit.items():
        assert rec[N]["angle_deg"] == pytest.approx(ang, abs=2e-7), N    # table = angles rounded to 1e-7
        assert rec[N]["status"] == "proved"
    u15 = brentq(lambda u: 13 * u ** 5 - u ** 4 + 6 * u ** 3 + 2 * u ** 2 - 3 * u - 1, 0.5, 0.7, xtol=1e-16)
    assert rec[15]["angle_deg"] == pytest.approx(math.degrees(math.acos(u15)), abs=2e-7)
    angles = [rec[N]["angle_deg"] for N in range(3, 61)]
    assert all(a >= b for a, b in zip(angles, angles[1:]))                # non-increasing in N


@pytest.mark.parametrize("name,X,angle,ovr", [
    ("icosahedron", icosahedron(), math.degrees(math.acos(1 / math.sqrt(5))), 1 - 1 / math.sqrt(5)),
    ("simplex", simplex_etf(6, 8), math.degrees(math.acos(-1 / 5)), 6 / 5),
    ("cross", cross_polytope(5), 90.0, 1.0),
    ("heptagon", polygon(7), 360 / 7, 1 - math.cos(2 * math.pi / 7)),
    ("cell600", cell600(), 36.0, 1 - (1 + 5 ** 0.5) / 4),
    ("e8", e8_roots(), 60.0, 0.5),
    ("snub", known.snub_cube(), 43.6907671, None),
])
def test_closed_form_codes(name, X, angle, ovr):
    from gnc.metrics.ovr import ovr_distances

    X = normalize_rows(X)
    assert np.allclose(np.linalg.norm(X, axis=1), 1)
    assert len(np.unique(np.round(X, 9), axis=0)) == len(X)
    assert _min_angle(X) == pytest.approx(angle, abs=1e-7 if name == "snub" else 1e-9)
    if ovr is not None:
        res = ovr_distances(X)
        assert res.value == pytest.approx(ovr, abs=1e-9)
        if len(X) <= 30:
            assert _slow_ovr(X).min() == pytest.approx(ovr, abs=1e-6)


def test_best_known_tammes_sources_and_status():
    """Closed forms, the R^3 table (checked against Danzer's (3, 10) optimum, 66.1468220 degrees) and
    'no table available' where the package holds none."""
    assert known.best_known_tammes(2, 5)[0] == 72.0 and known.best_known_tammes(2, 9)[0] == 40.0
    assert known.best_known_tammes(3, 12)[0] == pytest.approx(63.4349488, abs=1e-7)
    assert known.best_known_tammes(5, 4)[0] == pytest.approx(math.degrees(math.acos(-1 / 3)))
    assert known.best_known_tammes(4, 7)[0] == 90.0
    assert known.best_known_tammes(3, 24)[0] == pytest.approx(43.6907671, abs=1e-7)
    angle, source = known.best_known_tammes(3, 10)
    assert angle == pytest.approx(66.1468220, abs=1e-7) and "Sloane" in source
    assert known.best_known_tammes(10, 100) is None
    status, best, source = known.compare_with_best_known(10, 50, 77.1)
    assert status == "no table available" and math.isnan(best)
    assert "could not be obtained" in source and "spherical-codes.org" in source   # the reason is stated
    # the default study's (16, 10) is a regular simplex (K <= d + 1): proved, so it has a best known angle
    simplex_angle = math.degrees(math.acos(-1 / 9))
    assert known.compare_with_best_known(16, 10, simplex_angle)[0] == "matches"
    assert known.compare_with_best_known(16, 10, simplex_angle - 1e-4)[0] == "trails"
    assert known.compare_with_best_known(3, 10, angle)[0] == "matches"
    assert known.compare_with_best_known(3, 10, angle - 1e-4)[0] == "trails"
    assert known.compare_with_best_known(3, 10, angle + 1e-4)[0] == "beats"

"""Best-known Tammes angles and the paper's reference lines.

Proved Tammes optima in closed form: the regular simplex (K <= d + 1) and K <= 2d (Rankin 1955), the
regular K-gon (d = 2), and the codes of ``_TAMMES_PROOFS``; in R^3 for N <= 60 the best-known table
of :func:`tammes_records`.  Known softmax codes and their rho_ovr: docs/methods.md §10.
"""

from __future__ import annotations

import csv
import itertools
import math
from importlib import resources

import numpy as np

from ..maths import normalize_rows

#: The authors' dashed "Optimal" softmax-code values (docs/methods.md §10, from the authors' notebooks).
#: They are not optimal: :func:`gnc.codes.solve_softmax_code` beats every one of them.
PAPER_OPTIMAL_LINES = {(10, 100): 0.61416, (20, 100): 0.8124, (30, 100): 0.8886, (10, 200): 0.5052,
                       (20, 200): 0.7211, (30, 200): 0.8053, (512, 10000): 0.7966}


def snub_cube() -> np.ndarray:
    """The 24 vertices of the (Archimedean) snub cube, Robinson's Tammes optimum for N = 24."""
    t = (1 + (19 + 3 * math.sqrt(33)) ** (1 / 3) + (19 - 3 * math.sqrt(33)) ** (1 / 3)) / 3   # tribonacci
    base = np.array([1.0, 1.0 / t, t])
    even = [(0, 1, 2), (1, 2, 0), (2, 0, 1)]
    odd = [(1, 0, 2), (0, 2, 1), (2, 1, 0)]
    pts = []
    for signs in itertools.product((1, -1), repeat=3):
        perms = odd if sum(s > 0 for s in signs) % 2 == 0 else even
        pts += [np.array(signs) * base[list(p)] for p in perms]
    return normalize_rows(np.array(pts))


def _min_angle_deg(X: np.ndarray) -> float:
    G = X @ X.T
    np.fill_diagonal(G, -2)
    return math.degrees(math.acos(G.max()))


#: the proved Tammes optima outside the families K <= 2d and d = 2: (d, K) -> (angle in degrees, source)
_TAMMES_PROOFS = {(3, 12): (math.degrees(math.acos(1 / math.sqrt(5))),
                            "icosahedron, proved optimal by Fejes Toth (1943)"),
                  (3, 24): (_min_angle_deg(snub_cube()), "snub cube, proved optimal by Robinson (1961)"),
                  (4, 24): (60.0, "24-cell, proved optimal by Musin (2008)"),
                  (4, 120): (36.0, "600-cell, proved optimal by Andreev (1999)"),
                  (8, 240): (60.0, "E8 roots, proved optimal by Levenshtein (1979)")}

#: why a (d, K) outside the closed forms and the R^3 table has no best-known angle in the package
NO_TABLE_REASON = ("no table of best-known codes for this (d, K) in the package: the tables that list it "
                   "(Sloane, Hardin, Smith et al., neilsloane.com/packings, d <= 24, N <= 130; Cohn, "
                   "spherical-codes.org, data hdl.handle.net/1721.1/153543, d <= 32) could not be obtained "
                   "with their provenance, and no public mirror of them was found")

#: a Tammes code "matches" the best known angle when it is within this many degrees (the R^3 table's
#: chords are consistent with angles rounded to 1e-7 degree)
BEST_KNOWN_TOL_DEG = 1e-6


def best_known_tammes(d: int, K: int) -> tuple[float, str] | None:
    """Best known Tammes angle (degrees) for (d, K) with its source, or None when the package holds no
    table for (d, K): closed forms (simplex and K <= 2d by Rankin 1955, d = 2, the codes of
    ``_TAMMES_PROOFS``) and the R^3 table of :func:`tammes_records` (N <= 60, sources in its header)."""
    if K <= d + 1:
        return math.degrees(math.acos(-1.0 / (K - 1))), "regular simplex, proved optimal by Rankin (1955)"
    if K <= 2 * d:
        return 90.0, "orthoplex subset, proved optimal by Rankin (1955)"
    if d == 2:
        return 360.0 / K, "regular K-gon (trivially optimal)"
    if (d, K) in _TAMMES_PROOFS:
        return _TAMMES_PROOFS[(d, K)]
    if d == 3:
        rec = tammes_records().get(K)
        if rec is not None:
            return rec["angle_deg"], (f"Sloane-Hardin-Smith tables of spherical codes (R^3, N = {K}, {rec['status']}), "
                                      "package file gnc/codes/data/tammes_records_d3.csv")
    return None


def compare_with_best_known(d: int, K: int, angle: float) -> tuple[str, float, str]:
    """``(status, best known angle, source)`` with status ``matches`` / ``beats`` / ``trails`` (within
    :data:`BEST_KNOWN_TOL_DEG`) or ``no table available`` (angle NaN)."""
    ref = best_known_tammes(d, K)
    if ref is None:
        return "no table available", float("nan"), NO_TABLE_REASON
    best, source = ref
    if angle > best + BEST_KNOWN_TOL_DEG:
        return "beats", best, source
    if angle < best - BEST_KNOWN_TOL_DEG:
        return "trails", best, source
    return "matches", best, source


def tammes_records() -> dict[int, dict]:
    """Best-known Tammes codes in R^3 for N = 3..60 from the package data file (see its header)."""
    text = resources.files("gnc.codes").joinpath("data/tammes_records_d3.csv").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    out = {}
    for row in csv.DictReader(lines):
        chord = float(row["chord"])
        out[int(row["N"])] = {"chord": chord, "angle_deg": math.degrees(2 * math.asin(chord / 2)),
                              "status": row["status"]}
    return out

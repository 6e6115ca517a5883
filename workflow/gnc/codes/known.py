"""Known spherical codes in closed form, literature values and the paper's reference lines.

Constructors return (K, d) float64 arrays with unit rows.  Known optima (closed forms):

==========================  ==================  ===============================  =====================
code                        (d, K)              Tammes min angle                 rho_ovr (methods §10)
==========================  ==================  ===============================  =====================
regular simplex             K <= d + 1          arccos(-1/(K-1))                 K/(K-1)
cross-polytope              (d, 2d)             90 deg                           1
regular K-gon               (2, K)              360/K deg                        1 - cos(2 pi/K)
icosahedron                 (3, 12)             arccos(1/sqrt 5) = 63.4349488    1 - 1/sqrt 5
snub cube (Robinson 1961)   (3, 24)             43.6907671 deg
24-cell                     (4, 24)             60 deg
600-cell                    (4, 120)            36 deg                           1 - cos 36 deg
E8 roots                    (8, 240)            60 deg                           0.5
==========================  ==================  ===============================  =====================

Tammes optimality: simplex and K <= 2d (Rankin 1955), d = 2 (trivial), (3,12) and (3,24) (Fejes
Toth 1943, Robinson 1961), (4,24) (Musin 2008), (4,120) (Andreev 1999 / Levenshtein bound),
(8,240) (Levenshtein 1979).  Softmax-code optimality is proved by the GNC paper for d = 2,
K <= d + 1 and K = 2d (docs/methods.md §4, §10).
"""

from __future__ import annotations

import csv
import itertools
import math
from importlib import resources

import numpy as np

from ..maths import normalize_rows

PHI = (1 + math.sqrt(5)) / 2

#: The authors' dashed "Optimal" softmax-code values (docs/methods.md §10, from the authors' notebooks).
#: They are not optimal: :func:`gnc.codes.solve_softmax_code` beats every one of them.
PAPER_OPTIMAL_LINES = {(10, 100): 0.61416, (20, 100): 0.8124, (30, 100): 0.8886, (10, 200): 0.5052,
                       (20, 200): 0.7211, (30, 200): 0.8053, (512, 10000): 0.7966}


def simplex(K: int, d: int | None = None) -> np.ndarray:
    """Regular simplex: K unit vectors with pairwise cosine -1/(K-1), embedded in R^d (d >= K-1)."""
    d = K - 1 if d is None else d
    if d < K - 1:
        raise ValueError("a regular simplex with K vertices needs d >= K-1")
    E = np.eye(K) - 1.0 / K                     # centred basis vectors, rank K-1, in R^K
    Q, _ = np.linalg.qr(E.T)                     # orthonormal basis of their span (first K-1 columns)
    X = E @ Q[:, :K - 1]
    out = np.zeros((K, d))
    out[:, :K - 1] = X
    return normalize_rows(out)


def cross_polytope(d: int) -> np.ndarray:
    I = np.eye(d)
    return np.concatenate([I, -I])


def polygon(K: int) -> np.ndarray:
    a = 2 * np.pi * np.arange(K) / K
    return np.column_stack([np.cos(a), np.sin(a)])


def icosahedron() -> np.ndarray:
    pts = []
    for s1 in (1, -1):
        for s2 in (1, -1):
            pts += [(0, s1, s2 * PHI), (s1, s2 * PHI, 0), (s2 * PHI, 0, s1)]
    return normalize_rows(np.array(pts, dtype=float))


def snub_cube() -> np.ndarray:
    """The 24 vertices of the (Archimedean) snub cube, Robinson's Tammes optimum for N = 24."""
    t = (1 + (19 + 3 * math.sqrt(33)) ** (1 / 3) + (19 - 3 * math.sqrt(33)) ** (1 / 3)) / 3   # tribonacci
    base = np.array([1.0, 1.0 / t, t])
    even = [(0, 1, 2), (1, 2, 0), (2, 0, 1)]
    odd = [(1, 0, 2), (0, 2, 1), (2, 1, 0)]
    pts = []
    for signs in itertools.product((1, -1), repeat=3):
        nplus = sum(s > 0 for s in signs)
        perms = odd if nplus % 2 == 0 else even
        for p in perms:
            pts.append(np.array(signs) * base[list(p)])
    return normalize_rows(np.array(pts))


def cell24() -> np.ndarray:
    """24-cell: all permutations of (+-1, +-1, 0, 0)/sqrt 2 (the D4 root system)."""
    pts = set()
    for i, j in itertools.combinations(range(4), 2):
        for si in (1, -1):
            for sj in (1, -1):
                v = [0, 0, 0, 0]
                v[i], v[j] = si, sj
                pts.add(tuple(v))
    return normalize_rows(np.array(sorted(pts), dtype=float))


def _even_permutations(n: int):
    for p in itertools.permutations(range(n)):
        inv = sum(1 for a in range(n) for b in range(a + 1, n) if p[a] > p[b])
        if inv % 2 == 0:
            yield p


def cell600() -> np.ndarray:
    """600-cell: 8 of (+-1,0,0,0), 16 of (+-1/2)^4, 96 even permutations of (+-phi, +-1, +-1/phi, 0)/2."""
    pts = set()
    for i in range(4):
        for s in (1, -1):
            v = [0.0] * 4
            v[i] = s
            pts.add(tuple(v))
    for signs in itertools.product((0.5, -0.5), repeat=4):
        pts.add(tuple(signs))
    base = (PHI / 2, 0.5, 1 / (2 * PHI), 0.0)
    for p in _even_permutations(4):
        for signs in itertools.product((1, -1), repeat=3):
            v = [0.0] * 4
            vals = [signs[0] * base[0], signs[1] * base[1], signs[2] * base[2], 0.0]
            for src, dst in enumerate(p):
                v[dst] = vals[src]
            pts.add(tuple(round(x, 15) for x in v))
    X = np.array(sorted(pts))
    assert len(X) == 120, len(X)
    return normalize_rows(X)


def e8_roots() -> np.ndarray:
    """The 240 roots of E8 (normalised): 112 permutations of (+-1,+-1,0^6), 128 of (+-1/2)^8 with an
    even number of minus signs."""
    pts = []
    for i, j in itertools.combinations(range(8), 2):
        for si in (1, -1):
            for sj in (1, -1):
                v = np.zeros(8)
                v[i], v[j] = si, sj
                pts.append(v)
    for signs in itertools.product((1, -1), repeat=8):
        if sum(s < 0 for s in signs) % 2 == 0:
            pts.append(0.5 * np.array(signs, dtype=float))
    return normalize_rows(np.array(pts))


def known_tammes_angle(d: int, K: int) -> float | None:
    """Proved optimal Tammes angle (degrees) from a closed form, or None."""
    if K <= d + 1:
        return math.degrees(math.acos(-1.0 / (K - 1)))
    if K <= 2 * d:
        return 90.0
    if d == 2:
        return 360.0 / K
    table = {(3, 12): math.degrees(math.acos(1 / math.sqrt(5))), (4, 24): 60.0, (4, 120): 36.0, (8, 240): 60.0}
    if (d, K) == (3, 24):
        X = snub_cube()
        G = X @ X.T
        np.fill_diagonal(G, -2)
        return math.degrees(math.acos(G.max()))
    return table.get((d, K))


#: where each closed-form Tammes optimum of :func:`known_tammes_angle` is proved
_TAMMES_PROOFS = {(3, 12): "icosahedron, proved optimal by Fejes Toth (1943)",
                  (3, 24): "snub cube, proved optimal by Robinson (1961)",
                  (4, 24): "24-cell, proved optimal by Musin (2008)",
                  (4, 120): "600-cell, proved optimal by Andreev (1999)",
                  (8, 240): "E8 roots, proved optimal by Levenshtein (1979)"}

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
        return known_tammes_angle(d, K), "regular simplex, proved optimal by Rankin (1955)"
    if K <= 2 * d:
        return 90.0, "orthoplex subset, proved optimal by Rankin (1955)"
    if d == 2:
        return 360.0 / K, "regular K-gon (trivially optimal)"
    if (d, K) in _TAMMES_PROOFS:
        return known_tammes_angle(d, K), _TAMMES_PROOFS[(d, K)]
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


def known_softmax_value(d: int, K: int) -> float | None:
    """Softmax-code optimum where the GNC paper proves it (docs/methods.md §10), else None."""
    if K <= d + 1:
        return K / (K - 1)
    if K == 2 * d:
        return 1.0
    if d == 2:
        return 1.0 - math.cos(2 * math.pi / K)
    return None


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

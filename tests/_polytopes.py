"""Point sets on the sphere built from their definitions (the tests' independent references)."""

import itertools
import math

import numpy as np

PHI = (1 + math.sqrt(5)) / 2


def simplex_etf(K, d):
    M = np.eye(K) - 1.0 / K  # rows: centred basis vectors, span a (K-1)-dim subspace
    U, _, _ = np.linalg.svd(M)
    coords = M @ U[:, : K - 1]  # (K, K-1)
    X = np.zeros((K, d))
    X[:, : K - 1] = coords
    return X


def cross_polytope(d):
    return np.vstack([np.eye(d), -np.eye(d)])


def polygon(K):
    t = 2 * np.pi * np.arange(K) / K
    return np.stack([np.cos(t), np.sin(t)], 1)


def icosahedron():
    pts = []
    for s1, s2 in itertools.product((-1, 1), repeat=2):
        base = (0.0, s1 * 1.0, s2 * PHI)
        for c in range(3):  # cyclic permutations
            pts.append(np.roll(base, c))
    return np.array(pts)


def _even_permutations(n):
    for p in itertools.permutations(range(n)):
        inv = sum(1 for i in range(n) for j in range(i + 1, n) if p[i] > p[j])
        if inv % 2 == 0:
            yield p


def cell600():
    pts = set()
    for i in range(4):
        for s in (-1, 1):
            v = [0.0] * 4
            v[i] = float(s)
            pts.add(tuple(v))
    for signs in itertools.product((-0.5, 0.5), repeat=4):
        pts.add(tuple(signs))
    base = (PHI / 2, 0.5, 1 / (2 * PHI), 0.0)
    for p in _even_permutations(4):
        for signs in itertools.product((-1, 1), repeat=3):
            v = [base[0] * signs[0], base[1] * signs[1], base[2] * signs[2], 0.0]
            w = [0.0] * 4
            for src, dst in enumerate(p):
                w[dst] = v[src]
            pts.add(tuple(round(x, 15) + 0.0 for x in w))
    X = np.array(sorted(pts))
    assert X.shape == (120, 4)
    return X


def demicube5():
    X = np.array([s for s in itertools.product((-1.0, 1.0), repeat=5) if sum(x < 0 for x in s) % 2 == 0])
    assert X.shape == (16, 5)
    return X


def e8_roots():
    pts = []
    for i, j in itertools.combinations(range(8), 2):
        for si, sj in itertools.product((-1.0, 1.0), repeat=2):
            v = np.zeros(8)
            v[i], v[j] = si, sj
            pts.append(v)
    for s in itertools.product((-0.5, 0.5), repeat=8):
        if sum(x < 0 for x in s) % 2 == 0:
            pts.append(np.array(s))
    X = np.array(pts)
    assert X.shape == (240, 8)
    return X

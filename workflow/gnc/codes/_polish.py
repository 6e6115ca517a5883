"""Exact polish of spherical codes: sequential linear programming (SLP) on the active set.

Both problems maximise a minimum of smooth functions over a product of unit spheres.  Around the
current point every row moves in its tangent space, ``x_i -> (x_i + U_i a_i)/||.||`` with
``U_i`` an orthonormal tangent basis.  The constraints that are within a margin of the current
minimum are linearised and the linear program

    maximise t   s.t.   f_c(X) + <grad f_c, a> >= t   (near-active c),   |a|_inf <= r

is solved with HiGHS.  The step is accepted when the *true* objective improves; the trust radius
``r`` grows on good agreement and shrinks otherwise, until the predicted gain is below ``TOL``.
At a vertex-type optimum (the usual case for spherical codes) SLP converges superlinearly; at the
end the limit satisfies the first-order (KKT) conditions of the max-min problem, which
:func:`kkt_residual_tammes` measures independently.

* Tammes:  f_ij = -<x_i, x_j>                     (i < j)
* Softmax: f_kj = <h_k, w_k - w_j>                (k != j), joint in (W, H); for fixed W the
  best h_k is the dual direction of the one-vs-rest distance (docs/methods.md §2.3).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog, nnls

from ..maths import normalize_rows
from ._common import tangent_bases


def _lp(cost, A, b, r, nv, method, time_left=None, step_penalty: float = 0.0):
    """Solve  min cost.x  s.t.  A x <= b,  |x_i| <= r (i < nv-1),  x_{nv-1} free.

    The LP is solved in units of the trust radius (x = r y): the feasibility tolerances of HiGHS
    (1e-7 by default) then act on O(1) numbers, so the predicted gain stays accurate even when the
    radius is 1e-10 and the constraint values differ in the 14th digit.

    With ``step_penalty > 0`` an extra variable rho >= |y_i| is added with cost ``step_penalty``:
    among the (often many) optimal steps the LP then returns one of smallest infinity norm.  That
    is the step to the nearest vertex of the linearised problem; without it HiGHS returns a vertex
    of the trust box, the O(r^2) curvature error of the full-radius step swamps the gain near the
    optimum and SLP converges only linearly.
    """
    options = {} if time_left is None else {"time_limit": max(float(time_left), 1.0)}
    n = nv - 1
    bounds = [(-1.0, 1.0)] * n + [(-np.inf, np.inf)]
    b = b / r
    if step_penalty > 0:
        m = A.shape[0]
        eye = sp.identity(n, format="csr")
        col = sp.csr_matrix(-np.ones((n, 1)))
        z1 = sp.csr_matrix((n, 1))
        A = sp.vstack([sp.hstack([A, sp.csr_matrix((m, 1))]),
                       sp.hstack([eye, z1, col]), sp.hstack([-eye, z1, col])], format="csr")
        b = np.concatenate([b, np.zeros(2 * n)])
        cost = np.concatenate([cost, [step_penalty]])
        bounds.append((0.0, 1.0))
    res = linprog(cost, A_ub=A, b_ub=b, bounds=bounds, method=method, options=options)
    if res.x is not None:
        res.x = res.x[:nv] * r
    return res


#: SLP stops when the predicted gain is at most this, or after 3 accepted steps that gained less
TOL = 1e-13
#: cost of the largest step component in the penalised LP (see :func:`_lp`)
STEP_PENALTY = 1e-4


#: one LP may use at most this fraction of the polish's remaining time (at least ``LP_MIN_SECONDS``):
#: an LP that hits its limit counts as a failure and the trust radius shrinks, which shrinks the next LP
#: (only constraints within a multiple of the radius of the extreme one enter it) -- one slow, large LP
#: (e.g. 2400 near-active pairs of a (30, 100) Tammes code) must not eat the whole budget
LP_TIME_FRACTION = 0.25
LP_MIN_SECONDS = 1.0


def _lp_time(t0, time_limit):
    if time_limit is None:
        return None
    left = time_limit - (time.perf_counter() - t0)
    return max(LP_TIME_FRACTION * left, min(LP_MIN_SECONDS, left))


def _slp(state, f, linearise, step, *, max_iter: int, r0: float, time_limit: float | None, on_accept=None):
    """Trust-region SLP driver shared by both problems: maximise ``f`` (the objective's true value).

    ``linearise(state, f, r)`` returns ``(cost, A, b, nv, pred)``: the LP of the module docstring
    at trust radius ``r`` and a function giving the predicted gain of an LP solution ``x``;
    ``step(state, x)`` returns ``(new_state, new_f, largest |step|)``; ``on_accept(f)`` is called
    after every accepted step (an anytime progress curve).  Returns ``(state, f, info)``.
    """
    r = r0
    stall = 0
    penalty = STEP_PENALTY
    t0 = time.perf_counter()
    info = {"iterations": 0, "lp_failures": 0}
    for it in range(max_iter):
        info["iterations"] = it + 1
        cost, A, b, nv, pred_of = linearise(state, f, r)
        # dual simplex for small LPs (exact vertices, fast), interior point for large degenerate ones
        # (e.g. the 6720 active pairs of E8, where simplex stalls for minutes)
        meth = "highs-ds" if A.shape[0] * nv <= 2e6 else "highs-ipm"
        res = _lp(cost, A, b, r, nv, meth, _lp_time(t0, time_limit), penalty)
        if penalty > 0 and res.status == 0 and res.x is not None and pred_of(res.x) <= 1e-9:
            # the penalised LP hides slopes below the penalty: switch to the plain LP from here on
            penalty = 0.0
            res = _lp(cost, A, b, r, nv, meth, _lp_time(t0, time_limit), 0.0)
        if res.status != 0 or res.x is None:
            info["lp_failures"] += 1
            if time_limit is not None and time.perf_counter() - t0 > time_limit:
                info["stopped"] = "time_limit"
                break
            r /= 4
            if r < 1e-13:
                break
            continue
        pred = pred_of(res.x)
        if pred <= TOL:
            break
        new_state, fn, amax = step(state, res.x)
        rho = (fn - f) / pred
        stall = stall + 1 if (0 <= fn - f < TOL and pred < 1e-9) else (stall if fn < f else 0)
        if rho > 0:
            state, f = new_state, fn
            if on_accept is not None:
                on_accept(f)
            if rho > 0.5 and amax > 0.99 * r:
                r = min(2 * r, 0.5)
            elif rho < 0.25:
                r /= 2
        else:
            r /= 4
        if r < 1e-13 or stall >= 3:
            break
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            info["stopped"] = "time_limit"
            break
    info["seconds"] = time.perf_counter() - t0
    info["final_radius"] = r
    return state, f, info


def _sparse_rows(blocks, cols, m: int, p: int, nv: int, t_coef: float):
    """Constraint matrix with, per row i, the p-vectors ``blocks[b][i]`` at columns
    ``cols[b][i]*p .. +p`` and ``t_coef`` in the last column (the objective variable t)."""
    rows = np.repeat(np.arange(m), p)
    ar = np.arange(p)
    data = [B.ravel() for B in blocks] + [np.full(m, t_coef)]
    ri = [rows] * len(blocks) + [np.arange(m)]
    ci = [(c[:, None] * p + ar).ravel() for c in cols] + [np.full(m, nv - 1)]
    return sp.csr_matrix((np.concatenate(data), (np.concatenate(ri), np.concatenate(ci))), shape=(m, nv))


def slp_tammes(X: np.ndarray, *, r0: float = 0.05, time_limit: float | None = None,
               on_accept=None) -> tuple[np.ndarray, float, dict]:
    """Polish a Tammes code (minimise the maximum cosine).  Returns (X, max_cos, info);
    ``on_accept(max_cos)`` is called after every accepted step."""
    X = normalize_rows(X)
    K, d = X.shape
    p = d - 1
    iu = np.triu_indices(K, 1)
    nv = K * p + 1
    cache = {}

    def linearise(X, f, r):
        mu = -f
        c = (X @ X.T)[iu]
        sel = np.nonzero(c >= mu - min(2.0, 4.0 * r + 1e-12))[0]
        I, J = iu[0][sel], iu[1][sel]
        U = tangent_bases(X)
        cache["U"] = U
        A = _sparse_rows([np.einsum("md,mdq->mq", X[J], U[I]), np.einsum("md,mdq->mq", X[I], U[J])],
                         [I, J], len(sel), p, nv, -1.0)
        cost = np.zeros(nv)
        cost[-1] = 1.0
        return cost, A, -c[sel], nv, lambda x: mu - x[-1]

    def step(X, x):
        a = x[:-1].reshape(K, p)
        Xn = normalize_rows(X + np.einsum("kdq,kq->kd", cache["U"], a))
        return Xn, -float((Xn @ Xn.T)[iu].max()), float(np.abs(a).max())

    X, f, info = _slp(X, -float((X @ X.T)[iu].max()), linearise, step, max_iter=400, r0=r0,
                      time_limit=time_limit, on_accept=None if on_accept is None else (lambda f: on_accept(-f)))
    return X, -f, info


def _margins(W: np.ndarray, H: np.ndarray) -> np.ndarray:
    G = H @ W.T
    M = np.diag(G)[:, None] - G
    np.fill_diagonal(M, np.inf)
    return M


def slp_softmax(W: np.ndarray, H: np.ndarray, *, r0: float = 2e-3, time_limit: float | None = None,
                on_accept=None):
    """Polish the joint HardMax problem max_{W,H} min_{k!=j} <h_k, w_k - w_j>.

    Returns (W, H, L, info) with L = the final min margin (a certified lower bound on rho_ovr(W)).
    ``on_accept(L)`` is called after every accepted step with its min margin (also certified).
    """
    W = normalize_rows(W)
    H = normalize_rows(H)
    K, d = W.shape
    p = d - 1
    nv = 2 * K * p + 1
    cache = {}

    def linearise(state, L, r):
        W, H, M = state
        kk, jj = np.nonzero(M <= L + min(4.0, 8.0 * r + 1e-12))
        UW, UH = tangent_bases(W), tangent_bases(H)
        cache.update(UW=UW, UH=UH)
        blocks = [-np.einsum("md,mdq->mq", H[kk], UW[kk]), np.einsum("md,mdq->mq", H[kk], UW[jj]),
                  -np.einsum("md,mdq->mq", W[kk] - W[jj], UH[kk])]
        A = _sparse_rows(blocks, [kk, jj, K + kk], len(kk), p, nv, 1.0)
        cost = np.zeros(nv)
        cost[-1] = -1.0
        return cost, A, M[kk, jj], nv, lambda x: x[-1] - L

    def step(state, x):
        W, H, _ = state
        a = x[:K * p].reshape(K, p)
        b = x[K * p:2 * K * p].reshape(K, p)
        Wn = normalize_rows(W + np.einsum("kdq,kq->kd", cache["UW"], a))
        Hn = normalize_rows(H + np.einsum("kdq,kq->kd", cache["UH"], b))
        Mn = _margins(Wn, Hn)
        return (Wn, Hn, Mn), float(Mn.min()), float(max(np.abs(a).max(), np.abs(b).max()))

    M = _margins(W, H)
    (W, H, _), L, info = _slp((W, H, M), float(M.min()), linearise, step, max_iter=300, r0=r0,
                              time_limit=time_limit, on_accept=on_accept)
    return W, H, L, info


def kkt_residual_tammes(X: np.ndarray, tol: float = 1e-9) -> dict:
    """First-order optimality of a Tammes code (independent of how it was found).

    At a local maximum of the minimum angle, 0 lies in the convex hull of the Riemannian gradients
    of the active cosines c_ij (pairs within ``tol`` of the max).  Returns
    ``kkt_residual = min_{lambda in simplex} || sum lambda_ij grad c_ij ||`` (NNLS with a weighted
    sum-to-one row), the number of active pairs and the multipliers' support size.
    """
    X = normalize_rows(X)
    K, d = X.shape
    C = X @ X.T
    iu = np.triu_indices(K, 1)
    c = C[iu]
    mu = float(c.max())
    sel = np.nonzero(c >= mu - tol)[0]
    I, J = iu[0][sel], iu[1][sel]
    gi = X[J] - c[sel][:, None] * X[I]      # grad wrt x_i of <x_i,x_j>, projected
    gj = X[I] - c[sel][:, None] * X[J]
    return _hull_distance(K * d, d, [(I, gi), (J, gj)], too_large=K * d > 60000)


def _hull_distance(n: int, d: int, parts, too_large: bool) -> dict:
    """Distance from 0 to the convex hull of the gradients of the m active constraints: NNLS with a
    weighted sum-to-one row.  Gradient c is the (n,) vector with, for each (rows, g) of ``parts``,
    g[c] at rows[c] * d .. rows[c] * d + d - 1."""
    m = len(parts[0][0])
    if m > 20000 or too_large:
        return {"kkt_residual": float("nan"), "n_active": int(m), "note": "too large for the KKT check"}
    G = np.zeros((n, m))
    for rows, g in parts:
        np.add.at(G, (rows[:, None] * d + np.arange(d), np.arange(m)[:, None]), g)
    wsum = 1e3
    A = np.vstack([G, wsum * np.ones((1, m))])
    b = np.zeros(n + 1)
    b[-1] = wsum
    lam, _ = nnls(A, b, maxiter=50 * m + 1000)
    s = lam.sum()
    lam = lam / s if s > 0 else lam
    return {"kkt_residual": float(np.linalg.norm(G @ lam)), "n_active": int(m),
            "n_multipliers": int((lam > 1e-12).sum())}


def kkt_residual_softmax(W: np.ndarray, H: np.ndarray, tol: float = 1e-9) -> dict:
    """First-order optimality of the joint (W, H) max-min problem on the active margins."""
    W = normalize_rows(W)
    H = normalize_rows(H)
    K, d = W.shape
    M = _margins(W, H)
    L = float(M.min())
    kk, jj = np.nonzero(M <= L + tol)
    hk = H[kk]
    # d m_kj / d w_k = h_k ; / d w_j = -h_k ; / d h_k = w_k - w_j  (projected onto tangents)
    gwk = hk - np.einsum("md,md->m", hk, W[kk])[:, None] * W[kk]
    gwj = -(hk - np.einsum("md,md->m", hk, W[jj])[:, None] * W[jj])
    dv = W[kk] - W[jj]
    ghk = dv - np.einsum("md,md->m", dv, hk)[:, None] * hk
    return _hull_distance(2 * K * d, d, [(kk, gwk), (jj, gwj), (K + kk, ghk)], too_large=K * d > 60000)

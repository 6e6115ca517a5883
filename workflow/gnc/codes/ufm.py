"""Unconstrained feature model (UFM) on spheres (docs/methods.md §4).

    minimise_{W, H}  (1/(K n)) sum_{k,i} CE( <w_hat_j, h_hat_{k,i}> / tau ,  y = k )

over free features h_{k,i} (n per class, labels ``np.repeat(arange(K), n)``) and classifier rows
w_k, both normalised in the forward pass (so only directions matter).  Adam steps on
the raw parameters, rows re-normalised after every step.  As tau -> 0 the minimisers approach
HardMax solutions, whose W is a softmax code (docs/methods.md §4):
:func:`ufm_tau_sweep` runs a grid of tau and reports how far each W is from a reference code.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..maths import normalize_rows
from ._common import CodeSolution, add_ovr_fields, exact_ovr, min_angle_deg, torch_device
from .tammes import random_sphere


def ufm_labels(K: int, n: int) -> np.ndarray:
    return np.repeat(np.arange(K), n)


def log_mean_ce(Wn: torch.Tensor, Hn: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """log of the mean cross-entropy of the cosine logits ``Hn Wn^T / tau``, accurate when the loss is tiny.

    Per sample, ``CE = log(1 + sum_{j != y} exp(m_j))`` with ``m_j = (cos_j - cos_y) / tau``; it is
    computed as softplus(logsumexp_j m_j) and its log as that exponent itself once it is below -30
    (``log1p(e^s) = e^s`` to float64 precision), so neither the loss (below the resolution of
    ``log(sum exp(z)) - z_y`` once it drops under ~1e-15) nor its gradient is lost.
    """
    Z = (Hn @ Wn.T) / tau
    M = Z - Z.gather(1, y[:, None])
    M = M.masked_fill(torch.nn.functional.one_hot(y, Z.shape[1]).bool(), float("-inf"))
    s = torch.logsumexp(M, dim=1)
    log_ce = torch.where(s < -30, s, torch.log(F.softplus(torch.clamp(s, min=-30))))
    return torch.logsumexp(log_ce, dim=0) - math.log(len(y))


#: a UFM run has stopped changing when one more round of steps moves rho_ovr(W) by at most this
#: (absolute) and the log of the loss by at most ``LOGLOSS_TOL``
OVR_TOL = 1e-6
LOGLOSS_TOL = 1e-3
#: rounds of steps the workflow allows each tau
MAX_ROUNDS = 4


def solve_ufm(d: int, K: int, n: int, tau: float, *, steps: int = 2000, lr: float = 0.05, seed: int = 0,
              device: str = "cpu", init: np.ndarray | None = None, init_H: np.ndarray | None = None,
              max_rounds: int = 1, evaluate_ovr: bool = True) -> CodeSolution:
    """Train the spherical UFM at temperature ``tau``; ``W`` is the classifier, ``H`` the (K n, d) features.

    The steps minimise the log of the mean cross-entropy (:func:`log_mean_ce`; same minimisers as the
    loss, but a gradient that does not vanish as tau -> 0: on the loss itself it falls below Adam's
    eps at tau = 0.02 and the iterates freeze).  Rounds of ``steps`` steps (each with its own cosine
    learning-rate decay) repeat until a round changes rho_ovr(W) by at most ``OVR_TOL`` and the log
    loss by at most ``LOGLOSS_TOL`` (``certificate["converged"]``), at most ``max_rounds`` times.

    ``value`` = exact rho_ovr(W).  ``certificate`` holds the final loss, the rounds run, the last
    round's changes and the collapse measures of :func:`_collapse`.
    """
    t_start = time.perf_counter()
    dev = torch_device(device)
    V, Hf = _ufm_start(d, K, n, seed, dev, init, init_H)
    y = torch.as_tensor(ufm_labels(K, n), device=dev)

    def objective():
        return log_mean_ce(F.normalize(V, dim=1), F.normalize(Hf, dim=1), y, tau)

    def ovr_now():
        res = exact_ovr(normalize_rows(V.detach().cpu().numpy().astype(np.float64))) if evaluate_ovr else None
        return float("nan") if res is None else float(res.value)

    with torch.no_grad():
        prev_log = float(objective())
    prev_ovr = ovr_now()
    rounds, converged, d_ovr, d_log = 0, False, float("nan"), float("nan")
    while rounds < max(int(max_rounds), 1):
        _ufm_steps([V, Hf], objective, steps=steps, lr=lr)
        rounds += 1
        with torch.no_grad():
            cur_log = float(objective())
        cur_ovr = ovr_now()
        d_ovr, d_log = abs(cur_ovr - prev_ovr), abs(cur_log - prev_log)
        prev_ovr, prev_log = cur_ovr, cur_log
        if d_ovr <= OVR_TOL and d_log <= LOGLOSS_TOL:
            converged = True
            break
    W = normalize_rows(F.normalize(V.detach(), dim=1).cpu().numpy().astype(np.float64))
    H = normalize_rows(F.normalize(Hf.detach(), dim=1).cpu().numpy().astype(np.float64))
    log_loss = prev_log                                 # of the final parameters
    cert = {"loss": math.exp(log_loss), "log_loss": log_loss, **_collapse(W, H, K, n), "rounds": rounds,
            "steps": rounds * steps, "converged": converged, "last_round_ovr_change": d_ovr,
            "last_round_log_loss_change": d_log}
    ovr = add_ovr_fields(cert, exact_ovr(W) if evaluate_ovr else None)
    settings = dict(n=n, tau=tau, steps=steps, max_rounds=max_rounds, lr=lr, optimizer="adam", lr_decay=True,
                    device=str(dev), dtype=str(torch.float64), labels="np.repeat(arange(K), n)",
                    objective="log mean CE")
    return CodeSolution(W=W, problem="ufm", d=d, K=K, value=ovr, min_angle_deg=min_angle_deg(W), ovr=ovr,
                        certificate=cert, settings=settings, seed=seed, seconds=time.perf_counter() - t_start,
                        H=H)


def _ufm_start(d: int, K: int, n: int, seed: int, dev, init, init_H) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainable (K, d) classifier and (K n, d) features, float64 unit rows: random or given."""
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    V = random_sphere(1, K, d, seed, torch.float64, dev)[0]
    if init is not None:
        V = torch.as_tensor(normalize_rows(init), dtype=torch.float64, device=dev)
    Hf = torch.randn(K * n, d, generator=g, dtype=torch.float64).to(dev)
    if init_H is not None:
        Hf = torch.as_tensor(normalize_rows(init_H), dtype=torch.float64, device=dev)
    Hf = Hf / Hf.norm(dim=1, keepdim=True)
    V.requires_grad_(True)
    Hf.requires_grad_(True)
    return V, Hf


def _ufm_steps(params: list, objective, *, steps: int, lr: float) -> None:
    """One round: ``steps`` steps of a fresh Adam on ``objective()`` with cosine learning-rate decay,
    every row of the parameters re-normalised after each step."""
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        loss = objective()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for p in params:
                p /= p.norm(dim=1, keepdim=True)


def _collapse(W: np.ndarray, H: np.ndarray, K: int, n: int) -> dict:
    """Within-class feature variability (mean 1 - cos(h, its class mean direction)) and self-duality
    error (mean 1 - cos(w_k, class mean direction of class k)) of unit rows W and features H."""
    labels = ufm_labels(K, n)
    mdir = normalize_rows(np.stack([H[labels == k].mean(0) for k in range(K)]))
    return {"feature_variability": float(np.mean(1.0 - np.einsum("nd,nd->n", H, mdir[labels]))),
            "self_duality_error": float(np.mean(1.0 - np.einsum("kd,kd->k", W, mdir)))}


def ufm_tau_sweep(d: int, K: int, n: int, taus, *, reference: CodeSolution | None = None, seed: int = 0,
                  warm_start: bool = True, **kwargs):
    """Run :func:`solve_ufm` for every tau; returns ``(xr.Dataset over ufm_tau, [CodeSolution])``.

    With ``warm_start`` (default) the taus are run from the largest to the smallest and each run
    starts from the previous solution (continuation in tau): at small tau the loss is nearly flat
    for correctly classified samples and a cold start stalls far from the optimum.

    With a ``reference`` softmax code, every tau is also run from that code (``probe``: W = the
    code, every feature of class k = w_k): when the probe ends at a lower loss than the
    continuation, the continuation is stuck in a worse local minimum of the UFM at that tau
    (``stuck`` = 1); when it ends at a higher or equal loss, the continuation's value is what the UFM
    gives at that tau.  Both runs go to convergence (``converged``) or ``max_rounds``.
    """
    import xarray as xr

    taus = [float(t) for t in taus]
    by_tau = {}
    prev = None
    for t in (sorted(set(taus), reverse=True) if warm_start else taus):
        kw = dict(kwargs)
        if warm_start and prev is not None:
            kw.update(init=prev.W, init_H=prev.H)
        prev = by_tau[t] = solve_ufm(d, K, n, t, seed=seed, **kw)
    sols = [by_tau[t] for t in taus]
    one = "1"
    data = {
        "ovr": ([s.ovr for s in sols], "exact min one-vs-rest distance of the UFM classifier W", one),
        "min_angle": ([s.min_angle_deg for s in sols], "minimum pairwise angle of the UFM classifier W", "degree"),
        "loss": ([s.certificate["loss"] for s in sols], "final mean cross-entropy of the UFM", one),
        "feature_variability": ([s.certificate["feature_variability"] for s in sols],
                                "mean 1 - cos(feature, its class mean direction)", one),
        "self_duality_error": ([s.certificate["self_duality_error"] for s in sols],
                               "mean 1 - cos(w_k, class mean direction of class k)", one),
        "steps": ([s.certificate["steps"] for s in sols], "optimizer steps run at this temperature", one),
        "converged": ([int(s.certificate["converged"]) for s in sols],
                      f"1 when the last round of steps changed rho_ovr by <= {OVR_TOL:g} and log loss by "
                      f"<= {LOGLOSS_TOL:g}", one),
        "last_round_ovr_change": ([s.certificate["last_round_ovr_change"] for s in sols],
                                  "change of rho_ovr over the last round of steps", one),
        "seconds": ([s.seconds for s in sols], "wall time of the UFM run", "s"),
    }
    attrs = {"d": d, "K": K, "n": n, "seed": seed, "warm_start": int(warm_start)}
    if reference is not None:
        code = normalize_rows(reference.W)
        probes = [solve_ufm(d, K, n, t, seed=seed, init=code, init_H=np.repeat(code, n, axis=0), **kwargs)
                  for t in taus]
        data["probe_ovr"] = ([p.ovr for p in probes], "rho_ovr of the UFM run started at the softmax code", one)
        data["probe_loss"] = ([p.certificate["loss"] for p in probes],
                              "final mean cross-entropy of the UFM run started at the softmax code", one)
        data["probe_converged"] = ([int(p.certificate["converged"]) for p in probes],
                                   "1 when the run started at the softmax code converged", one)
        data["stuck"] = ([int(p.certificate["log_loss"] < s.certificate["log_loss"] - LOGLOSS_TOL)
                          for p, s in zip(probes, sols)],
                         "1 when the run started at the softmax code reaches a lower loss: the continuation "
                         "is in a worse local minimum", one)
        data["ovr_ratio"] = ([s.ovr / reference.value for s in sols], "ufm_ovr / rho_ovr of the reference code", one)
        attrs["reference_value"] = float(reference.value)
        attrs["reference_problem"] = reference.problem
    ds = xr.Dataset({f"ufm_{k}": xr.DataArray(v[0], dims="ufm_tau", attrs={"long_name": v[1], "units": v[2]})
                     for k, v in data.items()},
                    coords={"ufm_tau": ("ufm_tau", taus, {"long_name": "UFM softmax temperature", "units": "1"})},
                    attrs=attrs)
    return ds, sols

"""Unconstrained feature model (UFM) on spheres (docs/methods.md §4).

    minimise_{W, H}  (1/(K n)) sum_{k,i} CE( <w_hat_j, h_hat_{k,i}> / tau ,  y = k )

over free features h_{k,i} (n per class, labels ``np.repeat(arange(K), n)``) and classifier rows
w_k, both normalised in the forward pass (so only directions matter).  Adam (default) or SGD on
the raw parameters, rows re-normalised after every step.  As tau -> 0 the minimisers approach
HardMax solutions, whose W is a softmax code (docs/methods.md §4):
:func:`ufm_tau_sweep` runs a grid of tau and reports how far each W is from a reference code.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ._common import CodeSolution, exact_ovr, min_angle_deg, normalize_rows, ovr_fields, torch_device
from .tammes import random_sphere


def ufm_labels(K: int, n: int) -> np.ndarray:
    return np.repeat(np.arange(K), n)


def solve_ufm(d: int, K: int, n: int, tau: float, *, steps: int = 2000, lr: float = 0.05,
              optimizer: str = "adam", seed: int = 0, device: str = "cpu", dtype=torch.float64,
              init: np.ndarray | None = None, init_H: np.ndarray | None = None, lr_decay: bool = True,
              evaluate_ovr: bool = True) -> CodeSolution:
    """Train the spherical UFM at temperature ``tau``; ``W`` is the classifier, ``H`` the (K n, d) features.

    ``value`` = exact rho_ovr(W).  ``certificate`` holds the final loss, the within-class feature
    variability (mean 1 - cos(h, class mean direction)) and the self-duality error
    (mean 1 - cos(w_k, class mean of class k)).
    """
    t_start = time.perf_counter()
    dev = torch_device(device)
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    V = random_sphere(1, K, d, seed, dtype, dev)[0]
    if init is not None:
        V = torch.as_tensor(normalize_rows(init), dtype=dtype, device=dev)
    Hf = torch.randn(K * n, d, generator=g, dtype=torch.float64).to(device=dev, dtype=dtype)
    if init_H is not None:
        Hf = torch.as_tensor(normalize_rows(init_H), dtype=dtype, device=dev)
    Hf = Hf / Hf.norm(dim=1, keepdim=True)
    V.requires_grad_(True)
    Hf.requires_grad_(True)
    y = torch.as_tensor(ufm_labels(K, n), device=dev)
    if optimizer == "adam":
        opt = torch.optim.Adam([V, Hf], lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD([V, Hf], lr=lr, momentum=0.9)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if lr_decay else None
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        Wn = F.normalize(V, dim=1)
        Hn = F.normalize(Hf, dim=1)
        loss = F.cross_entropy(Hn @ Wn.T / tau, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        with torch.no_grad():
            V /= V.norm(dim=1, keepdim=True)
            Hf /= Hf.norm(dim=1, keepdim=True)
    with torch.no_grad():
        Wn = F.normalize(V, dim=1)
        Hn = F.normalize(Hf, dim=1)
        final_loss = float(F.cross_entropy(Hn @ Wn.T / tau, y))
    W = normalize_rows(Wn.detach().cpu().numpy().astype(np.float64))
    H = normalize_rows(Hn.detach().cpu().numpy().astype(np.float64))
    labels = ufm_labels(K, n)
    means = np.stack([H[labels == k].mean(0) for k in range(K)])
    mdir = normalize_rows(means)
    variability = float(np.mean(1.0 - np.einsum("nd,nd->n", H, mdir[labels])))
    self_dual = float(np.mean(1.0 - np.einsum("kd,kd->k", W, mdir)))
    res = exact_ovr(W) if evaluate_ovr else None
    of = ovr_fields(res)
    cert = {"loss": final_loss, "feature_variability": variability, "self_duality_error": self_dual}
    cert.update({k: v for k, v in of.items() if k != "ovr"})
    settings = dict(n=n, tau=tau, steps=steps, lr=lr, optimizer=optimizer, lr_decay=lr_decay, device=str(dev),
                    dtype=str(dtype), labels="np.repeat(arange(K), n)")
    return CodeSolution(W=W, problem="ufm", d=d, K=K, value=float(of["ovr"]), min_angle_deg=min_angle_deg(W),
                        ovr=float(of["ovr"]), certificate=cert, settings=settings, seed=seed,
                        seconds=time.perf_counter() - t_start, H=H)


def ufm_tau_sweep(d: int, K: int, n: int, taus, *, reference: CodeSolution | None = None, seed: int = 0,
                  align_starts: int = 8, warm_start: bool = True, **kwargs):
    """Run :func:`solve_ufm` for every tau; returns ``(xr.Dataset over tau, [CodeSolution])``.

    With ``warm_start`` (default) the taus are run from the largest to the smallest and each run
    starts from the previous solution (continuation in tau): at small tau the loss is nearly flat
    for correctly classified samples and a cold start stalls far from the optimum.

    Variables: ``ovr`` (exact rho_ovr of W), ``min_angle``, ``loss``, ``feature_variability``,
    ``self_duality_error`` and, with a ``reference`` code, ``ovr_gap = reference.value - ovr`` and
    ``align_distance`` (Frobenius distance to the reference after the best rotation/reflection and
    relabelling, :func:`gnc.codes.compare.align_to_code`, divided by sqrt(K)).
    """
    import xarray as xr

    from .compare import align_to_code

    taus = [float(t) for t in taus]
    by_tau = {}
    prev = None
    for t in (sorted(set(taus), reverse=True) if warm_start else taus):
        kw = dict(kwargs)
        if warm_start and prev is not None:
            kw.update(init=prev.W, init_H=prev.H)
        prev = by_tau[t] = solve_ufm(d, K, n, t, seed=seed, **kw)
    sols = [by_tau[t] for t in taus]
    data = {
        "ovr": ("tau", [s.ovr for s in sols], {"long_name": "exact min one-vs-rest distance of W"}),
        "min_angle": ("tau", [s.min_angle_deg for s in sols], {"units": "degree"}),
        "loss": ("tau", [s.certificate["loss"] for s in sols]),
        "feature_variability": ("tau", [s.certificate["feature_variability"] for s in sols]),
        "self_duality_error": ("tau", [s.certificate["self_duality_error"] for s in sols]),
        "seconds": ("tau", [s.seconds for s in sols], {"units": "s"}),
    }
    attrs = {"d": d, "K": K, "n": n, "seed": seed, "warm_start": int(warm_start)}
    if reference is not None:
        data["ovr_gap"] = ("tau", [reference.value - s.ovr for s in sols])
        data["align_distance"] = ("tau", [align_to_code(s.W, reference.W, starts=align_starts, seed=seed)[0]
                                          / np.sqrt(K) for s in sols])
        attrs["reference_value"] = float(reference.value)
        attrs["reference_problem"] = reference.problem
    ds = xr.Dataset({k: xr.DataArray(v[1], dims=v[0], attrs=v[2] if len(v) > 2 else {}) for k, v in data.items()},
                    coords={"tau": taus}, attrs=attrs)
    return ds, sols

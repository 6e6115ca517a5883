r"""GNC and NC metrics of one checkpoint, from streaming statistics.

Two conventions, both computed (docs/methods.md §5, §6):

* **GNC metrics** (Jiang et al.) use **L2-normalized** features ĥ and rows ŵ_k of W, no bias:
  ``gnc1`` = tr(Σ_W Σ_B^†)/K on ĥ; ``gnc2`` = ρ_ovr(Ŵ) = min_k dist(ŵ_k, conv{ŵ_j, j≠k}) (exact, with
  certificate, :mod:`gnc.metrics.ovr`); ``gnc3`` = mean_k (1 − cos(μ̂_k − μ̂_G, ŵ_k)) with class means
  centred by the global mean (the reference code), ``gnc3_uncentered`` = mean_k (1 − cos(μ̂_k, ŵ_k));
  ``ncc_train_acc`` / ``ncc_test_acc`` = nearest-class-centre accuracy on ĥ with the training means;
  ``min_angle`` = min_{j≠k} ∠(ŵ_j, ŵ_k) in degrees.
* **Papyan NC1–NC4** (Papyan, Han & Donoho 2020) use **raw** features h and raw W (+ bias b for the
  ``linear`` head): ``nc1`` = tr(Σ_W Σ_B^†)/K; ``nc2_equinorm_*`` = Std_k/Avg_k of ||μ_k − μ_G|| and
  of ||w_k||; ``nc2_equiangular_*`` = Std over pairs k≠k' of cos(μ̃_k, μ̃_k') and of cos(w_k, w_k');
  ``nc2_maxangle_*`` = Avg over pairs |cos + 1/(K−1)|; ``nc3`` = ||W/||W||_F − M̃/||M̃||_F||²_F
  (squared Frobenius, global normalization; M̃ rows μ_k − μ_G); ``nc4`` = fraction of training samples
  whose NCC label (raw features) differs from the classifier's decision.

Definitions shared by both: μ_k class means, μ_G the sample mean, Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(…)ᵀ,
Σ_B = (1/K) Σ_k (μ_k − μ_G)(μ_k − μ_G)ᵀ (unweighted over classes). Stds are population stds
(ddof = 0). Classifier decisions: ``normalized``/``cmf`` heads argmax_k cos(w_k, h); ``linear``
argmax_k <w_k, h> + b_k. ``train_acc``/``test_acc`` are the classifier's accuracies.

**Pseudo-inverse.** Σ_B is symmetric PSD; :func:`trace_pinv` eigen-decomposes it and keeps the
eigenvalues λ > ``pinv_rtol``·λ_max (at most K−1 of them, the rank of Σ_B), so
tr(Σ_W Σ_B^†) = Σ_kept (vᵀ Σ_W v)/λ with each numerator clipped at 0: the result is never negative
(the "NC is negative?" failure of unstable pinv). Default ``pinv_rtol = 1e-10``.

Every output variable carries CF-style ``units`` and ``long_name`` attributes; per-class variables
``ovr_dist``, ``ovr_gap``, ``ovr_certified``, ``gnc3_per_class``, ``n_train`` are over dim ``k``. No
NaN is returned silently: missing pieces (no test split: a ``comment`` attribute says so; Σ_B = 0)
give NaN together with a ``RuntimeWarning``; a one-vs-rest distance that could not be certified is NaN
with ``ovr_certified = 0`` (and so are ``gnc2``, ``gnc2_mean``, ``gnc2_gap``), and
:func:`require_certified` raises naming the classes.

Cost: the streams are O(N·d²) for the scatter plus O(N·K·d) for the NCC / classifier predictions;
GNC2 see :func:`gnc.metrics.ovr.ovr_distances`; memory O(K·d + d²) besides the input batches.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Iterable

import numpy as np
import torch
import xarray as xr

from .accumulators import NCStats, NCStream, as_float64
from ..maths import check_finite_rows, normalize_rows
from .ovr import UncertifiedError, ovr_distances

__all__ = ["METRIC_ATTRS", "SCALAR_METRICS", "require_certified", "trace_pinv", "pairwise_cosine_stats", "gnc3_cosines",
           "nc3_self_duality", "compute_metrics", "checkpoint_metrics", "metrics_from_stats"]

DEFAULT_PINV_RTOL = 1e-10

# name -> (units, long_name)
METRIC_ATTRS: dict[str, tuple[str, str]] = {
    "gnc1": ("1", "GNC1 within-class variability collapse tr(Sigma_W Sigma_B^+)/K on L2-normalized features"),
    "gnc2": ("1", "GNC2 minimal one-vs-rest distance rho_ovr of the normalized classifier (exact QP)"),
    "gnc2_mean": ("1", "mean over classes of the one-vs-rest distance of the normalized classifier"),
    "gnc2_lower": ("1", "cheap lower bound of GNC2: 1 - max pairwise cosine of the normalized classifier"),
    "gnc2_upper": ("1", "cheap upper bound of GNC2: min pairwise distance of the normalized classifier"),
    "gnc2_gap": ("1", "certified duality gap of GNC2: gnc2 - min_k certified lower bound of dist_k"),
    "gnc3": ("1", "GNC3 self-duality mean_k (1 - cos(mu_k - mu_G, w_k)) on normalized features, centred means"),
    "gnc3_uncentered": ("1", "GNC3 self-duality mean_k (1 - cos(mu_k, w_k)) on normalized features, uncentred means"),
    "nc1": ("1", "Papyan NC1 tr(Sigma_W Sigma_B^+)/K on raw features"),
    "nc2_equinorm_means": ("1", "Papyan NC2 equinorm: std/mean of ||mu_k - mu_G|| (raw features)"),
    "nc2_equinorm_weights": ("1", "Papyan NC2 equinorm: std/mean of ||w_k|| (raw classifier)"),
    "nc2_equiangular_means": ("1", "Papyan NC2 equiangularity: std of pairwise cosines of centred class means"),
    "nc2_equiangular_weights": ("1", "Papyan NC2 equiangularity: std of pairwise cosines of classifier rows"),
    "nc2_maxangle_means": ("1", "Papyan NC2 maximal angle: mean |cos + 1/(K-1)| of centred class means"),
    "nc2_maxangle_weights": ("1", "Papyan NC2 maximal angle: mean |cos + 1/(K-1)| of classifier rows"),
    "nc3": ("1", "Papyan NC3 self-duality ||W/||W||_F - M/||M||_F||_F^2 (squared Frobenius, centred means)"),
    "nc4": ("1", "Papyan NC4 fraction of training samples where NCC (raw features) != classifier decision"),
    "ncc_train_acc": ("1", "nearest-class-centre accuracy on the training split (L2-normalized features)"),
    "ncc_test_acc": ("1", "nearest-class-centre accuracy on the test split (training means, L2-normalized features)"),
    "train_acc": ("1", "classifier accuracy on the training split"),
    "test_acc": ("1", "classifier accuracy on the test split"),
    "min_angle": ("degree", "minimal pairwise angle between normalized classifier rows"),
    "ovr_dist": ("1", "one-vs-rest distance of each normalized classifier row to the hull of the others"),
    "ovr_gap": ("1", "certified duality gap of each one-vs-rest distance"),
    "ovr_certified": ("1", "1 where the one-vs-rest distance is certified (gap within tolerance), 0 where it "
                           "could not be (ovr_dist is NaN there)"),
    "gnc3_per_class": ("1", "1 - cos(mu_k - mu_G, w_k) per class (normalized features, centred means)"),
    "n_train": ("1", "number of training samples per class"),
}
PER_CLASS_METRICS = ("ovr_dist", "ovr_gap", "ovr_certified", "gnc3_per_class", "n_train")  # over dim k
SCALAR_METRICS = tuple(name for name in METRIC_ATTRS if name not in PER_CLASS_METRICS)


# ------------------------------------------------------------------------------- measures

def trace_pinv(Sigma_W: np.ndarray, Sigma_B: np.ndarray, *, rtol: float = DEFAULT_PINV_RTOL,
               max_rank: int | None = None) -> float:
    """tr(Σ_W Σ_B^†) with an explicit eigenvalue cut-off (never negative).

    Σ_B = V diag(λ) Vᵀ (``numpy.linalg.eigh``); kept: λ > rtol·λ_max, at most ``max_rank`` largest.
    Returns Σ_kept max(0, v_iᵀ Σ_W v_i)/λ_i. Σ_B = 0 gives NaN with a RuntimeWarning.
    """
    Sigma_B = 0.5 * (Sigma_B + Sigma_B.T)
    evals, evecs = np.linalg.eigh(Sigma_B)
    lam_max = evals[-1]
    if not lam_max > 0:
        warnings.warn("Sigma_B is zero (all class means coincide): tr(Sigma_W Sigma_B^+) is undefined",
                      RuntimeWarning, stacklevel=2)
        return math.nan
    keep = evals > rtol * lam_max
    if max_rank is not None and keep.sum() > max_rank:
        keep[: len(evals) - max_rank] = False  # eigh sorts ascending: keep the largest max_rank
    V = evecs[:, keep]
    quad = np.einsum("ij,ik,kj->j", V, Sigma_W, V)
    return float(np.sum(np.maximum(quad, 0.0) / evals[keep]))


def pairwise_cosine_stats(X, *, shift: float, max_block_elems: int = 1 << 24, device=None) -> tuple[float, float]:
    """(std, mean |cos + shift|) of cos(x_i, x_j) over ordered pairs i ≠ j, by row blocks.

    Exact float64; blocks (≤ ``max_block_elems`` entries of the cosine matrix) are merged with
    Chan's parallel variance formula, so the K×K matrix is never formed.
    """
    Xn = torch.as_tensor(normalize_rows(X, what="vectors"), device=device)
    K = Xn.shape[0]
    if K < 2:
        return math.nan, math.nan
    block = int(max(1, min(K, max_block_elems // K)))
    n_tot, mean_tot, m2_tot, abs_sum = 0, 0.0, 0.0, 0.0
    for r0 in range(0, K, block):
        r1 = min(K, r0 + block)
        S = Xn[r0:r1] @ Xn.T
        ar = torch.arange(r1 - r0, device=S.device)
        diag = S[ar, ar + r0]
        n = S.numel() - diag.numel()
        mu = float(S.sum() - diag.sum()) / n
        m2 = float(((S - mu) ** 2).sum() - ((diag - mu) ** 2).sum())
        abs_sum += float((S + shift).abs().sum() - (diag + shift).abs().sum())
        delta = mu - mean_tot
        tot = n_tot + n
        mean_tot += delta * n / tot
        m2_tot += m2 + delta * delta * n_tot * n / tot
        n_tot = tot
    return math.sqrt(max(m2_tot / n_tot, 0.0)), abs_sum / n_tot


def _cv(x: np.ndarray) -> float:
    """Coefficient of variation std/mean (population std)."""
    m = float(np.mean(x))
    return float(np.std(x) / m) if m > 0 else math.nan


def gnc3_cosines(means: np.ndarray, mu_G: np.ndarray | None, W: np.ndarray) -> np.ndarray:
    """cos(μ_k − μ_G, w_k) per class (μ_G = None: uncentred)."""
    M = means - mu_G if mu_G is not None else means
    Mn = normalize_rows(M, what="class means" + (" (centred)" if mu_G is not None else ""))
    return np.sum(Mn * normalize_rows(W), axis=1)


def nc3_self_duality(W: np.ndarray, means: np.ndarray, mu_G: np.ndarray) -> float:
    """||W/||W||_F − M̃/||M̃||_F||²_F with M̃ rows μ_k − μ_G (Papyan NC3, squared Frobenius)."""
    M = means - mu_G
    nW, nM = np.linalg.norm(W), np.linalg.norm(M)
    if nW == 0 or nM == 0:
        warnings.warn("NC3 undefined: zero classifier or zero centred means", RuntimeWarning, stacklevel=2)
        return math.nan
    return float(np.sum((W / nW - M / nM) ** 2))


# ------------------------------------------------------------------------------- assembly

def _var(value, name, dims=(), comment=None):
    units, long_name = METRIC_ATTRS[name]
    attrs = {"units": units, "long_name": long_name}
    if comment:
        attrs["comment"] = comment
    return xr.Variable(dims, np.asarray(value, dtype=np.float64), attrs)


def metrics_from_stats(gstats: NCStats, rstats: NCStats, W, *, head: str = "normalized",
                       pinv_rtol: float = DEFAULT_PINV_RTOL, device=None,
                       ovr_kwargs: dict | None = None) -> xr.Dataset:
    """All metrics from the normalized-feature stats ``gstats`` and the raw-feature stats ``rstats`` of
    the classifier ``W`` (K, d) (a bias enters through the predictions in ``rstats``)."""
    W = np.asarray(W.detach().cpu().numpy() if isinstance(W, torch.Tensor) else W, dtype=np.float64)
    K = W.shape[0]
    Wn = normalize_rows(W)
    gnc1 = trace_pinv(gstats.Sigma_W, gstats.Sigma_B, rtol=pinv_rtol, max_rank=K - 1) / K
    t0 = time.perf_counter()
    ovr = ovr_distances(W, device=device, **(ovr_kwargs or {}))
    attrs = {"gnc_metrics_head": head, "gnc_metrics_pinv_rtol": pinv_rtol, "gnc_metrics_gnc2_method": "exact",
             "gnc_metrics_N_train": gstats.N, "gnc_metrics_ovr_info": dict(ovr.info),
             "gnc_metrics_gnc2_seconds": time.perf_counter() - t0}
    cos_c = gnc3_cosines(gstats.means, gstats.mu_G, Wn)
    cos_u = gnc3_cosines(gstats.means, None, Wn)
    nc1 = trace_pinv(rstats.Sigma_W, rstats.Sigma_B, rtol=pinv_rtol, max_rank=K - 1) / K
    Mc = rstats.means - rstats.mu_G
    sm, am = pairwise_cosine_stats(Mc, shift=1.0 / (K - 1), device=device)
    sw, aw = pairwise_cosine_stats(W, shift=1.0 / (K - 1), device=device)
    nc3 = nc3_self_duality(W, rstats.means, rstats.mu_G)
    no_test = "test" not in gstats.ncc_accuracy
    if no_test:
        warnings.warn("no test split was given: ncc_test_acc and test_acc are NaN", RuntimeWarning,
                      stacklevel=2)
    scalars = {"gnc1": gnc1, "gnc2": ovr.dist.min(), "gnc2_mean": ovr.dist.mean(),
               "gnc2_lower": ovr.lower.min(), "gnc2_upper": ovr.upper.min(), "gnc2_gap": ovr.value_gap,
               "gnc3": np.mean(1 - cos_c), "gnc3_uncentered": np.mean(1 - cos_u), "nc1": nc1,
               "nc2_equinorm_means": _cv(np.linalg.norm(Mc, axis=1)),
               "nc2_equinorm_weights": _cv(np.linalg.norm(W, axis=1)),
               "nc2_equiangular_means": sm, "nc2_equiangular_weights": sw, "nc2_maxangle_means": am,
               "nc2_maxangle_weights": aw, "nc3": nc3, "nc4": rstats.ncc_classifier_mismatch,
               "ncc_train_acc": gstats.ncc_accuracy["train"],
               "ncc_test_acc": gstats.ncc_accuracy.get("test", math.nan),
               "train_acc": rstats.accuracy["train"], "test_acc": rstats.accuracy.get("test", math.nan),
               "min_angle": np.degrees(np.arccos(np.clip(ovr.max_cos.max(), -1.0, 1.0)))}
    per_class = {"ovr_dist": ovr.dist, "ovr_gap": ovr.gap, "ovr_certified": ovr.certified.astype(np.float64),
                 "gnc3_per_class": 1 - cos_c, "n_train": gstats.counts}
    test_comment = "no test split" if no_test else None
    data = {name: _var(value, name, comment=test_comment if name in ("ncc_test_acc", "test_acc") else None)
            for name, value in scalars.items()}
    data.update({name: _var(value, name, ("k",)) for name, value in per_class.items()})
    return xr.Dataset(data, coords={"k": np.arange(K)}, attrs=attrs)


def compute_metrics(batches: Callable[[str], Iterable | None], W, b=None, *, head: str = "normalized",
                    pinv_rtol: float = DEFAULT_PINV_RTOL, device=None,
                    ovr_kwargs: dict | None = None) -> xr.Dataset:
    """Run the streaming passes over user-supplied batches and return the metrics Dataset.

    ``batches(split)`` must return a fresh iterable of ``(h, y)`` pairs (numpy or torch; raw
    penultimate features, labels in [0, K)) for ``split`` in ``"train"`` (called twice: the two
    passes must yield the same samples) and ``"test"`` (called once; may return None). ``W`` (K, d)
    and ``b`` (K,) are the classifier; ``head`` in {"normalized", "linear", "cmf"}. Memory O(K·d + d²).
    """
    W_t = as_float64(W, "cpu")
    K, d = W_t.shape
    b_use = b if head == "linear" else None
    g = NCStream(K, d, normalize=True, W=None, head=head, device=device)  # NCC on ĥ only (no classifier)
    r = NCStream(K, d, normalize=False, W=W_t, b=b_use, head=head, device=device)
    for h, y in batches("train"):
        g.update(h, y)
        r.update(h, y)
    g.end_first_pass()
    r.end_first_pass()
    for h, y in batches("train"):
        g.update_second(h, y)
        r.update_second(h, y)
    test = batches("test")
    if test is not None:
        for h, y in test:
            g.update_eval(h, y, "test")
            r.update_eval(h, y, "test")
    return metrics_from_stats(g.result(), r.result(), W_t.numpy(), head=head, pinv_rtol=pinv_rtol,
                              device=device, ovr_kwargs=ovr_kwargs)


def checkpoint_metrics(features_ds: xr.Dataset, *, pinv_rtol: float = DEFAULT_PINV_RTOL,
                       batch_size: int = 8192, device=None, ovr_kwargs: dict | None = None) -> xr.Dataset:
    """Metrics of one checkpoint from its features Dataset (ARCHITECTURE.md, ``gnc.features``).

    ``features_ds``: ``train_h (train_sample, component)``, ``train_y``, ``test_h``, ``test_y``,
    ``W (k, component)``, ``b (k)``; attrs ``head`` in {normalized, linear, cmf} (and ``tau``).
    Returns the variables of :data:`SCALAR_METRICS` and, over ``k``, :data:`PER_CLASS_METRICS`; see the
    module docstring for definitions.
    Raises FloatingPointError for non-finite features (naming the count of bad rows) and
    ValueError for a class without training samples (naming it).
    """
    head = str(features_ds.attrs.get("head", "normalized"))
    W = np.asarray(features_ds["W"].values, dtype=np.float64)
    b = np.asarray(features_ds["b"].values, dtype=np.float64) if "b" in features_ds else None
    check_finite_rows(W, "W")
    arrays = {}
    if "train_h" not in features_ds:
        raise ValueError("features dataset has no train_h")
    for split in [name for name in ("train", "test") if f"{name}_h" in features_ds]:
        h = np.asarray(features_ds[f"{split}_h"].values)
        y = np.asarray(features_ds[f"{split}_y"].values)
        check_finite_rows(h, f"{split}_h")
        arrays[split] = (h, y)

    def batches(split):
        if split not in arrays:
            return None
        h, y = arrays[split]
        return ((h[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size))

    ds = compute_metrics(batches, W, b, head=head, pinv_rtol=pinv_rtol, device=device, ovr_kwargs=ovr_kwargs)
    if "k" in features_ds.coords:
        ds = ds.assign_coords(k=features_ds["k"].values)
    for key in ("head", "tau"):
        if key in features_ds.attrs:
            ds.attrs[f"gnc_metrics_{key}"] = features_ds.attrs[key]
    # the features' own attributes (dataset, checkpoint, ...); the provenance of this computation (code
    # version, host, times) is added by whoever writes the result file (workflow/scripts/metrics.py)
    for key, value in features_ds.attrs.items():
        if key.startswith("gnc_") and key not in ds.attrs:
            ds.attrs[key] = value
    ds.attrs["gnc_metrics_batch_size"] = batch_size
    return ds


def require_certified(ds: xr.Dataset, what: str) -> xr.Dataset:
    """Return ``ds``, or raise :class:`~gnc.metrics.ovr.UncertifiedError` naming the classes whose
    exact one-vs-rest distance could not be certified (``ovr_certified == 0``)."""
    flag = np.asarray(ds["ovr_certified"].values)  # (k,), or stacked over epochs (epoch, k)
    bad = np.flatnonzero((flag.reshape(-1, flag.shape[-1]) == 0).any(0))
    if bad.size:
        raise UncertifiedError(f"{what}: GNC2 one-vs-rest distance of class(es) {bad[:20].tolist()} could not be "
                               f"certified even by the exact fallback solver; refusing to write metrics "
                               f"(ovr_dist is NaN there)")
    return ds

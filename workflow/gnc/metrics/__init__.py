"""Neural-collapse metrics: exact one-vs-rest distances (GNC2), streaming NC/GNC statistics.

- :mod:`gnc.metrics.ovr` — :func:`ovr_distances` (exact distance of each normalized class vector to
  the convex hull of the others, with a per-class duality-gap certificate), the reference
  sub-gradient estimator :func:`ovr_subgradient`.
- :mod:`gnc.metrics.accumulators` — :class:`NCStream`, a two-pass float64 accumulator fed batch by
  batch (numpy or torch, CPU or CUDA), memory O(K·d + d²).
- :mod:`gnc.metrics.measures` — GNC1–3 and Papyan NC1–4 from the streams,
  :func:`compute_metrics` (your own batches) and :func:`checkpoint_metrics` (a features Dataset) →
  ``xr.Dataset`` with the variable names of ARCHITECTURE.md.
"""

from .accumulators import NCStats, NCStream
from .measures import (METRIC_ATTRS, SCALAR_METRICS, checkpoint_metrics, compute_metrics, metrics_from_stats,
                       pairwise_cosine_stats, require_certified, trace_pinv)
from .ovr import OVRResult, UncertifiedError, ovr_distances, ovr_subgradient

__all__ = ["OVRResult", "UncertifiedError", "ovr_distances", "ovr_subgradient", "NCStream", "NCStats",
           "checkpoint_metrics", "compute_metrics", "metrics_from_stats", "trace_pinv",
           "pairwise_cosine_stats", "require_certified", "METRIC_ATTRS", "SCALAR_METRICS"]

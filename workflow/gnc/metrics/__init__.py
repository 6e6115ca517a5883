"""Neural-collapse metrics: certified one-vs-rest distances (GNC2, :mod:`gnc.metrics.ovr`), the
two-pass streaming accumulator :class:`NCStream` (:mod:`gnc.metrics.accumulators`), and GNC1–3 and
Papyan NC1–4 as an ``xr.Dataset`` (:mod:`gnc.metrics.measures`: :func:`compute_metrics` on your own
batches, :func:`checkpoint_metrics` on a features Dataset)."""

from .accumulators import NCStats, NCStream
from .measures import (METRIC_ATTRS, SCALAR_METRICS, checkpoint_metrics, compute_metrics, metrics_from_stats,
                       pairwise_cosine_stats, require_certified, trace_pinv)
from .ovr import OVRResult, UncertifiedError, ovr_distances, ovr_subgradient

__all__ = ["OVRResult", "UncertifiedError", "ovr_distances", "ovr_subgradient", "NCStream", "NCStats",
           "checkpoint_metrics", "compute_metrics", "metrics_from_stats", "trace_pinv",
           "pairwise_cosine_stats", "require_certified", "METRIC_ATTRS", "SCALAR_METRICS"]

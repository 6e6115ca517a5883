"""Metrics of neural collapse (temporary stub; filled below)."""
from .ovr import OVRResult, ovr_distances, ovr_subgradient, pairwise_bounds, normalize_rows

"""gnc.figures — one function per figure: datasets in, ``(matplotlib Figure, tidy DataFrame)`` out.

Every ``fig_*`` function returns the figure and a tidy frame holding exactly the plotted data (one row per
plotted point, columns naming the coordinates and the value). Figures never fail on missing data: a
figure whose data are missing for part of its grid is still drawn and ``frame.attrs["missing"]`` lists
the missing grid points (:func:`caption_gap_note` turns them into a sentence); a figure whose data are
absent altogether is a "no data for this figure in this study" figure with an empty frame.

Figures (inputs: ``metrics`` = results/metrics.nc, ``codes`` = results/codes.nc, ``features`` = a
per-checkpoint features file or {title: file}):

=====================  ==========================================================================
``fig_tau_sweep``       metrics[, codes] — GNC1 (log), GNC2 (+ code lines), GNC3 (log), test acc vs epoch, hue τ
``fig_arch_comparison`` metrics[, codes] — the same four panels, hue architecture
``fig_d_sweep``         metrics, codes — final-epoch GNC2 vs d with softmax-code values; GNC2 / code
``fig_cmf``             metrics — train (solid) / test (dashed) accuracy vs epoch per classifier variant
``fig_ncc``             metrics — NCC train (solid) / test (dashed) accuracy vs epoch
``fig_assignment``      codes — Gram matrices of the trained classifier per seed (class names)
``fig_ufm_tau``         codes — UFM ρ_ovr / softmax value, distance to the code, min angle vs τ (log)
``fig_codes``           codes — softmax code vs Tammes code vs K for several d; differing (d, K) marked
``fig_sphere``          features — d = 2 circle / d = 3 orthographic views of ŵ_k, class means, features
=====================  ==========================================================================

``save_figure(fig, frame, out_prefix)`` writes PNG (150 dpi), PDF, CSV and ``.provenance.json``
atomically; ``figure_caption(kind, frame=frame)`` states the setting (dataset, arch, d, K, τ, seeds,
epochs) and the missing points. ``FIGURES`` maps kind names to functions.
"""

from __future__ import annotations

from ._common import (DESCRIPTIONS, FIGURE_TITLES, caption_gap_note, figure_caption, missing_points,
                      no_data_figure, rst_escape, save_figure, select)
from ._style import Style, format_tau, rc_params, tau_label
from .geometry import fig_assignment, fig_codes, fig_sphere, fig_ufm_tau, sphere_points
from .training import fig_arch_comparison, fig_cmf, fig_d_sweep, fig_ncc, fig_tau_sweep

FIGURES = {
    "tau_sweep": fig_tau_sweep,
    "arch_comparison": fig_arch_comparison,
    "d_sweep": fig_d_sweep,
    "cmf": fig_cmf,
    "ncc": fig_ncc,
    "assignment": fig_assignment,
    "ufm_tau": fig_ufm_tau,
    "codes": fig_codes,
    "sphere": fig_sphere,
}

# which inputs each figure takes (first positional argument first); "features" = one features Dataset
# or a mapping {panel title: Dataset}
FIGURE_INPUTS = {
    "tau_sweep": ("metrics", "codes"),
    "arch_comparison": ("metrics", "codes"),
    "d_sweep": ("metrics", "codes"),
    "cmf": ("metrics",),
    "ncc": ("metrics",),
    "assignment": ("codes",),
    "ufm_tau": ("codes",),
    "codes": ("codes",),
    "sphere": ("features",),
}


def make_figure(kind: str, *, metrics=None, codes=None, features=None, **options):
    """Dispatch by kind name (for the thin Snakemake script): passes the inputs the figure takes, in
    order, plus ``options`` (selection keywords of that figure, e.g. ``taus=[1, 0.2]``)."""
    if kind not in FIGURES:
        raise KeyError(f"unknown figure {kind!r}; known: {', '.join(FIGURES)}")
    given = {"metrics": metrics, "codes": codes, "features": features}
    args = [given[name] for name in FIGURE_INPUTS[kind]]
    return FIGURES[kind](*args, **options)


__all__ = [
    "FIGURE_INPUTS", "make_figure",
    "FIGURES", "FIGURE_TITLES", "DESCRIPTIONS", "Style", "caption_gap_note", "fig_arch_comparison",
    "fig_assignment", "fig_cmf", "fig_codes", "fig_d_sweep", "fig_ncc", "fig_sphere", "fig_tau_sweep",
    "fig_ufm_tau", "figure_caption", "format_tau", "missing_points", "no_data_figure", "rc_params",
    "rst_escape", "save_figure", "select", "sphere_points", "tau_label",
]

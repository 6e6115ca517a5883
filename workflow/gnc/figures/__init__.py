"""gnc.figures — one function per figure: datasets in, ``(matplotlib Figure, tidy DataFrame)`` out.

The figures are listed once, in :data:`gnc.figures.registry.REGISTRY`; ``FIGURES`` maps each kind to its
function. The frame holds exactly the plotted data (one row per plotted point); ``frame.attrs`` carries
the setting shown (``selection``), the seeds, the missing runs and notes. A figure whose data are absent
altogether is a "no data for this figure in this study" figure with an empty frame. ``save_figure``
writes the image formats, the CSV and the provenance sidecar; ``figure_caption`` states the setting.

matplotlib and xarray are imported inside the functions that use them: the Snakefile imports
:mod:`gnc.figures.registry`, hence this package, when it parses, and must not pay for them.
"""

from __future__ import annotations

from ._common import caption_gap_note, figure_caption, rst_escape, save_figure
from ._style import Style, format_tau
from .geometry import fig_assignment, fig_codes, fig_sphere, fig_ufm_tau
from .registry import REGISTRY, plan_figure, plan_figures
from .training import (fig_arch_comparison, fig_cmf, fig_d_sweep, fig_k_sweep, fig_nc, fig_ncc,
                       fig_tau_sweep)

# A dict literal, so that the code fingerprint of figure rule X covers FIGURES["X"] only (gnc.fingerprint);
# it must name, for every kind of the registry, the function the registry names.
FIGURES = {
    "tau_sweep": fig_tau_sweep,
    "arch_comparison": fig_arch_comparison,
    "cmf": fig_cmf,
    "ncc": fig_ncc,
    "nc": fig_nc,
    "k_sweep": fig_k_sweep,
    "d_sweep": fig_d_sweep,
    "assignment": fig_assignment,
    "sphere": fig_sphere,
    "ufm_tau": fig_ufm_tau,
    "codes": fig_codes,
}
if {k: f.__name__ for k, f in FIGURES.items()} != {k: s.function for k, s in REGISTRY.items()}:
    raise ImportError("gnc.figures.FIGURES and gnc.figures.registry.REGISTRY name different figure functions")


def make_figure(kind: str, *, metrics=None, codes=None, features=None, **options):
    """Dispatch by kind name (for the thin Snakemake script): passes the inputs the figure takes, in
    order, plus ``options`` (its selection keywords, e.g. ``tau=[1, 0.2]``, and ``expected``)."""
    if kind not in FIGURES:
        raise KeyError(f"unknown figure {kind!r}; known: {', '.join(FIGURES)}")
    given = {"metrics": metrics, "codes": codes, "features": features}
    return FIGURES[kind](*(given[name] for name in REGISTRY[kind].inputs), **options)


__all__ = [
    "FIGURES", "REGISTRY", "Style", "caption_gap_note", "fig_arch_comparison", "fig_assignment", "fig_cmf",
    "fig_codes", "fig_d_sweep", "fig_k_sweep", "fig_nc", "fig_ncc", "fig_sphere", "fig_tau_sweep",
    "fig_ufm_tau", "figure_caption", "format_tau", "make_figure", "plan_figure", "plan_figures", "rst_escape",
    "save_figure",
]

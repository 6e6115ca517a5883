"""One visual style for every gnc-study figure.

Colours are keyed by *value*, not by position in one figure, so the same temperature or
architecture has the same colour in every figure of a study:

* temperature τ — a sequential palette ("plasma" from orange to indigo), ordered: the largest τ is
  the lightest, the smallest (τ → 0) the darkest. Levels are the sorted τ coordinate of the study's datasets.
* architecture — a categorical colour-blind palette keyed by the sorted architecture names.
* variant (classifier head / loss) — a second categorical palette ("Dark2").
* feature dimension d — sequential ("viridis"); (d, K) settings and classes — categorical (evenly
  spaced hues).

A figure function called without a :class:`Style` builds it from its own inputs
(``Style.from_datasets``): the same coordinates, hence the same colours across a study's figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterable

import numpy as np

from ..grid import same_tau

# seaborn's "whitegrid" style and "notebook" context, written out so that a figure job does not
# import seaborn (and scipy with it): tests/test_figures.py checks them against seaborn.
_WHITEGRID = {
    "figure.facecolor": "white", "axes.facecolor": "white", "axes.edgecolor": ".8", "axes.grid": True,
    "axes.axisbelow": True, "axes.labelcolor": ".15", "grid.color": ".8", "grid.linestyle": "-",
    "text.color": ".15", "xtick.color": ".15", "ytick.color": ".15", "xtick.direction": "out",
    "ytick.direction": "out", "xtick.top": False, "ytick.right": False, "xtick.bottom": False, "ytick.left": False,
    "lines.solid_capstyle": "round", "patch.edgecolor": "w", "patch.force_edgecolor": True,
    "font.family": ["sans-serif"], "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans",
                                                       "Bitstream Vera Sans", "sans-serif"],
    "axes.spines.left": True, "axes.spines.bottom": True, "axes.spines.right": True, "axes.spines.top": True,
}
_NOTEBOOK = {
    "axes.linewidth": 1.25, "grid.linewidth": 1, "lines.linewidth": 1.5, "lines.markersize": 6,
    "patch.linewidth": 1, "xtick.major.width": 1.25, "ytick.major.width": 1.25, "xtick.minor.width": 1,
    "ytick.minor.width": 1, "xtick.major.size": 6, "ytick.major.size": 6, "xtick.minor.size": 4,
    "ytick.minor.size": 4, "font.size": 12, "axes.labelsize": 12, "axes.titlesize": 12, "xtick.labelsize": 11,
    "ytick.labelsize": 11, "legend.fontsize": 11, "legend.title_fontsize": 12,
}
# seaborn's "colorblind" palette (categorical, colour-blind safe)
COLORBLIND = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133",
              "#56b4e9"]


# rcParams for every figure: the whitegrid look, sized to stay readable when the report shows a
# 4-panel figure at ~1000 px width.
def rc_params() -> dict[str, Any]:
    rc: dict[str, Any] = {**_WHITEGRID, **_NOTEBOOK}
    rc.update({
        "axes.titlesize": 11.5,
        "axes.labelsize": 11,
        "legend.fontsize": 10,
        "legend.title_fontsize": 10.5,
        "xtick.labelsize": 9.5,
        "ytick.labelsize": 9.5,
        "lines.linewidth": 1.8,
        "lines.markersize": 4.5,
        "axes.titleweight": "normal",
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "pdf.fonttype": 42,  # embed TrueType, text stays selectable/editable
        "svg.fonttype": "none",
        "axes.formatter.use_mathtext": False,  # mathtext tick labels cost ~1 s per figure to parse
    })
    return rc


def format_tau(tau: float) -> str:
    """'1', '1/7', '0.05' -> readable temperature labels (τ = 1/s in the paper's code)."""
    if tau is None or (isinstance(tau, float) and math.isnan(tau)):
        return "?"
    tau = float(tau)
    if tau > 0:
        inv = 1.0 / tau
        if abs(inv - round(inv)) < 1e-6 * max(1.0, inv) and round(inv) >= 1:
            n = int(round(inv))
            return "1" if n == 1 else f"1/{n}"
        frac = Fraction(tau).limit_denominator(1000)
        if abs(float(frac) - tau) < 1e-9 * max(1.0, tau) and frac.denominator <= 100 and frac.numerator <= 100:
            return f"{frac.numerator}/{frac.denominator}" if frac.denominator != 1 else str(frac.numerator)
    return f"{tau:g}"


def _unique_sorted(values: Iterable, numeric: bool) -> list:
    """The sorted levels of a coordinate, None / NaN / empty names dropped; numbers within the
    tolerance of :func:`gnc.grid.same_tau` count as one level."""
    if not numeric:
        return sorted({str(v) for v in values if v is not None} - {"", "nan", "None"})
    uniq: list[float] = []
    for v in sorted(float(v) for v in values if v is not None and not _nan(v)):
        if not uniq or not same_tau(v, uniq[-1]):
            uniq.append(v)
    return uniq


def _nan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True  # not a number: not a level


@dataclass
class Style:
    """Colour keys of one study. Unknown levels get a fallback colour, never an error."""

    taus: list[float] = field(default_factory=list)
    archs: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    dims: list[int] = field(default_factory=list)

    @classmethod
    def from_datasets(cls, *datasets) -> "Style":
        """The levels of τ, architecture, variant and d of the coordinates of ``datasets`` (None skipped)."""
        def levels(dim: str, numeric: bool) -> list:
            coords = [ds.coords[dim].values for ds in datasets if ds is not None and dim in ds.coords]
            return _unique_sorted([v for c in coords for v in np.atleast_1d(c)], numeric)

        return cls(taus=levels("tau", True), archs=levels("arch", False), variants=levels("variant", False),
                   dims=[int(x) for x in levels("d", True)])

    # ---------------------------------------------------------------- colours
    def tau_color(self, tau: float):
        import matplotlib as mpl

        levels = _unique_sorted([*self.taus, tau], True)
        n = len(levels)
        # rank among the study's temperatures, largest τ first: light orange (τ large) ... dark indigo
        # (τ → 0). "plasma" restricted to [0.05, 0.82] stays visible on white and is colour-blind safe.
        rank = n - 1 - next(i for i, v in enumerate(levels) if same_tau(v, float(tau)))
        frac = 0.5 if n == 1 else rank / (n - 1)
        return tuple(mpl.colormaps["plasma"](0.82 - 0.77 * frac)[:3])

    def arch_color(self, arch: str):
        return _categorical(self.archs, str(arch), "colorblind")

    def d_color(self, d: int):
        import matplotlib as mpl

        levels = sorted({*self.dims, int(d)})
        # sequential, light to dark with d; "viridis" restricted to [0.15, 0.85] stays visible on white
        frac = 0.5 if len(levels) == 1 else levels.index(int(d)) / (len(levels) - 1)
        return tuple(mpl.colormaps["viridis"](0.85 - 0.7 * frac)[:3])

    def color(self, dim: str, value):
        """The colour of a level of ``dim`` (tau, arch, variant or d)."""
        if dim == "variant":
            return _categorical(self.variants, str(value), "Dark2")
        return {"tau": self.tau_color, "arch": self.arch_color, "d": self.d_color}[dim](value)

    def label(self, dim: str, value) -> str:
        """The legend label of a level of ``dim`` (tau, arch or variant)."""
        return f"τ = {format_tau(value)}" if dim == "tau" else str(value)


def _categorical(levels: list[str], value: str, palette: str):
    if value not in levels:
        levels = sorted(set(levels) | {value})
    base, i = _palette(palette), levels.index(value)
    return base[i] if i < len(base) else categorical_colors(len(levels))[i]


def _palette(name: str) -> list:
    import matplotlib as mpl
    from matplotlib.colors import to_rgb

    if name == "colorblind":
        return [to_rgb(c) for c in COLORBLIND]
    return [tuple(c[:3]) for c in mpl.colormaps[name].colors]  # a listed matplotlib colormap, e.g. Dark2


def categorical_colors(n: int, palette: str = "husl") -> list:
    """``n`` distinct colours: the named palette when it has enough, else ``n`` hues evenly spaced
    around the colour circle at fixed saturation and value."""
    from matplotlib.colors import hsv_to_rgb

    base = [] if palette == "husl" else _palette(palette)
    if n <= len(base):
        return base[:max(n, 1)]
    return [tuple(float(x) for x in hsv_to_rgb([(0.01 + i / max(n, 1)) % 1.0, 0.75, 0.85])) for i in range(max(n, 1))]

"""The study grid: the dimensions of a training run, how a grid value is written in run ids, and when
two temperatures are the same.

Every module that names the run dimensions or compares temperatures imports them from here (it needs
only numpy, so the configuration, the results, the claims and the figures can all use it).
"""

from __future__ import annotations

import numpy as np

#: the coordinates that identify a training run, in the order of metrics.nc's dimensions
RUN_DIMS = ("variant", "dataset", "arch", "tau", "d", "K", "seed")

#: significant digits of a grid value in a run id (``tau0.142857``); see :func:`same_tau`
ID_DIGITS = 6


def fmt_num(x: float) -> str:
    """Stable, short text for a float in paths and labels (0.1 -> '0.1', 1.0 -> '1', 1/7 -> '0.142857')."""
    return format(float(x), f".{ID_DIGITS}g")


def tau_value(tau: float) -> float:
    """The grid value of a temperature: ``tau`` rounded to :data:`ID_DIGITS` significant digits, as its
    run id names it (1/7 -> 0.142857). Equal for temperatures that are the same (:func:`same_tau`);
    group or join runs by it. Order-preserving, so sorting by it sorts by τ."""
    return float(fmt_num(tau))


_TAU_VALUE = np.vectorize(tau_value, otypes=[float])


def same_tau(a, b):
    """True where the temperatures ``a`` and ``b`` are the same grid value: equal when rounded to
    :data:`ID_DIGITS` significant digits (:func:`tau_value`), the precision with which a run id names
    its τ. Two runs that differ only in τ are therefore one run exactly when their τ are the same, and
    a τ typed as it appears in a run id (``0.142857``) selects the run trained at 1/7. Unlike a relative
    tolerance this is an equivalence relation, so grouping by τ is well defined. NaN is the same as
    nothing. Scalars give a bool; arrays (numpy, pandas) broadcast to a boolean array."""
    if np.ndim(a) == 0 and np.ndim(b) == 0:
        return bool(tau_value(a) == tau_value(b))
    return np.asarray(_TAU_VALUE(np.asarray(a, dtype=float)) == _TAU_VALUE(np.asarray(b, dtype=float)), dtype=bool)

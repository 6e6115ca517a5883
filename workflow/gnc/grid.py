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
    """The grid value of a temperature, as its run id names it (1/7 -> 0.142857): group, join or sort
    runs by it (it preserves order)."""
    return float(fmt_num(tau))


_TAU_VALUE = np.vectorize(tau_value, otypes=[float])


def same_tau(a, b):
    """True where ``a`` and ``b`` have the same :func:`tau_value`, i.e. name the same run (so ``0.142857``
    selects the run trained at 1/7). Unlike a relative tolerance this is an equivalence relation, so
    grouping by τ is well defined. NaN is the same as nothing. Scalars give a bool; arrays broadcast."""
    if np.ndim(a) == 0 and np.ndim(b) == 0:
        return bool(tau_value(a) == tau_value(b))
    return np.asarray(_TAU_VALUE(np.asarray(a, dtype=float)) == _TAU_VALUE(np.asarray(b, dtype=float)), dtype=bool)

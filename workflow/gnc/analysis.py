"""Reading a finished study: :func:`open_study` (xarray) and :func:`study_table` (pandas).

``open_study("results")`` returns ``results/study.nc`` in memory: dimensions ``run`` (one entry per
trained run) and ``epoch``; on ``run`` the coordinates ``experiment`` and the grid (``variant``,
``dataset``, ``arch``, ``tau``, ``d``, ``K``, ``seed``); the metrics and training history over
(run, epoch), NaN where a run has no value (metrics exist at checkpoints only, and runs stop at
different epochs); ``final_<variable>`` and ``final_epoch`` over ``run`` at each run's last checkpoint;
the comparisons with the softmax code (``gnc2_fraction``, ``code_distance``) over ``run``.

``study_table("results")`` returns ``results/study.csv``: one row per (run, epoch, variable) with
columns ``run``, ``experiment``, the grid, ``epoch``, ``variable``, ``value`` and ``final``.

Both take ``experiment=NAME`` to keep only that experiment's runs (a run shared by two experiments
belongs to both).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["open_study", "study_table"]


def _file(path, name: str) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (run the study first: snakemake --cores all)")
    return path


def _members(names, experiment: str, path: Path) -> list[bool]:
    """Which entries (space-separated experiment names each) belong to ``experiment``; none is an error."""
    member = [experiment in str(n).split() for n in names]
    if not any(member):
        known = sorted({e for n in names for e in str(n).split()})
        raise KeyError(f"{path}: no experiment {experiment!r}; experiments: {', '.join(known)}")
    return member


def open_study(path="results", experiment: str | None = None):
    """The study catalog ``study.nc`` as an ``xarray.Dataset`` (``path``: the file or the results
    folder); ``experiment``: keep only the runs of that experiment."""
    from .io import open_netcdf  # deferred: `import gnc` runs this module, and must not load xarray

    path = _file(path, "study.nc")
    ds = open_netcdf(path)
    return ds if experiment is None else ds.isel(run=_members(ds["experiment"].values, experiment, path))


def study_table(path="results", experiment: str | None = None):
    """The long table ``study.csv`` as a ``pandas.DataFrame`` (``path``: the file or the results
    folder); ``experiment``: keep only the rows of that experiment's runs."""
    import pandas as pd  # deferred: `import gnc` runs this module, and must not load pandas

    path = _file(path, "study.csv")
    df = pd.read_csv(path)
    return df if experiment is None else df[_members(df["experiment"], experiment, path)].reset_index(drop=True)

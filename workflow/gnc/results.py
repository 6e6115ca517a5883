"""Combining per-run results into labelled study-wide datasets.

Two layouts of the same numbers:

* ``results/metrics.nc`` (:func:`combine_runs`): a dense array over the grid dimensions (variant,
  dataset, arch, tau, d, K, seed, epoch), outer-joined, so grid points that were not run are NaN.
  The figures read it.
* ``results/study.nc`` (:func:`build_study`): one entry per trained run along the dimension ``run``
  (layout: :mod:`gnc.analysis`); ``results/study.csv`` is the same data as a long table (one row per
  run x epoch x variable), ``results/summary.csv`` one row per run.

Variables with a per-class dimension (``k``) stay in the per-run files, since K varies across runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from .grid import RUN_DIMS
from .io import open_netcdf, write_json_atomic, write_netcdf, write_text_atomic
from .provenance import merge_dataset_attrs, provenance, read_attrs, sidecar_of

#: long_name/units of every coordinate a result file of this package may carry (all dimensionless)
COORD_ATTRS = {name: {"long_name": long_name, "units": "1"} for name, long_name in {
    "run": "run id (<dataset>/<variant>/<arch>/tau<tau>-d<d>-K<K>-s<seed>)",
    "experiment": "experiment(s) of the config that contain the run (space-separated)",
    "variant": "classifier head and loss",
    "dataset": "dataset name",
    "arch": "backbone architecture",
    "tau": "softmax temperature of training (logits = cos / tau)",
    "d": "feature dimension",
    "K": "number of classes",
    "seed": "random seed of the run",
    "epoch": "training epoch of the checkpoint (0 = initial model)",
    "k": "class position in the run (0..K-1)",
    "k2": "class position in the run (0..K-1), second axis",
    "class_index": "class index in the dataset",
    "class_name": "class name in the dataset",
    "component": "feature component (0..d-1)",
    "train_sample": "position of the sample in the run's training split",
    "test_sample": "position of the sample in the run's test split",
}.items()}


def label_coords(ds: xr.Dataset) -> xr.Dataset:
    """Set long_name and units on every coordinate named in :data:`COORD_ATTRS` (others are kept)."""
    for name in ds.coords:
        if name in COORD_ATTRS:
            ds[name].attrs.update(COORD_ATTRS[name])
    return ds


def with_run_coords(ds: xr.Dataset, coords: dict) -> xr.Dataset:
    """Attach a run's grid coordinates as scalar coordinates."""
    return label_coords(ds.assign_coords({k: coords[k] for k in RUN_DIMS}))


def _expand(ds: xr.Dataset) -> xr.Dataset:
    """A run's dataset without its per-class/per-component variables, its scalar run coordinates made
    dimensions of length 1."""
    ds = ds.drop_dims(["k", "k2", "component"], errors="ignore")
    for dim in RUN_DIMS:
        if dim not in ds.coords:
            raise ValueError(f"run dataset lacks the coordinate {dim!r}")
    return ds.drop_vars(list(RUN_DIMS)).expand_dims({dim: [ds[dim].values.item()] for dim in RUN_DIMS})


def combine_runs(datasets: Iterable[xr.Dataset], attrs: dict | None = None) -> xr.Dataset:
    """Outer-join per-run datasets into one over RUN_DIMS (+ their own dims such as epoch)."""
    parts = [_expand(ds) for ds in datasets]
    if not parts:
        raise ValueError("no run results to combine")
    combined = merge_outer(parts).sortby(list(RUN_DIMS))
    if "epoch" in combined.dims:
        combined = combined.sortby("epoch")
    label_coords(combined)
    combined.attrs = dict(attrs or {})
    return combined


def merge_outer(parts: list[xr.Dataset]) -> xr.Dataset:
    """Outer join of datasets that must agree where they overlap; every variable keeps the attributes it
    has in the first dataset that holds it, and the result those of the first dataset."""
    return xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="override")


def provenance_summary(paths: Iterable[str | Path]) -> dict:
    """Collect the dataset/code provenance named by a set of files (for the combined file): the code
    versions (JSON list) and the datasets as aligned JSON lists (gnc_dataset, gnc_dataset_version,
    gnc_dataset_checksum, gnc_dataset_path: position i of each list describes the same dataset)."""
    per_file = [read_attrs(p) for p in paths]
    out = merge_dataset_attrs(*per_file)
    codes = sorted({str(a["gnc_code_version"]) for a in per_file if "gnc_code_version" in a})
    if codes:
        out["gnc_code_version"] = json.dumps(codes)
    return out


HISTORY_VARS = {
    "loss": ("train_loss", "mean training loss over the epoch", "1"),
    "train_acc": ("train_acc_running", "running training accuracy over the epoch (augmented batches)", "1"),
    "lr": ("lr", "learning rate used during the epoch", "1"),
    "images_per_s": ("images_per_second", "training throughput", "s-1"),
    "seconds": ("epoch_seconds", "wall time of the epoch", "s"),
}


def history_dataset(history: dict, coords: dict, attrs: dict | None = None) -> xr.Dataset:
    """Per-epoch training history (dict of equal-length lists with an ``epoch`` key, as stored in the
    checkpoints by gnc.train) as a Dataset over epoch (epoch e = the state after e epochs)."""
    epochs = [int(e) for e in history["epoch"]]
    data = {name: ("epoch", [float(v) for v in history.get(key, [np.nan] * len(epochs))],
                   {"long_name": long_name, "units": units})
            for key, (name, long_name, units) in HISTORY_VARS.items()}
    return with_run_coords(xr.Dataset(data, coords={"epoch": epochs}, attrs=dict(attrs or {})), coords)


# ----------------------------------------------------------------------------------- the study catalog

#: variables of the per-run metrics files that decide a run's last checkpoint (the first one present)
_FINAL_KEYS = ("gnc1", "test_acc", "train_acc")

#: columns of the final-checkpoint summary table (those present in the study)
SUMMARY_VARS = ("train_acc", "test_acc", "ncc_test_acc", "gnc1", "gnc2", "gnc3", "nc1", "min_angle",
                "gnc2_fraction", "code_distance", "train_loss")


def _epoch_vars(ds: xr.Dataset) -> xr.Dataset:
    """The variables over (epoch,) only, without the scalar run coordinates."""
    return ds[[v for v in ds.data_vars if set(ds[v].dims) <= {"epoch"}]].reset_coords(drop=True)


def _run_part(run_id: str, metrics: xr.Dataset, history: xr.Dataset | None) -> xr.Dataset:
    m = _epoch_vars(metrics)
    key = next((v for v in _FINAL_KEYS if v in m), None)
    if key is None:
        raise ValueError(f"run {run_id}: its metrics file has none of {', '.join(_FINAL_KEYS)}")
    done = m["epoch"].values[np.isfinite(m[key].values)]
    if not len(done):
        raise ValueError(f"run {run_id}: no checkpoint with a finite {key}")
    part = m if history is None else merge_outer([m, _epoch_vars(history)])
    final_epoch = int(done.max())
    final = {f"final_{v}": part[v].sel(epoch=final_epoch, drop=True) for v in part.data_vars}
    return part.assign(final_epoch=xr.DataArray(final_epoch), **final).expand_dims(run=[run_id])


def _codes_run_vars(codes: xr.Dataset, coords: list[dict]) -> dict[str, xr.DataArray]:
    """Per-run variables of codes.nc (dims a subset of the run dims), picked at each run's grid point."""
    out: dict[str, xr.DataArray] = {}
    for v in codes.data_vars:
        dims = set(codes[v].dims)
        per_run = dims <= set(RUN_DIMS) and dims & {"variant", "arch", "seed"}
        if not per_run or codes[v].dtype.kind not in "fiub":
            continue
        values = np.full(len(coords), np.nan)
        for i, c in enumerate(coords):
            try:
                values[i] = float(codes[v].sel({d: c[d] for d in codes[v].dims}))
            except KeyError:
                pass
        out[v] = xr.DataArray(values, dims=["run"], attrs=dict(codes[v].attrs))
    return out


def study_dataset(runs: dict, metrics: dict[str, xr.Dataset], histories: dict[str, xr.Dataset],
                  codes: xr.Dataset) -> xr.Dataset:
    """The run-indexed study: ``runs`` {run id: :class:`gnc.config.Run`}, ``metrics`` and ``histories``
    {run id: the run's metrics.nc / history.nc}, ``codes`` the codes.nc Dataset (its per-run comparison
    variables are copied). Dimensions (run, epoch); see the module docstring."""
    ids = [r for r in runs if r in metrics]
    if not ids:
        raise ValueError("no run results to combine")
    study = merge_outer([_run_part(r, metrics[r], histories.get(r)) for r in ids])
    study = study.reindex(run=ids).sortby("epoch")
    for v in study.data_vars:
        if v.startswith("final_") and v != "final_epoch":
            base = v[len("final_"):]
            long_name = study[v].attrs.get("long_name", base)
            study[v].attrs = {**study[v].attrs, "long_name": f"{long_name}, at the run's last checkpoint"}
    study["final_epoch"] = study["final_epoch"].astype(np.int64).assign_attrs(
        long_name="epoch of the run's last checkpoint with metrics", units="1")
    coords = [runs[r].coords for r in ids]
    study = study.assign(_codes_run_vars(codes, coords))
    study = study.assign_coords(
        experiment=("run", [" ".join(sorted(runs[r].experiment)) for r in ids]),
        **{d: ("run", [c[d] for c in coords]) for d in RUN_DIMS})
    return label_coords(study)


def long_table(study: xr.Dataset):
    """One row per (run, epoch, variable) with a value: the run's coordinates, ``epoch``, ``variable``,
    ``value`` and ``final`` (True at the run's last checkpoint). Per-run variables without an epoch
    (the code comparisons) are placed at the run's last checkpoint."""
    labels = ["experiment", *RUN_DIMS]
    per_epoch = [v for v in study.data_vars if study[v].dims == ("run", "epoch")]
    per_run = [v for v in study.data_vars if study[v].dims == ("run",) and not v.startswith("final_")]
    at_last = study[per_run].where(study["epoch"] == study["final_epoch"])
    df = xr.merge([study[per_epoch], at_last]).reset_coords(labels, drop=True).to_dataframe().reset_index()
    df = df.melt(id_vars=["run", "epoch"], var_name="variable", value_name="value").dropna(subset=["value"])
    info = study[[*labels, "final_epoch"]].reset_coords().to_dataframe().reset_index()
    df = df.merge(info, on="run", how="left")
    df["final"] = df["epoch"] == df["final_epoch"]
    order = {r: i for i, r in enumerate(study["run"].values)}
    df = df.assign(_o=df["run"].map(order)).sort_values(["_o", "epoch", "variable"], kind="stable")
    return df[["run", *labels, "epoch", "variable", "value", "final"]].reset_index(drop=True)


def final_epoch_summary(study: xr.Dataset):
    """One row per trained run: run id, experiment(s), grid coordinates, its last checkpoint epoch
    (``epoch``) and the main metrics there (a pandas DataFrame in the study's run order)."""
    cols = {}
    for v in SUMMARY_VARS:
        if f"final_{v}" in study:
            cols[v] = f"final_{v}"
        elif v in study and study[v].dims == ("run",):
            cols[v] = v
    frame = study[["final_epoch", *cols.values()]].to_dataframe().reset_index()
    frame = frame.rename(columns={"final_epoch": "epoch", **{src: v for v, src in cols.items()}})
    return frame[["run", "experiment", *RUN_DIMS, "epoch", *cols]]


def files_by_run(run_ids: Iterable[str], paths: Iterable[str | Path], name: str) -> dict[str, str]:
    """{run id: path} for the per-run files ``<results>/runs/<run id>/<name>``; raises ValueError when
    a run has no such file among ``paths``."""
    paths = [str(p) for p in paths]
    out = {}
    for r in run_ids:
        hits = [p for p in paths if Path(p).as_posix().endswith(f"runs/{r}/{name}")]
        if len(hits) != 1:
            raise ValueError(f"run {r}: expected one runs/{r}/{name} among the inputs, found {len(hits)}")
        out[r] = hits[0]
    return out


def build_study(run_metrics: dict, histories: dict, codes_path, *, runs: dict, config: dict, metrics_path,
                nc_out, csv_out, summary_out) -> xr.Dataset:
    """results/study.nc (:func:`study_dataset`) from the per-run metrics and history files ({run id:
    path}) and codes.nc; its long table (:func:`long_table`) as ``csv_out`` and the one-row-per-run
    summary (:func:`final_epoch_summary`) as ``summary_out``. The dataset provenance is that of the
    per-run metrics files, the combined ``metrics_path`` and codes.nc. Each CSV gets its provenance
    sidecar (:func:`gnc.provenance.sidecar_of`), which rule ``study`` declares."""
    missing = sorted(set(runs) - set(run_metrics))
    if missing:
        raise ValueError(f"no metrics file for run(s) {', '.join(missing)}")
    metrics = {r: open_netcdf(p) for r, p in run_metrics.items()}
    codes = open_netcdf(codes_path)
    study = study_dataset(runs, metrics, {r: open_netcdf(p) for r, p in histories.items()}, codes)
    sources = [m.attrs for m in metrics.values()] + [open_netcdf(metrics_path).attrs, codes.attrs]
    study.attrs = attrs = {**provenance(stage="study", config=config), **merge_dataset_attrs(*sources)}
    write_netcdf(study, nc_out)
    tables = ((csv_out, long_table(study), None), (summary_out, final_epoch_summary(study), "%.6g"))
    for out, table, fmt in tables:
        write_text_atomic(out, table.to_csv(index=False, float_format=fmt))
        write_json_atomic(sidecar_of(out), attrs)
    return study

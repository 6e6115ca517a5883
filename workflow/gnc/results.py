"""Combining per-run results into labelled study-wide datasets.

Per-run files carry their grid coordinates as scalar coordinates (variant, dataset, arch, tau, d, K,
seed); :func:`combine_runs` turns them into one Dataset over those dimensions (outer join: grid points
that were not run are NaN). Variables with a per-class dimension (``k``) are dropped, since K varies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import xarray as xr

RUN_DIMS = ("variant", "dataset", "arch", "tau", "d", "K", "seed")


def with_run_coords(ds: xr.Dataset, coords: dict) -> xr.Dataset:
    """Attach a run's grid coordinates as scalar coordinates."""
    return ds.assign_coords({k: coords[k] for k in RUN_DIMS})


def _expand(ds: xr.Dataset) -> xr.Dataset:
    per_class = [v for v in ds.data_vars if "k" in ds[v].dims or "k2" in ds[v].dims]
    ds = ds.drop_vars(per_class)
    drop_dims = [d for d in ("k", "k2", "component") if d in ds.dims]
    if drop_dims:
        ds = ds.drop_dims(drop_dims)
    scalars = {}
    for dim in RUN_DIMS:
        if dim not in ds.coords:
            raise ValueError(f"run dataset lacks the coordinate {dim!r}")
        scalars[dim] = ds.coords[dim].values.item()
    ds = ds.drop_vars(list(RUN_DIMS))
    return ds.expand_dims({dim: [v] for dim, v in scalars.items()})


def combine_runs(datasets: Iterable[xr.Dataset], attrs: dict | None = None) -> xr.Dataset:
    """Outer-join per-run datasets into one over RUN_DIMS (+ their own dims such as epoch)."""
    parts = [_expand(ds) for ds in datasets]
    if not parts:
        raise ValueError("no run results to combine")
    var_attrs = {}
    for p in parts:
        for v in p.data_vars:
            var_attrs.setdefault(v, dict(p[v].attrs))
    combined = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop")
    for v, a in var_attrs.items():
        combined[v].attrs = a
    combined = combined.sortby(list(RUN_DIMS))
    for dim in RUN_DIMS:
        combined[dim].attrs.update(_DIM_ATTRS.get(dim, {}))
    if "epoch" in combined.dims:
        combined = combined.sortby("epoch")
        combined["epoch"].attrs.update(long_name="training epoch of the checkpoint (0 = initial model)", units="1")
    combined.attrs = dict(attrs or {})
    return combined


_DIM_ATTRS = {
    "variant": {"long_name": "classifier head and loss"},
    "dataset": {"long_name": "dataset name"},
    "arch": {"long_name": "backbone architecture"},
    "tau": {"long_name": "softmax temperature (logits = cos / tau)", "units": "1"},
    "d": {"long_name": "feature dimension", "units": "1"},
    "K": {"long_name": "number of classes", "units": "1"},
    "seed": {"long_name": "random seed of the run", "units": "1"},
}


def tidy_frame(ds: xr.Dataset, variables: list[str] | None = None):
    """One row per (run coordinates, epoch) that has at least one value; columns = variables."""
    variables = variables or [v for v in ds.data_vars if ds[v].dtype.kind == "f"]
    df = ds[variables].to_dataframe().dropna(how="all", subset=variables).reset_index()
    return df


def provenance_summary(paths: Iterable[str | Path]) -> dict:
    """Collect the dataset/code provenance named by a set of files (for the combined file)."""
    out: dict[str, set] = {"gnc_code_version": set(), "gnc_dataset_checksum": set(), "gnc_dataset_path": set()}
    for p in paths:
        with xr.open_dataset(p, engine="netcdf4") as ds:
            for k in out:
                if k in ds.attrs:
                    out[k].add(str(ds.attrs[k]))
    return {k: json.dumps(sorted(v)) for k, v in out.items() if v}


HISTORY_VARS = {
    "loss": ("train_loss", "mean training loss over the epoch", "1"),
    "train_acc": ("train_acc_running", "running training accuracy over the epoch (augmented batches)", "1"),
    "lr": ("lr", "learning rate at the end of the epoch", "1"),
    "images_per_s": ("images_per_second", "training throughput", "s-1"),
    "seconds": ("epoch_seconds", "wall time of the epoch", "s"),
}


def history_dataset(history: dict, coords: dict, attrs: dict | None = None) -> xr.Dataset:
    """Per-epoch training history (dict of equal-length lists with an ``epoch`` key, as stored in the
    checkpoints by gnc.train) as a Dataset over epoch (epoch e = the state after e epochs)."""
    epochs = [int(e) for e in history["epoch"]]
    data = {}
    for key, (name, long_name, units) in HISTORY_VARS.items():
        vals = [float(v) for v in history.get(key, [np.nan] * len(epochs))]
        data[name] = xr.DataArray(np.asarray(vals, dtype=float), dims=["epoch"],
                                  attrs={"long_name": long_name, "units": units})
    ds = xr.Dataset(data, coords={"epoch": epochs})
    ds = with_run_coords(ds, coords)
    ds.attrs = dict(attrs or {})
    return ds


def build_study(metrics_path, history_paths, codes_path, *, config: dict, nc_out, csv_out) -> xr.Dataset:
    """results/study.nc: metrics + training history + code comparisons, one Dataset; and a tidy CSV."""
    from .io import atomic_path, open_netcdf, write_json_atomic, write_netcdf
    from .provenance import provenance

    metrics = open_netcdf(metrics_path)
    hist = combine_runs([open_netcdf(p) for p in history_paths])
    codes = open_netcdf(codes_path)
    run_vars = [v for v in codes.data_vars if set(codes[v].dims) <= set(RUN_DIMS) and
                set(codes[v].dims) & {"variant", "arch", "seed"}]
    parts = [metrics, hist]
    if run_vars:
        parts.append(codes[run_vars].drop_vars([c for c in codes[run_vars].coords if c not in RUN_DIMS]))
    study = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop")
    for p in parts:
        for v in p.data_vars:
            study[v].attrs = dict(p[v].attrs)
    attrs = {**provenance(stage="study", config=config)}
    for k in ("gnc_dataset_path", "gnc_dataset_checksum"):
        if k in metrics.attrs:
            attrs[k] = metrics.attrs[k]
    study.attrs = attrs
    write_netcdf(study, nc_out)
    frame = tidy_frame(study)
    with atomic_path(csv_out) as tmp:
        frame.to_csv(tmp, index=False)
    write_json_atomic(str(csv_out).rsplit(".", 1)[0] + ".provenance.json", attrs)
    return study

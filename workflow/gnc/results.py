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
    """Collect the dataset/code provenance named by a set of files (for the combined file): the code
    versions (JSON list) and the datasets as aligned JSON lists (gnc_dataset, gnc_dataset_version,
    gnc_dataset_checksum, gnc_dataset_path: position i of each list describes the same dataset)."""
    from .provenance import merge_dataset_attrs

    codes: set[str] = set()
    per_file = []
    for p in paths:
        with xr.open_dataset(p, engine="netcdf4") as ds:
            if "gnc_code_version" in ds.attrs:
                codes.add(str(ds.attrs["gnc_code_version"]))
            per_file.append(dict(ds.attrs))
    out = merge_dataset_attrs(*per_file)
    if codes:
        out["gnc_code_version"] = json.dumps(sorted(codes))
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
    data = {}
    for key, (name, long_name, units) in HISTORY_VARS.items():
        vals = [float(v) for v in history.get(key, [np.nan] * len(epochs))]
        data[name] = xr.DataArray(np.asarray(vals, dtype=float), dims=["epoch"],
                                  attrs={"long_name": long_name, "units": units})
    ds = xr.Dataset(data, coords={"epoch": epochs})
    ds = with_run_coords(ds, coords)
    ds.attrs = dict(attrs or {})
    return ds


#: columns of the final-epoch summary table (those present in the study)
SUMMARY_VARS = ("train_acc", "test_acc", "ncc_test_acc", "gnc1", "gnc2", "gnc3", "nc1", "min_angle",
                "gnc2_fraction", "code_distance", "train_loss")


def final_epoch_summary(study: xr.Dataset, variables=SUMMARY_VARS):
    """One row per trained run: its grid coordinates, its last checkpoint epoch that has metrics, and the
    main metrics there (a pandas DataFrame sorted by the run coordinates)."""
    cols = [v for v in variables if v in study.data_vars]
    frame = tidy_frame(study, cols)
    have = [v for v in ("gnc1", "test_acc", "train_acc") if v in frame.columns]
    if have:
        frame = frame.dropna(how="all", subset=have)
    keys = [d for d in RUN_DIMS if d in frame.columns]
    if frame.empty or "epoch" not in frame.columns:
        return frame
    last = frame.loc[frame.groupby(keys, sort=True)["epoch"].idxmax()]
    return last[keys + ["epoch"] + cols].sort_values(keys).reset_index(drop=True)


def build_study(metrics_path, history_paths, codes_path, *, config: dict, nc_out, csv_out,
                summary_out=None) -> xr.Dataset:
    """results/study.nc: metrics + training history + code comparisons, one Dataset; a tidy CSV of it
    and (``summary_out``) the final-epoch summary table (:func:`final_epoch_summary`) as CSV."""
    from .io import atomic_path, open_netcdf, write_json_atomic, write_netcdf
    from .provenance import merge_dataset_attrs, provenance

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
    for dim in RUN_DIMS:  # labels only other tables use (e.g. the UFM's tau grid in codes.nc) carry no run data
        if dim in study.dims:
            study = study.dropna(dim, how="all")
    attrs = {**provenance(stage="study", config=config)}
    attrs.update(merge_dataset_attrs(metrics.attrs, codes.attrs))
    study.attrs = attrs
    write_netcdf(study, nc_out)
    frame = tidy_frame(study)
    with atomic_path(csv_out) as tmp:
        frame.to_csv(tmp, index=False)
    write_json_atomic(str(csv_out).rsplit(".", 1)[0] + ".provenance.json", attrs)
    if summary_out is not None:
        with atomic_path(summary_out) as tmp:
            final_epoch_summary(study).to_csv(tmp, index=False, float_format="%.6g")
        write_json_atomic(str(summary_out).rsplit(".", 1)[0] + ".provenance.json", attrs)
    return study

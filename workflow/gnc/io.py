"""Atomic writes and netCDF helpers.

Every result file of gnc-study is written to a temporary file in the destination folder and
moved into place with :func:`os.replace`, so a reader (or Snakemake after a crash) never sees a
half-written file: either the old content or the complete new one exists. The file gets the mode a
plain ``open(path, "w")`` would give it (0666 minus the process umask), not the 0600 of the
temporary file, so collaborators in a shared group folder can read the results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def file_mode() -> int:
    """Mode of a newly created regular file: 0666 minus the process umask, read without changing it
    (Linux: /proc/self/status), else set and restored."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` atomically, on an
    exception remove it (``path`` stays untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix if suffix is not None else ".tmp" + path.suffix
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def json_default(o):
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays, paths, and sets (sorted, so
    the text and any hash of it do not depend on the set's iteration order)."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=repr)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".tmp.npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)


def file_digests(path: str | os.PathLike, algorithms=("sha256",), chunk: int = 1 << 20) -> dict:
    """Hex digests of a file for each algorithm (one pass), plus its ``size`` in bytes."""
    hashes = {a: hashlib.new(a, usedforsecurity=False) for a in algorithms}
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            for h in hashes.values():
                h.update(block)
            size += len(block)
    return {**{a: h.hexdigest() for a, h in hashes.items()}, "size": size}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    return file_digests(path, ("sha256",), chunk)["sha256"]


def _netcdf_attr(value: Any):
    """netCDF attributes hold strings and numbers only; everything else is stored as JSON."""
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    return json.dumps(value, sort_keys=True, default=json_default)


def write_netcdf(ds, path: str | os.PathLike, complevel: int = 4) -> None:
    """Write an xarray Dataset atomically with the netCDF4 engine, zlib-compressed (not string variables:
    netCDF4 cannot compress vlen strings), non-scalar attributes as JSON strings (any reader opens them)."""
    ds = ds.copy()
    ds.attrs = {k: _netcdf_attr(v) for k, v in ds.attrs.items() if v is not None}
    for name in list(ds.variables):
        ds[name].attrs = {k: _netcdf_attr(v) for k, v in ds[name].attrs.items() if v is not None}
    encoding = {name: {"zlib": True, "complevel": complevel, "shuffle": True}
                for name, var in ds.data_vars.items() if var.dtype.kind in "fiub" and var.ndim > 0}
    with atomic_path(path, suffix=".tmp.nc") as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)


def open_netcdf(path: str | os.PathLike):
    """Open a netCDF file fully into memory (the file handle is closed on return)."""
    import xarray as xr  # deferred: the Snakefile loads io (through gnc.data), xarray only for netCDF

    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()


def rst_escape(text: str) -> str:
    """Text made literal for reStructuredText (report captions and tables): markup characters escaped."""
    out = text.replace("\\", "\\\\")
    for ch in ("*", "`", "|"):
        out = out.replace(ch, "\\" + ch)
    # a word ending in "_" is an RST reference
    return re.sub(r"(\w)_(\W|$)", r"\1\\_\2", out)

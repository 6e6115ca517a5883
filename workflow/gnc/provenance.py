"""Provenance attributes carried by every result file, and a CLI that prints and verifies them.

``provenance(...)`` returns a flat dict of attributes:
  gnc_code_version   git commit (+ "-dirty" when the tree has uncommitted changes) or package version
  gnc_versions       JSON: python, torch, torchvision, snakemake, numpy, xarray, scipy, ...
  gnc_host / gnc_device   where it ran
  gnc_created        UTC timestamp
plus whatever the caller adds (config of the run, dataset name/version/checksum, seed, timings).

``gnc-provenance FILE...`` (or ``python -m gnc.provenance``) prints the provenance of netCDF,
checkpoint (.pt) or JSON files and verifies that the dataset checksums they name still match.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import importlib.metadata as _md
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "torchvision", "snakemake", "numpy", "xarray", "scipy", "netCDF4", "pandas",
            "scikit-learn", "seaborn", "matplotlib")

REPO_ROOT = Path(__file__).resolve().parents[2]


def utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = "not installed"
    return out


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Git commit of the workflow (with -dirty), else the package version."""
    env = os.environ.get("GNC_CODE_VERSION")
    if env:
        return env
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from . import __version__

        return f"gnc-study {__version__} (no git)"


def device_description(device: Any | None = None) -> str:
    try:
        import torch

        if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
            return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    except Exception:  # pragma: no cover - torch missing
        pass
    return f"{device or 'cpu'} ({platform.processor() or platform.machine()})"


def provenance(**extra: Any) -> dict[str, Any]:
    """Attributes for a result file. ``extra`` keys are prefixed with ``gnc_`` unless they already are."""
    attrs: dict[str, Any] = {
        "gnc_code_version": code_version(),
        "gnc_versions": json.dumps(package_versions(), sort_keys=True),
        "gnc_host": socket.gethostname(),
        "gnc_created": utcnow(),
    }
    for key, value in extra.items():
        key = key if key.startswith("gnc_") else f"gnc_{key}"
        if value is None:
            continue
        attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value, sort_keys=True,
                                                                                     default=str)
    return attrs


def dataset_attrs(manifest: dict) -> dict[str, Any]:
    """Provenance attributes naming a prepared dataset (from its manifest)."""
    return {
        "gnc_dataset": manifest.get("name"),
        "gnc_dataset_version": manifest.get("version"),
        "gnc_dataset_checksum": manifest.get("checksum"),
        "gnc_dataset_path": manifest.get("path"),
    }


# ----------------------------------------------------------------------------------------- CLI

def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if path.suffix == ".nc":
        import xarray as xr

        with xr.open_dataset(path, engine="netcdf4") as ds:
            return dict(ds.attrs)
    if path.suffix == ".pt":
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        return dict(state.get("provenance", {}))
    if path.suffix == ".json":
        obj = json.loads(path.read_text())
        return dict(obj.get("provenance", obj))
    if path.suffix == ".csv":
        sidecar = path.with_suffix(".provenance.json")
        if sidecar.exists():
            return json.loads(sidecar.read_text())
    raise ValueError(f"{path}: no provenance reader for {path.suffix!r} files")


def _decode(value):
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def verify_datasets(attrs: dict[str, Any], search_root: Path | None = None) -> list[str]:
    """Check each dataset named in ``attrs`` against its manifest. Returns a list of problems."""
    from .data import verify_prepared  # local import: data pulls in torch

    problems = []
    paths = _decode(attrs.get("gnc_dataset_path"))
    checksums = _decode(attrs.get("gnc_dataset_checksum"))
    if paths is None:
        return problems
    if isinstance(paths, str):
        paths, checksums = [paths], [checksums]
    for p, c in zip(paths, checksums):
        folder = Path(p)
        if not folder.is_absolute() and search_root is not None:
            folder = search_root / folder
        try:
            manifest = verify_prepared(folder)
        except Exception as exc:  # noqa: BLE001 - report every failure by name
            problems.append(f"{p}: {exc}")
            continue
        if c and manifest.get("checksum") != c:
            problems.append(f"{p}: checksum {manifest.get('checksum')} differs from recorded {c}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gnc-provenance", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="result files (.nc, .pt, .json, .csv with sidecar)")
    ap.add_argument("--root", default=".", help="workflow directory that relative dataset paths refer to")
    ap.add_argument("--no-verify", action="store_true", help="only print, do not re-hash datasets")
    args = ap.parse_args(argv)
    status = 0
    for f in args.files:
        print(f"== {f}")
        try:
            attrs = read_attrs(f)
        except Exception as exc:  # noqa: BLE001
            print(f"  ERROR: {exc}")
            status = 1
            continue
        for k in sorted(attrs):
            if k.startswith("gnc_"):
                v = _decode(attrs[k])
                text = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)
                print(f"  {k[4:]}: {text if len(text) < 400 else text[:400] + ' ...'}")
        if not args.no_verify:
            problems = verify_datasets(attrs, Path(args.root))
            if problems:
                status = 1
                for p in problems:
                    print(f"  CHECKSUM MISMATCH: {p}")
            elif attrs.get("gnc_dataset_path"):
                print("  datasets verified: checksums match")
    return status


if __name__ == "__main__":
    sys.exit(main())

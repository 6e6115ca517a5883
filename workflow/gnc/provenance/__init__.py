"""Provenance attributes carried by every result file (the README's table "What every result file
records" says what each means), and a CLI that prints and verifies them.

``provenance(**extra)`` returns a flat dict of ``gnc_*`` attributes: the code version (git commit of the
workflow, "-dirty" when workflow/, Snakefile or pyproject.toml differ from it; ``$GNC_CODE_VERSION``
wins), package versions, host, device, working directory, the start of the Snakemake job (else the time
this module was imported) and the time the attributes were made (UTC; ``gnc_created`` repeats ``gnc_finished``). Inside a
Snakemake job (``gnc.jobs.job`` calls :func:`set_job_context`) they also name the rule, wildcards,
resolved config, run spec, seed and code fingerprint; then come the caller's ``extra``. Files of one
dataset carry scalar ``gnc_dataset*`` attributes, combined files aligned JSON lists
(:func:`merge_dataset_attrs`).

The command line (``gnc-provenance``) is :mod:`gnc.provenance.__main__`. This module imports only the
standard library: it sits below the data and the fingerprint layers, which use it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata as _md
import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterable

from .. import __version__

PACKAGES = ("torch", "torchvision", "snakemake", "numpy", "xarray", "scipy", "netCDF4", "pandas",
            "scikit-learn", "seaborn", "matplotlib")

REPO_ROOT = Path(__file__).resolve().parents[3]
#: paths (relative to the repository root) whose changes make the code version "-dirty"
CODE_PATHS = ("workflow", "Snakefile", "pyproject.toml")

DATASET_KEYS = ("gnc_dataset", "gnc_dataset_version", "gnc_dataset_checksum", "gnc_dataset_path")
#: the manifest fields (and :func:`datasets_of` entries) that :data:`DATASET_KEYS` hold, in that order
_DATASET_FIELDS = ("name", "version", "checksum", "path")

#: attributes of the Snakemake job this process runs (see set_job_context)
_JOB: dict[str, Any] = {}


def utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


#: ``gnc_started`` outside a Snakemake job: when this module was imported, early in any process using gnc
_IMPORTED = utcnow()


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
def _git_state() -> tuple[str, int]:
    env = os.environ.get("GNC_CODE_VERSION")
    if env:
        return env, int(env.endswith("-dirty"))

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        if Path(git("rev-parse", "--show-toplevel")).resolve() != REPO_ROOT:
            raise subprocess.SubprocessError("not the repository of the workflow")
        dirty = git("status", "--porcelain", "--", *(p for p in CODE_PATHS if (REPO_ROOT / p).exists()))
        return commit + ("-dirty" if dirty else ""), int(bool(dirty))
    except (OSError, subprocess.SubprocessError):
        return f"gnc-study {__version__} (no git)", -1


def code_version() -> str:
    """Git commit of the workflow (with -dirty), else the package version. ``$GNC_CODE_VERSION`` wins."""
    return _git_state()[0]


def device_description(device: Any | None = None) -> str:
    try:
        if device is not None and str(device).startswith("cuda"):  # torch only where a GPU is named
            import torch  # deferred: provenance is stdlib-only for torch-free jobs

            if torch.cuda.is_available():
                return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    except Exception:  # pragma: no cover - torch missing
        pass
    return f"{device or 'cpu'} ({platform.processor() or platform.machine()})"


def _attr_value(value: Any):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (str, int, float)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _gnc_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Keys prefixed with ``gnc_`` unless they already are; ``None`` values dropped, booleans as 0/1,
    non-scalar values stored as JSON."""
    return {(k if k.startswith("gnc_") else f"gnc_{k}"): _attr_value(v) for k, v in attrs.items() if v is not None}


def set_job_context(**attrs: Any) -> None:
    """Attributes of the job this process runs, added to every :func:`provenance` (as :func:`_gnc_attrs`);
    no arguments: none."""
    _JOB.clear()
    _JOB.update(_gnc_attrs(attrs))


def provenance(**extra: Any) -> dict[str, Any]:
    """Attributes for a result file: those of the module docstring and ``extra`` (as :func:`_gnc_attrs`)."""
    now = utcnow()
    version, dirty = _git_state()
    attrs: dict[str, Any] = {
        "gnc_code_version": version,
        "gnc_code_dirty": dirty,
        "gnc_versions": json.dumps(package_versions(), sort_keys=True),
        "gnc_host": socket.gethostname(),
        "gnc_device": device_description(None),
        "gnc_workdir": os.getcwd(),
        "gnc_started": _IMPORTED,
        "gnc_finished": now,
        "gnc_created": now,
    }
    return {**attrs, **_JOB, **_gnc_attrs(extra)}


def dataset_attrs(manifest: dict) -> dict[str, Any]:
    """Provenance attributes naming a prepared dataset (from its manifest)."""
    return {key: manifest.get(f) for key, f in zip(DATASET_KEYS, _DATASET_FIELDS)}


def decode_attr(value):
    """An attribute as written by :func:`provenance`: JSON text (a list or an object) decoded, else as is."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _as_list(value) -> list:
    value = decode_attr(value)
    if hasattr(value, "tolist"):  # numpy scalars / arrays read back from netCDF
        value = value.tolist()
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def datasets_of(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """The datasets a file names: [{name, version, checksum, path}], from scalar or list attributes."""
    cols = [_as_list(attrs.get(k)) for k in DATASET_KEYS]
    out = []
    for i in range(max(map(len, cols))):
        ds = dict(zip(_DATASET_FIELDS, (c[i] if i < len(c) else None for c in cols)))
        out.append({**ds, "path": None if ds["path"] is None else str(ds["path"])})
    return out


def merge_dataset_attrs(*attr_dicts: dict[str, Any]) -> dict[str, str]:
    """Dataset attributes of a file made from files with the given attributes: aligned JSON lists, one
    position per dataset (duplicates removed), sorted by name, version, path."""
    seen = {}
    for attrs in attr_dicts:
        for e in datasets_of(attrs):
            seen.setdefault(tuple(str(e[f]) for f in ("name", "version", "path", "checksum")), e)
    rows = [seen[k] for k in sorted(seen)]
    if not rows:
        return {}
    return {key: json.dumps([r.get(f) for r in rows]) for key, f in zip(DATASET_KEYS, _DATASET_FIELDS)}


# ----------------------------------------------------------------------------------------- reading

SIDECAR_SUFFIXES = (".csv", ".png", ".pdf", ".svg")


def sidecar_of(path: str | os.PathLike) -> Path:
    """``results/figures/x.png`` -> ``results/figures/x.provenance.json``."""
    return Path(path).with_suffix(".provenance.json")


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance attributes of one result file (see the module docstring for the kinds)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".nc":
        import xarray as xr  # deferred: provenance is stdlib-only (the Snakefile loads it)

        with xr.open_dataset(path, engine="netcdf4") as ds:
            return dict(ds.attrs)
    if suffix == ".pt":
        import torch  # deferred: provenance is stdlib-only for torch-free jobs

        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "provenance" not in state:
            raise ValueError(f"{path}: checkpoint without a 'provenance' entry")
        attrs = dict(state["provenance"])
        if "gnc_run_config" not in attrs and isinstance(state.get("spec"), dict):
            attrs["gnc_run_config"] = json.dumps(state["spec"], sort_keys=True, default=str)
        return attrs
    if suffix == ".json":
        obj = json.loads(path.read_text())
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: not a JSON object")
        if path.name == "manifest.json" and "files" in obj and "checksum" in obj:  # a prepared dataset
            attrs = dict(obj.get("provenance") or {})
            attrs.update(dataset_attrs({**obj, "path": str(path.parent)}))
            return attrs
        return dict(obj["provenance"]) if isinstance(obj.get("provenance"), dict) else obj
    if suffix in SIDECAR_SUFFIXES:
        side = sidecar_of(path)
        if side.is_file():
            return json.loads(side.read_text())
        raise ValueError(f"{path}: no provenance sidecar {side.name}")
    raise ValueError(f"{path}: no provenance reader for {suffix!r} files")


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder stands for the result files directly in it (e.g. a run's ckpt/)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            inner = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".pt", ".nc"))
            out.extend(inner or [p])
        else:
            out.append(p)
    return out


# ----------------------------------------------------------------------------------------- summaries

def summary_lines(attrs: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs: the essentials of a file's provenance, for reports and the CLI header."""
    out = []
    code = attrs.get("gnc_code_version")
    if code is not None:
        out.append(("code", str(decode_attr(code))))
    if attrs.get("gnc_rule"):
        wc = decode_attr(attrs.get("gnc_wildcards"))
        wc_text = ", ".join(f"{k}={v}" for k, v in wc.items()) if isinstance(wc, dict) else ""
        out.append(("job", f"rule {attrs['gnc_rule']}" + (f" ({wc_text})" if wc_text else "")))
    if attrs.get("gnc_started") or attrs.get("gnc_finished") or attrs.get("gnc_created"):
        out.append(("time", f"{attrs.get('gnc_started', '?')} -> "
                            f"{attrs.get('gnc_finished', attrs.get('gnc_created', '?'))}"))
    if attrs.get("gnc_device"):
        out.append(("device", f"{attrs['gnc_device']} on {attrs.get('gnc_host', '?')}"))
    versions = decode_attr(attrs.get("gnc_versions"))
    if isinstance(versions, dict):
        out.append(("software", ", ".join(f"{k} {versions[k]}" for k in
                                          ("python", "torch", "torchvision", "snakemake", "numpy", "xarray")
                                          if k in versions)))
    if attrs.get("gnc_seed") is not None:
        out.append(("seed", str(decode_attr(attrs["gnc_seed"]))))
    for ds in datasets_of(attrs):
        out.append(("dataset", f"{ds['name']} {ds['version']} (checksum {str(ds['checksum'])[:16]}..., "
                               f"{ds['path']})"))
    sources = decode_attr(attrs.get("gnc_sources"))
    if isinstance(sources, dict):
        items = [(str(p), rec.get("sha256") if isinstance(rec, dict) else None) for p, rec in sources.items()]
        # the same file recorded once by absolute and once by relative path: list it once
        items = [(p, sha) for p, sha in items
                 if not (Path(p).is_absolute() and any(q != p and sha2 == sha and p.endswith("/" + q)
                                                       for q, sha2 in items))]
        for p, sha in items:
            out.append(("input", p + (f" (sha256 {sha[:16]}...)" if sha else "")))
    return out


def summary_rst(attrs: dict[str, Any], title: str = "Provenance of the data behind this item") -> str:
    """A short reStructuredText block (for report captions); values are inline literals."""
    lines = [f"**{title}**", ""]
    for label, text in summary_lines(attrs):
        lines.append(f"- {label}: ``{text.replace('`', chr(39))}``")
    if attrs.get("gnc_config"):
        lines.append("- configuration: the study's resolved config (shown on the report's main page) is stored "
                     "in the ``gnc_config`` attribute; print it with ``gnc-provenance --full FILE``")
    return "\n".join(lines) + "\n"

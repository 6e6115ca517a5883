"""Provenance attributes carried by every result file, and a CLI that prints and verifies them.

``provenance(**extra)`` returns a flat dict of ``gnc_*`` attributes:

  gnc_code_version   git commit of the workflow (+ "-dirty" when workflow/, Snakefile or pyproject.toml
                     differ from it, untracked files included), else the package version
  gnc_code_dirty     1 / 0 (-1: no git)
  gnc_versions       JSON: python, torch, torchvision, snakemake, numpy, xarray, scipy, ...
  gnc_host, gnc_device   where it ran (device: "cpu (x86_64)" unless the caller names another)
  gnc_started        start of the Snakemake job (else of the process) that wrote the file, UTC
  gnc_finished       when the attributes were made (just before the file is written), UTC;
                     ``gnc_created`` is the same time (kept for older readers)

inside a Snakemake job (``gnc.jobs.job`` calls :func:`set_job_context`) also

  gnc_rule, gnc_wildcards   the job
  gnc_config         the study's resolved configuration (defaults filled in), JSON
  gnc_run_config     for jobs of one training run: the run's resolved spec (recipe + grid point), JSON
  gnc_seed           the run's seed (codes jobs: the solvers' seed)
  gnc_code_fingerprint   sha256 of the code the job ran: its script and the gnc definitions it reaches
                     (gnc.fingerprint; comments and docstrings do not count)
  gnc_code_scope     JSON {"script", "select"}: what that fingerprint covers

plus whatever the caller adds (dataset name/version/checksum/path, stage, options...). Files that
depend on one dataset carry scalar ``gnc_dataset``, ``gnc_dataset_version``, ``gnc_dataset_checksum``,
``gnc_dataset_path``; combined files carry the same keys as aligned JSON lists
(:func:`merge_dataset_attrs`).

``gnc-provenance FILE...`` (or ``python -m gnc.provenance``) prints the provenance of any result file —
netCDF (.nc), checkpoint (.pt, or a ckpt/ folder), JSON sidecars, a dataset's manifest.json, and
.csv/.png/.pdf/.svg files through their ``<stem>.provenance.json`` sidecar — and re-hashes every
prepared dataset it names. Exit status 1 when a file has no readable provenance or a dataset no
longer matches (the message names the file that differs), else 0. ``gnc-provenance --stale PATH...``
says which results were made by code that has changed since (recomputes the fingerprints from the
code on disk, runs nothing).
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
import time
from pathlib import Path
from typing import Any, Iterable

PACKAGES = ("torch", "torchvision", "snakemake", "numpy", "xarray", "scipy", "netCDF4", "pandas",
            "scikit-learn", "seaborn", "matplotlib")

REPO_ROOT = Path(__file__).resolve().parents[2]
#: paths (relative to the repository root) whose changes make the code version "-dirty"
CODE_PATHS = ("workflow", "Snakefile", "pyproject.toml")

DATASET_KEYS = ("gnc_dataset", "gnc_dataset_version", "gnc_dataset_checksum", "gnc_dataset_path")

#: attributes of the Snakemake job this process runs (see set_job_context)
_JOB: dict[str, Any] = {}


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def utcnow() -> str:
    return _iso(time.time())


@functools.lru_cache(maxsize=1)
def process_start() -> str:
    """Start time of this process (Linux /proc; elsewhere the time gnc.provenance was first used)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return _iso(btime + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return utcnow()


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
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        top = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        if Path(top).resolve() != REPO_ROOT:
            raise subprocess.SubprocessError("not the repository of the workflow")
        paths = [p for p in CODE_PATHS if (REPO_ROOT / p).exists()]
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", *paths],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else ""), int(bool(dirty))
    except (OSError, subprocess.SubprocessError):
        from . import __version__

        return f"gnc-study {__version__} (no git)", -1


def code_version() -> str:
    """Git commit of the workflow (with -dirty), else the package version. ``$GNC_CODE_VERSION`` wins."""
    return _git_state()[0]


def code_dirty() -> int:
    """1 when the workflow code differs from its git commit, 0 when not, -1 without git."""
    return _git_state()[1]


def device_description(device: Any | None = None) -> str:
    try:
        if device is not None and str(device).startswith("cuda"):  # torch only where a GPU is named
            import torch

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


# ------------------------------------------------------------------------------- job context

def set_job_context(**attrs: Any) -> None:
    """Attributes of the job this process runs, added to every :func:`provenance` (keys get ``gnc_``)."""
    _JOB.clear()
    for key, value in attrs.items():
        if value is not None:
            _JOB[key if key.startswith("gnc_") else f"gnc_{key}"] = _attr_value(value)


def clear_job_context() -> None:
    _JOB.clear()


def code_fingerprint_attrs(smk) -> dict[str, Any]:
    """``code_fingerprint`` (sha256 of the code the job runs, see gnc.fingerprint) and ``code_scope``
    (the script and dispatch-table selection it covers, so ``--stale`` can recompute it), from the
    rule's ``params.code``."""
    try:
        code = getattr(smk.params, "code", None)
    except Exception:  # noqa: BLE001 - provenance must never break a job
        code = None
    if not isinstance(code, dict) or not code.get("fingerprint"):
        return {}
    scope = {"script": code.get("script"), **({"select": code["select"]} if code.get("select") else {})}
    return {"code_fingerprint": code["fingerprint"], "code_scope": scope}


# ------------------------------------------------------------------------------- attributes

def provenance(**extra: Any) -> dict[str, Any]:
    """Attributes for a result file. ``extra`` keys are prefixed with ``gnc_`` unless they already are;
    ``None`` values are dropped, non-scalar values stored as JSON."""
    now = utcnow()
    attrs: dict[str, Any] = {
        "gnc_code_version": code_version(),
        "gnc_code_dirty": code_dirty(),
        "gnc_versions": json.dumps(package_versions(), sort_keys=True),
        "gnc_host": socket.gethostname(),
        "gnc_device": device_description(None),
        "gnc_workdir": os.getcwd(),
        "gnc_started": process_start(),
        "gnc_finished": now,
        "gnc_created": now,
    }
    attrs.update(_JOB)
    for key, value in extra.items():
        key = key if key.startswith("gnc_") else f"gnc_{key}"
        if value is None:
            continue
        attrs[key] = _attr_value(value)
    return attrs


def dataset_attrs(manifest: dict) -> dict[str, Any]:
    """Provenance attributes naming a prepared dataset (from its manifest)."""
    return {
        "gnc_dataset": manifest.get("name"),
        "gnc_dataset_version": manifest.get("version"),
        "gnc_dataset_checksum": manifest.get("checksum"),
        "gnc_dataset_path": manifest.get("path"),
    }


def _decode(value):
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _as_list(value) -> list | None:
    value = _decode(value)
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist"):  # numpy scalars / arrays read back from netCDF
        value = value.tolist()
        return value if isinstance(value, list) else [value]
    return [value]


def datasets_of(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """The datasets a file names: [{name, version, checksum, path}], from scalar or list attributes.
    Name and version missing from older files are read off the path ``<root>/<name>/<version>``."""
    cols = {k: _as_list(attrs.get(k)) for k in DATASET_KEYS}
    n = max((len(v) for v in cols.values() if v is not None), default=0)
    out = []
    for i in range(n):
        name, version, checksum, path = (cols[k][i] if cols[k] is not None and i < len(cols[k]) else None
                                         for k in DATASET_KEYS)
        if path and (name is None or version is None):
            parts = Path(str(path)).parts
            if len(parts) >= 2:
                name = name if name is not None else parts[-2]
                version = version if version is not None else parts[-1]
        out.append({"name": name, "version": version, "checksum": checksum,
                    "path": None if path is None else str(path)})
    return out


def dataset_list_attrs(entries: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Aligned JSON-list attributes (one position per dataset, sorted by name, version, path) for a file
    combining several datasets; duplicates removed."""
    seen = {}
    for e in entries:
        key = (str(e.get("name")), str(e.get("version")), str(e.get("path")), str(e.get("checksum")))
        seen.setdefault(key, e)
    rows = [seen[k] for k in sorted(seen)]
    if not rows:
        return {}
    return {"gnc_dataset": json.dumps([r.get("name") for r in rows]),
            "gnc_dataset_version": json.dumps([r.get("version") for r in rows]),
            "gnc_dataset_checksum": json.dumps([r.get("checksum") for r in rows]),
            "gnc_dataset_path": json.dumps([r.get("path") for r in rows])}


def merge_dataset_attrs(*attr_dicts: dict[str, Any]) -> dict[str, str]:
    """Dataset attributes of a file made from files with the given attributes (aligned lists)."""
    return dataset_list_attrs(e for a in attr_dicts for e in datasets_of(a))


# ----------------------------------------------------------------------------------------- reading

SIDECAR_SUFFIXES = (".csv", ".png", ".pdf", ".svg")


def sidecar_of(path: str | os.PathLike) -> Path:
    """``results/figures/x.png`` -> ``results/figures/x.provenance.json``."""
    path = Path(path)
    return path.with_name(path.name[: -len(path.suffix)] + ".provenance.json")


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance attributes of one result file (see the module docstring for the kinds)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".nc":
        import xarray as xr

        with xr.open_dataset(path, engine="netcdf4") as ds:
            return dict(ds.attrs)
    if suffix == ".pt":
        import torch

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


# ----------------------------------------------------------------------------------------- verifying

def _candidate_folders(path: str, search_root: Path | None, near: Path | None,
                       workdir: str | None = None) -> list[Path]:
    p = Path(path)
    if p.is_absolute():
        return [p]
    roots = []
    if search_root is not None:
        roots.append(Path(search_root))
    if near is not None:  # the working directory of a run: an ancestor of the result file (moved with it)
        roots.extend(Path(near).resolve().parents)
    if workdir:  # the working directory the file's job ran in (recorded as gnc_workdir)
        roots.append(Path(workdir))
    roots.append(Path.cwd())
    return [r / p for r in roots]


def resolve_dataset_folder(path: str, search_root: Path | None = None, near: Path | None = None,
                           workdir: str | None = None) -> Path:
    """The folder a recorded (possibly relative) dataset path refers to: the first of these that holds
    a manifest.json: relative to ``search_root``, to an ancestor of the result file ``near`` (a project
    copied or moved as a whole), to the job's recorded working directory ``workdir`` (results written
    outside the project), to the current directory."""
    cands = _candidate_folders(path, search_root, near, workdir)
    for c in cands:
        if (c / "manifest.json").is_file():
            return c
    return cands[0]


def verify_datasets(attrs: dict[str, Any], search_root: Path | None = None, near: Path | None = None,
                    cache: dict | None = None) -> list[str]:
    """Re-hash each prepared dataset named in ``attrs`` and compare with the recorded checksum.
    Returns a list of problems (empty: all match); each names the file or folder that differs."""
    from .data import verify_prepared  # local import: data pulls in numpy

    cache = {} if cache is None else cache
    problems = []
    for ds in datasets_of(attrs):
        if not ds["path"]:
            if ds["checksum"]:
                problems.append(f"dataset {ds['name']} {ds['version']}: checksum recorded without a path")
            continue
        folder = resolve_dataset_folder(ds["path"], search_root, near, _decode(attrs.get("gnc_workdir")))
        key = str(folder.resolve())
        if key not in cache:
            try:
                cache[key] = verify_prepared(folder)
            except Exception as exc:  # noqa: BLE001 - report every failure by name
                cache[key] = exc
        res = cache[key]
        if isinstance(res, Exception):
            problems.append(f"{ds['path']}: {res}")
        elif ds["checksum"] and res.get("checksum") != ds["checksum"]:
            problems.append(f"{folder / 'manifest.json'}: dataset checksum {res.get('checksum')} differs from "
                            f"the recorded {ds['checksum']} (the dataset was re-prepared or edited)")
    return problems


# ----------------------------------------------------------------------------------------- summaries

def summary_lines(attrs: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs: the essentials of a file's provenance, for reports and the CLI header."""
    out = []
    code = attrs.get("gnc_code_version")
    if code is not None:
        out.append(("code", str(_decode(code))))
    if attrs.get("gnc_rule"):
        wc = _decode(attrs.get("gnc_wildcards"))
        wc_text = ", ".join(f"{k}={v}" for k, v in wc.items()) if isinstance(wc, dict) else ""
        out.append(("job", f"rule {attrs['gnc_rule']}" + (f" ({wc_text})" if wc_text else "")))
    if attrs.get("gnc_started") or attrs.get("gnc_finished") or attrs.get("gnc_created"):
        out.append(("time", f"{attrs.get('gnc_started', '?')} -> "
                            f"{attrs.get('gnc_finished', attrs.get('gnc_created', '?'))}"))
    if attrs.get("gnc_device"):
        out.append(("device", f"{attrs['gnc_device']} on {attrs.get('gnc_host', '?')}"))
    versions = _decode(attrs.get("gnc_versions"))
    if isinstance(versions, dict):
        out.append(("software", ", ".join(f"{k} {versions[k]}" for k in
                                          ("python", "torch", "torchvision", "snakemake", "numpy", "xarray")
                                          if k in versions)))
    if attrs.get("gnc_seed") is not None:
        out.append(("seed", str(_decode(attrs["gnc_seed"]))))
    for ds in datasets_of(attrs):
        out.append(("dataset", f"{ds['name']} {ds['version']} (checksum {str(ds['checksum'])[:16]}..., "
                               f"{ds['path']})"))
    sources = _decode(attrs.get("gnc_sources"))
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


# ----------------------------------------------------------------------------------------- CLI

def _print_attrs(attrs: dict[str, Any], full: bool) -> None:
    for label, text in summary_lines(attrs):
        print(f"  [{label}] {text}")
    for k in sorted(attrs):
        if not str(k).startswith("gnc_"):
            continue
        v = _decode(attrs[k])
        text = json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else str(v)
        if not full and len(text) > 400:
            text = text[:400] + f" ... ({len(text)} chars; --full prints all)"
        print(f"  {k[4:]}: {text}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="gnc-provenance",
        description="Print the provenance of gnc-study result files and verify the datasets they name.")
    ap.add_argument("files", nargs="+",
                    help="result files: .nc, .pt (or a ckpt/ folder), .json sidecar or dataset manifest.json, "
                         ".csv/.png/.pdf/.svg (through <stem>.provenance.json)")
    ap.add_argument("--root", default=None,
                    help="workflow working directory that relative dataset paths refer to (default: found from "
                         "the file's location, else the current directory)")
    ap.add_argument("--no-verify", action="store_true", help="only print, do not re-hash datasets")
    ap.add_argument("--full", action="store_true", help="print long attributes (config, sources) in full")
    ap.add_argument("--json", action="store_true", help="print one JSON object {file: attributes} instead")
    ap.add_argument("--stale", action="store_true",
                    help="only say which results were made by code that has changed since (compares each file's "
                         "gnc_code_fingerprint with the code now on disk; runs nothing). Folders: every result "
                         "file under them. Exit status 1 when a file is stale or has no fingerprint")
    ap.add_argument("--code-root", default=None,
                    help="with --stale: the workflow/ folder holding scripts/ and gnc/ (default: this package's)")
    args = ap.parse_args(argv)
    if args.stale:
        from .fingerprint import report_stale

        return report_stale(args.files, args.code_root)
    status = 0
    cache: dict = {}
    collected: dict[str, Any] = {}
    root = Path(args.root) if args.root else None
    for f in expand_paths(args.files):
        if not args.json:
            print(f"== {f}")
        try:
            attrs = read_attrs(f)
            if not any(str(k).startswith("gnc_") for k in attrs):
                raise ValueError(f"{f}: no gnc_* provenance attributes")
        except Exception as exc:  # noqa: BLE001 - report every unreadable file and go on
            print(f"  ERROR: {exc}", file=sys.stderr if args.json else sys.stdout)
            status = 1
            continue
        problems = [] if args.no_verify else verify_datasets(attrs, root, near=Path(f), cache=cache)
        if args.json:
            collected[str(f)] = {"attributes": {k: _decode(v) for k, v in attrs.items()},
                                 "problems": problems}
        else:
            _print_attrs(attrs, args.full)
            if problems:
                for p in problems:
                    print(f"  CHECKSUM MISMATCH: {p}")
            elif not args.no_verify and datasets_of(attrs):
                print(f"  datasets verified: {len(datasets_of(attrs))} checksum(s) match")
        if problems:
            status = 1
    if args.json:
        print(json.dumps(collected, indent=2, sort_keys=True, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())

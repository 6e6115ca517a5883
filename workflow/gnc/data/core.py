"""Prepared, versioned, checksummed datasets (the contract of ``gnc.data`` in ARCHITECTURE.md).

Folder layout written by :func:`prepare` (``<root>/<name>/<version>/``)::

    train_x.npy   uint8 N×C×H×W          train_y.npy   int64 N (labels 0..num_classes-1)
    test_x.npy    uint8 M×C×H×W          test_y.npy    int64 M
    train_ids.npy int64 N: id of each kept sample in the source's own train order (sub-sampling record)
    test_ids.npy  int64 M
    manifest.json written last; a folder without it is not a prepared dataset

``manifest.json``: name, version, format_version, source {kind, files with checksums or generator
parameters, ...}, options (the resolved spec, defaults filled in), classes (names), class_ids,
num_classes, shape [C, H, W], counts {train/test: {total, per_class}}, subsample, files
{filename: sha256}, checksum (see :func:`dataset_checksum`), seconds, provenance.

The version (:func:`version_id`) is ``v<FORMAT_VERSION>-<12 hex>``: the first 12 hex digits of a
sha256 over (FORMAT_VERSION, source kind, the source's cheap identity, the content-affecting
options). It is computed without reading any image data, so Snakemake can compute it while it
builds the DAG; a changed input file, generator parameter or preparation option gives a new version.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import io as gio
from ..provenance import datasets_of, decode_attr, provenance
from .errors import DatasetIntegrityError, DatasetNotFoundError, SpecError
from .sources import SOURCES
from .sources.base import Source, resolve_root

#: bump when the prepared layout or a source's preparation code changes what it writes
FORMAT_VERSION = 1

MANIFEST = "manifest.json"
ARRAY_FILES = ("train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy", "train_ids.npy", "test_ids.npy")
REQUIRED_FILES = ("train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy")

_PER_SPLIT_INT = {"type": ["integer", "null"], "minimum": 1}

#: spec keys every source accepts
COMMON_SCHEMA: dict[str, dict] = {
    "source": {"type": "string", "description": "source kind (default: the dataset name)"},
    "max_per_class": {
        "default": None,
        "description": "balanced sub-sampling: keep at most this many samples per class (seeded). An "
                       "integer applies to both splits; {train: n, test: m} per split; null keeps all.",
        "oneOf": [
            {"type": "null"},
            {"type": "integer", "minimum": 1},
            {"type": "object", "properties": {"train": _PER_SPLIT_INT, "test": _PER_SPLIT_INT},
             "additionalProperties": False},
        ],
    },
    "subsample_seed": {"type": "integer", "minimum": 0, "default": 0,
                       "description": "seed of the balanced sub-sampling"},
    "optional": {"type": "boolean", "description": "the study runs without this dataset when its source is "
                                                   "unavailable (gnc.config); not a preparation option"},
}

#: spec keys of the study, not of the data: accepted in a spec, never part of its version
STUDY_KEYS = frozenset({"optional"})


def _build_schema(src: Source) -> dict:
    props = {**COMMON_SCHEMA, **copy.deepcopy(src.schema)}
    props["source"] = {**props["source"], "const": src.kind}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"gnc.data spec for source '{src.kind}'",
        "description": src.description,
        "type": "object",
        "properties": props,
        "required": list(src.required),
        "additionalProperties": False,
    }


#: JSON schema of the spec dict, per source kind (for the config schema)
SPEC_SCHEMA: dict[str, dict] = {kind: _build_schema(src) for kind, src in SOURCES.items()}


# ------------------------------------------------------------------------------------ spec handling

def resolve_spec(name: str, spec: dict | None) -> tuple[Source, dict]:
    """Validate ``spec`` against its source's schema and return (source, options with defaults)."""
    spec = dict(spec or {})
    kind = spec.get("source", name)
    if kind not in SOURCES:
        raise SpecError(f"dataset {name!r}: unknown source {kind!r}; known sources: "
                        f"{', '.join(sorted(SOURCES))}")
    src, schema = SOURCES[kind], SPEC_SCHEMA[kind]
    if "path" in spec and "root" in schema["properties"]:
        raise SpecError(f"dataset {name!r} (source {kind}): the folder of the raw files is the key 'root' "
                        f"(as for every source), not 'path'")
    opts = {"source": kind}
    for key, prop in schema["properties"].items():
        if key in spec:
            opts[key] = copy.deepcopy(spec[key])
        elif "default" in prop:
            opts[key] = copy.deepcopy(prop["default"])
    import jsonschema  # here, not at the top: the jobs that only load prepared data never validate a spec

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors({**opts, **spec}),
                    key=lambda e: [str(x) for x in e.path])
    if errors:
        msgs = "; ".join(f"{'/'.join(map(str, e.path)) or '(spec)'}: {e.message}" for e in errors)
        raise SpecError(f"dataset {name!r} (source {kind}): invalid spec: {msgs}")
    mpc = opts["max_per_class"]  # null, int or {train, test}: normalised to {train, test}
    opts["max_per_class"] = {s: mpc.get(s) if isinstance(mpc, dict) else mpc for s in ("train", "test")}
    return src, opts


def version_id(name: str, spec: dict | None) -> str:
    """``v<FORMAT_VERSION>-<12 hex>`` from the source identity and the preparation options (cheap)."""
    src, opts = resolve_spec(name, spec)
    options = {k: v for k, v in opts.items() if k not in src.non_content | STUDY_KEYS}
    if options["max_per_class"] == {"train": None, "test": None}:
        options.pop("subsample_seed")  # no sub-sampling: its seed cannot change the content
    payload = {"format_version": FORMAT_VERSION, "source": src.kind, "identity": src.identity(opts),
               "options": options}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"v{FORMAT_VERSION}-{digest[:12]}"


def num_classes(name: str, spec: dict | None) -> int:
    """Number of classes the prepared dataset will have (cheap; for config validation).

    Also checks (with ``stat`` only) that the source can be prepared here: raw files present, or
    ``download: true``. Raises :class:`DatasetNotFoundError` naming the expected path otherwise, so
    a config can skip an optional dataset early. (:func:`version_id` does not check this, so paths
    of already prepared datasets can be computed after the raw files are gone.)
    """
    src, opts = resolve_spec(name, spec)
    reason = None if opts.get("download") else src.unavailable(opts)
    if reason:
        raise DatasetNotFoundError(f"dataset {name!r}: {reason}")
    return int(src.num_classes(opts))


def download_plan(name: str, spec: dict | None) -> dict | None:
    """What :func:`prepare` would download: ``{"target": raw folder, "files": [(url, bytes or None)]}``,
    or None when nothing is fetched (raw files present, or ``download`` off). Cheap (``stat`` only)."""
    src, opts = resolve_spec(name, spec)
    if not opts.get("download") or not src.unavailable(opts):
        return None
    return {"target": str(resolve_root(opts)), "files": list(src.downloads(opts))}


def available(name: str, spec: dict | None) -> bool:
    """Whether :func:`prepare` can run without downloading (raw files present / generator usable)."""
    src, opts = resolve_spec(name, spec)
    return not src.unavailable(opts)


# ------------------------------------------------------------------------------------ sub-sampling

def balanced_subsample(y: np.ndarray, num_classes: int, max_per_class: int | None, seed: int,
                       split: str) -> np.ndarray:
    """Indices (sorted) keeping at most ``max_per_class`` samples of each class, chosen by a seeded
    permutation per class. ``None`` keeps everything."""
    if max_per_class is None:
        return np.arange(len(y), dtype=np.int64)
    keep = []
    for k in range(num_classes):
        idx = np.flatnonzero(y == k)
        if len(idx) > max_per_class:
            rng = np.random.default_rng([seed, ("train", "test").index(split), k])
            idx = np.sort(rng.permutation(idx)[:max_per_class])
        keep.append(idx)
    return np.sort(np.concatenate(keep))


# ------------------------------------------------------------------------------------ checksums

def dataset_checksum(files: dict[str, str]) -> str:
    """sha256 over the lines ``"<sha256>  <filename>\\n"`` sorted by filename (sha256sum format)."""
    text = "".join(f"{files[f]}  {f}\n" for f in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DatasetIntegrityError(
            f"{path}: missing; {path.parent} is not a prepared dataset (preparation not run or interrupted)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetIntegrityError(f"{path}: not valid JSON ({exc})") from exc


def verify_prepared(folder: str | Path) -> dict:
    """Re-hash every file listed in the manifest; return the manifest or raise DatasetIntegrityError."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    files = manifest.get("files")
    unlisted = [f for f in REQUIRED_FILES if not isinstance(files, dict) or f not in files]
    if unlisted:
        raise DatasetIntegrityError(f"{folder / MANIFEST}: required files {unlisted} not in its file table")
    for fname in sorted(files):
        path = folder / fname
        if not path.is_file():
            raise DatasetIntegrityError(f"{path}: missing (manifest sha256 {files[fname]})")
        actual = gio.sha256_file(path)
        if actual != files[fname]:
            raise DatasetIntegrityError(f"{path}: sha256 mismatch: manifest {files[fname]}, file {actual}")
    recomputed = dataset_checksum(files)
    if manifest.get("checksum") != recomputed:
        raise DatasetIntegrityError(
            f"{folder / MANIFEST}: checksum mismatch: manifest {manifest.get('checksum')}, "
            f"recomputed from its file table {recomputed}")
    return manifest


# ------------------------------------------------------------------------------------ verify results' datasets

def _dataset_folder(path: str, search_root: Path | None, near: Path | None, workdir: str | None) -> Path:
    """The folder a recorded (possibly relative) dataset path refers to: the first of these that holds
    a manifest.json: relative to ``search_root``, to an ancestor of the result file ``near`` (a project
    copied or moved as a whole), to the job's recorded working directory ``workdir`` (results written
    outside the project), to the current directory."""
    if Path(path).is_absolute():
        return Path(path)
    roots = [] if search_root is None else [search_root]
    if near is not None:  # the working directory of a run: an ancestor of the result file (moved with it)
        roots += Path(near).resolve().parents
    if workdir:  # the working directory the file's job ran in (recorded as gnc_workdir)
        roots.append(workdir)
    cands = [Path(r) / path for r in [*roots, Path.cwd()]]
    return next((c for c in cands if (c / MANIFEST).is_file()), cands[0])


def verify_datasets(attrs: dict[str, Any], search_root: Path | None = None, near: Path | None = None,
                    cache: dict | None = None) -> list[str]:
    """Re-hash each prepared dataset named in a result file's provenance ``attrs`` and compare with the
    recorded checksum (``cache``: {folder: manifest or error}, shared across files). Returns a list of
    problems (empty: all match); each names the file or folder that differs."""
    cache = {} if cache is None else cache
    problems = []
    for ds in datasets_of(attrs):
        if not ds["path"]:
            if ds["checksum"]:
                problems.append(f"dataset {ds['name']} {ds['version']}: checksum recorded without a path")
            continue
        folder = _dataset_folder(ds["path"], search_root, near, decode_attr(attrs.get("gnc_workdir")))
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
            problems.append(f"{folder / MANIFEST}: dataset checksum {res.get('checksum')} differs from "
                            f"the recorded {ds['checksum']} (the dataset was re-prepared or edited)")
    return problems


# ------------------------------------------------------------------------------------ prepare

def _counts(y: np.ndarray, k: int) -> dict:
    return {"total": int(len(y)), "per_class": np.bincount(y, minlength=k).astype(int).tolist()}


def prepare(name: str, spec: dict | None, out_dir: str | Path) -> dict:
    """Prepare dataset ``name`` from ``spec`` into ``out_dir`` (normally ``<root>/<name>/<version>``).

    Arrays are written atomically first, the manifest last (an existing manifest is removed before
    anything else is written, so an interrupted run never looks prepared). Returns the manifest.
    """
    t0 = time.perf_counter()
    src, opts = resolve_spec(name, spec)
    version = version_id(name, spec)
    out = Path(out_dir)
    (out / MANIFEST).unlink(missing_ok=True)  # the arrays' atomic writes create the folder

    raw = src.load(opts)
    raw.check(src.kind)
    k = len(raw.class_names)
    arrays: dict[str, np.ndarray] = {}
    subsample: dict[str, Any] = {"max_per_class": opts["max_per_class"], "seed": opts["subsample_seed"]}
    for split in ("train", "test"):
        x, y = getattr(raw, f"{split}_x"), getattr(raw, f"{split}_y")
        ids = getattr(raw, f"{split}_ids")
        ids = np.arange(len(y), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        subsample[f"{split}_available"] = _counts(y, k)
        keep = balanced_subsample(y, k, opts["max_per_class"][split], opts["subsample_seed"], split)
        if len(keep) != len(y):
            x, y, ids = x[keep], y[keep], ids[keep]
        arrays[f"{split}_x"] = np.ascontiguousarray(x, dtype=np.uint8)
        arrays[f"{split}_y"] = np.ascontiguousarray(y, dtype=np.int64)
        arrays[f"{split}_ids"] = ids

    files = {}
    for fname in ARRAY_FILES:
        path = out / fname
        gio.save_npy_atomic(path, arrays[fname[:-4]])
        files[fname] = gio.sha256_file(path)
    manifest = {
        "name": name,
        "version": version,
        "format_version": FORMAT_VERSION,
        "source": {"kind": src.kind, **raw.source_info},
        "options": opts,
        "classes": list(raw.class_names),
        "class_ids": raw.class_ids,
        "num_classes": k,
        "shape": list(arrays["train_x"].shape[1:]),
        "dtype": "uint8",
        "counts": {"train": _counts(arrays["train_y"], k), "test": _counts(arrays["test_y"], k)},
        "subsample": subsample,
        "files": files,
        "checksum": dataset_checksum(files),
        "seconds": round(time.perf_counter() - t0, 3),
        "provenance": provenance(dataset=name, dataset_version=version),
    }
    gio.write_json_atomic(out / MANIFEST, manifest)
    return manifest


# ------------------------------------------------------------------------------------ load

@dataclass
class Prepared:
    """A loaded prepared dataset; ``classes``: the original indices of its classes, in label order."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list[str]
    manifest: dict
    classes: list[int]


def load_prepared(folder: str | Path, classes: list[int] | None = None, verify: bool = True) -> Prepared:
    """Load a prepared dataset (re-hashing its files first unless ``verify=False``).

    ``classes``: original class indices to keep; they are relabelled 0..len(classes)-1 in the order
    given (e.g. the output of :func:`class_subset`). ``manifest["path"]`` is set to ``folder``.
    """
    folder = Path(folder)
    manifest = verify_prepared(folder) if verify else read_manifest(folder)
    manifest = dict(manifest, path=str(folder))
    arrays = {f[:-4]: np.load(folder / f, allow_pickle=False) for f in manifest["files"] if f[-4:] == ".npy"}
    k = int(manifest["num_classes"])
    names = list(manifest["classes"])
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.dtype != np.uint8 or y.dtype != np.int64 or len(x) != len(y) or list(x.shape[1:]) != manifest["shape"]:
            raise DatasetIntegrityError(f"{folder}: {split} arrays inconsistent with the manifest "
                                        f"({x.dtype} {x.shape}, {y.dtype} {y.shape})")
    if classes is None:
        sel = list(range(k))
    else:
        sel = [int(c) for c in classes]
        if len(set(sel)) != len(sel):
            raise ValueError(f"classes contains duplicates: {sel}")
        bad = [c for c in sel if not 0 <= c < k]
        if bad:
            raise ValueError(f"classes {bad} out of range 0..{k - 1} for dataset {manifest.get('name')}")
        lut = np.full(k, -1, dtype=np.int64)
        lut[sel] = np.arange(len(sel))
        for split in ("train", "test"):
            new = lut[arrays[f"{split}_y"]]
            mask = new >= 0
            arrays[f"{split}_x"] = arrays[f"{split}_x"][mask]
            arrays[f"{split}_y"] = new[mask]
        names = [names[c] for c in sel]
    return Prepared(*(arrays[k] for k in ("train_x", "train_y", "test_x", "test_y")), names, manifest, sel)


def class_subset(num_classes: int, K: int, seed: int) -> list[int]:
    """The first ``K`` entries of a seeded permutation of ``range(num_classes)``.

    Deterministic and nested in K (``class_subset(n, K, s)`` is a prefix of ``class_subset(n, K+1, s)``).
    Not sorted: the order is the label order used by :func:`load_prepared` (label k = entry k).
    """
    if not 1 <= K <= num_classes:
        raise ValueError(f"K={K} must be between 1 and the number of classes {num_classes}")
    perm = np.random.default_rng([int(seed), 0x6E63]).permutation(num_classes)
    return [int(c) for c in perm[:K]]

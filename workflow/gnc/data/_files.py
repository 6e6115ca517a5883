"""Input-file helpers shared by the dataset sources: hashing, checksum records, extraction, fingerprints.

A *checksum record* maps a file path relative to a source's root folder to the checksum we expect
(32 hex digits = md5, 64 hex digits = sha256) or ``None`` (no published checksum: the file is
hashed and recorded, but not checked). Each source starts from the checksums its publisher
distributes (the constants torchvision carries for CIFAR/MNIST/..., the Tiny-ImageNet archive md5,
the Debian package's md5sums); the spec key ``checksums`` overrides or extends them (a mirror, a
re-packed archive, or the small files our tests write in the real formats).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, Mapping

from ..io import atomic_path, file_digests
from .errors import DatasetNotFoundError, SourceChecksumError


def hash_file(path: str | os.PathLike, chunk: int = 1 << 20) -> dict:
    """md5 and sha256 of a file in one pass, plus its size."""
    return file_digests(path, ("md5", "sha256"), chunk)


def checksum_kind(value: str) -> str:
    value = value.lower()
    if len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return "md5"
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return "sha256"
    raise ValueError(f"checksum {value!r} is neither an md5 (32 hex) nor a sha256 (64 hex)")


def effective_record(published: Mapping[str, str | None], overrides: Mapping[str, str] | None) -> dict:
    """Published checksums updated with the spec's ``checksums`` overrides (validated)."""
    record = dict(published)
    for name, value in (overrides or {}).items():
        if value is not None:
            checksum_kind(value)
            value = value.lower()
        record[name] = value
    return record


def verify_file(path: Path, expected: str | None, label: str | None = None) -> dict:
    """Hash ``path``; if ``expected`` is given it must match (md5 or sha256 by length).

    Returns {md5, sha256, size, expected, verified}. Raises :class:`SourceChecksumError` naming the
    file, the expected and the actual checksum on a mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"missing input file {path}")
    info = hash_file(path)
    info["expected"] = expected
    info["verified"] = False
    if expected:
        kind = checksum_kind(expected)
        if info[kind] != expected.lower():
            raise SourceChecksumError(
                f"checksum mismatch for {label or path}: expected {kind} {expected.lower()}, "
                f"got {info[kind]} (file {path}, {info['size']} bytes). The file is corrupt, truncated "
                f"or a different release; delete it and obtain it again, or declare the checksum you "
                f"trust under the spec key 'checksums'."
            )
        info["verified"] = True
    return info


def verify_record(root: Path, record: Mapping[str, str | None], names: Iterable[str] | None = None) -> dict:
    """Verify the files named in ``record`` (or only ``names``) under ``root``; returns {name: info}."""
    out = {}
    for name in names if names is not None else record:
        out[name] = verify_file(Path(root) / name, record.get(name), label=name)
    return out


def missing_files(root: Path, names: Iterable[str]) -> list[Path]:
    return [Path(root) / n for n in names if not (Path(root) / n).is_file()]


def gunzip_atomic(src: Path, dst: Path) -> None:
    """Decompress ``src`` (.gz) into ``dst``, written through a temporary file and renamed."""
    with atomic_path(dst, suffix=".tmp") as tmp, open(tmp, "wb") as out, gzip.open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


def extract_zip_atomic(archive: Path, dest_parent: Path, top: str) -> Path:
    """Extract ``archive`` whose members live under ``top/`` into ``dest_parent/top``.

    Extraction goes to a temporary folder next to the destination, which is renamed into place
    at the end, so an interrupted extraction never leaves a half-filled ``top`` folder. Member
    names are checked against path traversal.
    """
    dest_parent = Path(dest_parent)
    final = dest_parent / top
    if final.is_dir():
        return final
    dest_parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest_parent, prefix=f".{top}.extract."))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (tmp / member).resolve()
                if not str(target).startswith(str(tmp.resolve())):
                    raise ValueError(f"{archive}: unsafe member path {member!r}")
            zf.extractall(tmp)
        if not (tmp / top).is_dir():
            raise ValueError(f"{archive}: expected a top-level folder {top}/ in the archive")
        os.replace(tmp / top, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def tree_fingerprint(root: Path, suffixes: tuple[str, ...] | None = None) -> dict:
    """Cheap fingerprint of a folder tree: sha256 over (relative path, size, mtime_ns) of every file.

    Reads no file contents (only ``stat``), so it can run when the Snakemake DAG is built.
    Hidden files and folders (starting with '.') are skipped.
    """
    root = Path(root)
    h = hashlib.sha256()
    n = 0
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            if suffixes and not fname.lower().endswith(suffixes):
                continue
            p = Path(dirpath) / fname
            st = p.stat()
            rel = p.relative_to(root).as_posix()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            n += 1
            total += st.st_size
    return {"files": n, "bytes": total, "sha256": h.hexdigest()}

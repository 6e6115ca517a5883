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
from typing import BinaryIO, Mapping

from ..io import atomic_path, file_digests
from .errors import DatasetNotFoundError, SourceChecksumError


def hash_file(path: str | os.PathLike) -> dict:
    """md5 and sha256 of a file in one pass, plus its size."""
    return file_digests(path, ("md5", "sha256"))


def effective_record(published: Mapping[str, str | None], overrides: Mapping[str, str] | None) -> dict:
    """Published checksums updated with the spec's ``checksums`` (hex, checked by the spec schema)."""
    return {**published, **{name: value.lower() for name, value in (overrides or {}).items()}}


def verify_file(root: Path, rel: str, expected: str | None) -> dict:
    """Hash ``root/rel``; if ``expected`` is given it must match (md5 or sha256 by length).

    Returns {md5, sha256, size, expected, verified}. Raises :class:`SourceChecksumError` naming the
    file, the expected and the actual checksum on a mismatch.
    """
    path = Path(root) / rel
    if not path.is_file():
        raise DatasetNotFoundError(f"missing input file {path}")
    info = {**hash_file(path), "expected": expected, "verified": bool(expected)}
    kind = "md5" if len(expected or "") == 32 else "sha256"
    if expected and info[kind] != expected:
        raise SourceChecksumError(
            f"checksum mismatch for {rel}: expected {kind} {expected}, got {info[kind]} (file {path}, "
            f"{info['size']} bytes). The file is corrupt, truncated or a different release; delete it and "
            f"obtain it again, or declare the checksum you trust under the spec key 'checksums'.")
    return info


def gunzip_atomic(src: Path | BinaryIO, dst: Path) -> None:
    """Decompress ``src`` (.gz; a path or an open file) into ``dst``, through a temporary file renamed."""
    with atomic_path(dst, suffix=".tmp") as tmp, open(tmp, "wb") as out, gzip.open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


def extract_zip_atomic(archive: Path, dest_parent: Path, top: str) -> Path:
    """Extract ``archive`` whose members live under ``top/`` into ``dest_parent/top`` (a folder that exists).

    Extraction goes to a temporary folder next to the destination, which is renamed into place
    at the end, so an interrupted extraction never leaves a half-filled ``top`` folder. Member
    names are checked against path traversal.
    """
    final = Path(dest_parent) / top
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{top}.extract.")).resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            unsafe = [m for m in zf.namelist() if not (tmp / m).resolve().is_relative_to(tmp)]
            if unsafe:
                raise ValueError(f"{archive}: unsafe member path {unsafe[0]!r}")
            zf.extractall(tmp)
        if not (tmp / top).is_dir():
            raise ValueError(f"{archive}: expected a top-level folder {top}/ in the archive")
        os.replace(tmp / top, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def tree_fingerprint(root: Path) -> dict:
    """Cheap fingerprint of a folder tree: sha256 over (relative path, size, mtime_ns) of every file.

    Reads no file contents (only ``stat``), so it can run when the Snakemake DAG is built.
    Hidden files and folders (starting with '.') are skipped.
    """
    root = Path(root)
    h, n, total = hashlib.sha256(), 0, 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(f for f in filenames if not f.startswith(".")):
            p = Path(dirpath) / fname
            st = p.stat()
            h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            n += 1
            total += st.st_size
    return {"files": n, "bytes": total, "sha256": h.hexdigest()}

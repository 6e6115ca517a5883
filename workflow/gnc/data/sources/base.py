"""The interface every dataset source implements, and the raw data it hands to :mod:`gnc.data.core`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

DEFAULT_ROOT_ENV = "GNC_DATA_ROOT"
DEFAULT_ROOT = "resources/raw"


@dataclass
class RawData:
    """What a source returns: both splits as uint8 N×C×H×W and int64 labels 0..K-1."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list[str]
    source_info: dict[str, Any] = field(default_factory=dict)
    class_ids: list[str] | None = None  # e.g. Tiny-ImageNet wnids, glyph code points
    train_ids: np.ndarray | None = None  # sample ids in the source's own order (default 0..N-1)
    test_ids: np.ndarray | None = None

    def check(self, kind: str) -> None:
        k = len(self.class_names)
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != np.uint8 or x.ndim != 4 or y.dtype != np.int64 or y.shape != (x.shape[0],):
                raise TypeError(f"{kind}: {split} must be uint8 N×C×H×W images and N int64 labels, got "
                                f"{x.dtype} {x.shape} and {y.dtype} {y.shape}")
            if y.size and (y.min() < 0 or y.max() >= k):
                raise ValueError(f"{kind}: {split} labels outside 0..{k - 1}")
            if x.shape[1:] != self.train_x.shape[1:]:
                raise ValueError(f"{kind}: train and test image shapes differ: {self.train_x.shape[1:]} vs "
                                 f"{x.shape[1:]}")


def resolve_root(opts: dict) -> Path:
    """The folder holding a source's raw files: spec ``root``, else $GNC_DATA_ROOT, else resources/raw
    (the study config sets ``root`` to ``<resources>/raw`` when neither is given)."""
    root = opts.get("root") or os.environ.get(DEFAULT_ROOT_ENV) or DEFAULT_ROOT
    return Path(os.path.expanduser(str(root)))


def torchvision():
    """torchvision through the CPU-torch shim (imported at first use: torch is needed only to load data)."""
    from ..._torchvision_compat import import_torchvision

    return import_torchvision()


ROOT_SCHEMA = {
    "type": ["string", "null"],
    "default": None,
    "description": f"folder with the raw files; default ${DEFAULT_ROOT_ENV}, else '<resources>/raw' "
                   "(the study's resources folder; relative to the working directory). Not part of the version.",
}
DOWNLOAD_SCHEMA = {
    "type": "boolean",
    "default": False,
    "description": "download missing raw files from the publisher (checksum-verified). Off by default; "
                   "not part of the version.",
}
CHECKSUMS_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "string", "pattern": "^([0-9a-fA-F]{32}|[0-9a-fA-F]{64})$"},
    "default": {},
    "description": "override/extend the published checksums: {path relative to root: md5 or sha256}. "
                   "Part of the version.",
}


class Source:
    """One kind of dataset. Subclasses set ``kind``, ``description``, ``schema`` and implement the methods
    that raise NotImplementedError; a source with the spec key ``download`` also implements
    ``downloads(opts) -> [(URL, size in bytes or None)]``, what ``download: true`` fetches.

    ``schema`` is a JSON-schema ``properties`` fragment for the source's own spec keys (with
    defaults); :mod:`gnc.data.core` adds the keys common to all sources.
    """

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    schema: ClassVar[dict[str, dict]] = {}
    required: ClassVar[tuple[str, ...]] = ()
    #: spec keys that do not change the prepared content (excluded from the version hash)
    non_content: ClassVar[frozenset[str]] = frozenset({"root", "download"})

    def num_classes(self, opts: dict) -> int:
        raise NotImplementedError

    def identity(self, opts: dict) -> dict:
        """Cheap description of the input (no data read): published checksums, generator params,
        file fingerprints. Goes into the version hash."""
        raise NotImplementedError

    def unavailable(self, opts: dict) -> str | None:
        """None when :meth:`load` can run without downloading (``stat`` only), else why not: the expected
        path(s) and how to get the data."""
        raise NotImplementedError

    def load(self, opts: dict) -> RawData:
        raise NotImplementedError

"""Tiny-ImageNet-200 (cs231n): 200 classes, 100,000 train and 10,000 val images of 64×64×3.

Files: ``<root>/tiny-imagenet-200.zip`` (the published archive, md5 checked) and/or the extracted
``<root>/tiny-imagenet-200/`` with ``wnids.txt``, ``words.txt``, ``train/<wnid>/images/*.JPEG`` and
``val/images/*.JPEG`` + ``val/val_annotations.txt``. When only the archive is present it is
verified and extracted (into a temporary folder renamed into place). ``download: true`` fetches
``url`` with torchvision's ``download_url`` (md5-verified). The train split is read with torchvision's
``ImageFolder`` on ``train/`` (classes = sorted wnids, which must match ``wnids.txt``); the test
split is the labelled val split read through ``val_annotations.txt`` (no re-foldering needed) with
the same PIL loader. Class names are the first synonym in ``words.txt``; ``class_ids`` the wnids.
The unlabelled ``test/`` folder is not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._files import effective_record, extract_zip_atomic, tree_fingerprint, verify_file
from ..errors import DatasetNotFoundError, SourceChecksumError
from .base import CHECKSUMS_SCHEMA, DOWNLOAD_SCHEMA, ROOT_SCHEMA, RawData, Source, resolve_root, torchvision

TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_ZIP = "tiny-imagenet-200.zip"
TINY_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
TINY_DIR = "tiny-imagenet-200"
TINY_BYTES = 248_100_043  # size of the archive at TINY_URL (md5 TINY_MD5)


def to_array(img, size: int, channels: int, mode: str = "center_crop") -> np.ndarray:
    """PIL image -> uint8 (C, size, size): resize the shorter side to ``size`` and centre-crop
    (``center_crop``) or resize both sides (``stretch``)."""
    from PIL import Image  # deferred: PIL only to load

    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        w, h = img.size
        if mode == "stretch":
            img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
        else:
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
            left, top = (nw - size) // 2, (nh - size) // 2
            img = img.crop((left, top, left + size, top + size))
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


class TinyImageNet(Source):
    kind = "tiny_imagenet"
    description = "Tiny-ImageNet-200 (archive md5-verified, extracted), train via ImageFolder, val as test"
    schema = {
        "root": ROOT_SCHEMA,
        "download": DOWNLOAD_SCHEMA,
        "checksums": CHECKSUMS_SCHEMA,
        "url": {"type": "string", "default": TINY_URL, "description": "download URL (not part of the version)"},
        "size": {"type": "integer", "minimum": 8, "maximum": 256, "default": 64,
                 "description": "image side; 64 keeps the originals, other values resize"},
    }
    non_content = frozenset({"root", "download", "url"})

    def num_classes(self, opts):
        return 200

    def downloads(self, opts):
        return [(opts["url"], TINY_BYTES if opts["url"] == TINY_URL else None)]

    def record(self, opts):
        return effective_record({TINY_ZIP: TINY_MD5}, opts.get("checksums"))

    def identity(self, opts):
        return {"archive": TINY_ZIP, "checksums": self.record(opts)}

    def unavailable(self, opts):
        root = resolve_root(opts)
        if (root / TINY_ZIP).is_file() or (root / TINY_DIR / "wnids.txt").is_file():
            return None
        return (f"{self.kind}: neither {root / TINY_ZIP} nor {root / TINY_DIR}/ exists. Download {opts['url']} "
                f"(md5 {TINY_MD5}) into {root}, or set 'download: true' in the dataset spec, or point "
                f"'root' (or $GNC_DATA_ROOT) at the folder that holds it.")

    def ensure_extracted(self, root: Path, tv, opts) -> tuple[Path, dict]:
        folder, expected = root / TINY_DIR, self.record(opts)[TINY_ZIP]
        if self.unavailable(opts):
            if not opts["download"]:
                raise DatasetNotFoundError(self.unavailable(opts))
            tv.datasets.utils.download_url(opts["url"], str(root), TINY_ZIP,
                                           md5=expected if len(expected) == 32 else None)
        if not (root / TINY_ZIP).is_file():
            info = {"archive": None, "note": "archive absent: extracted folder used, fingerprinted only"}
        else:
            info = {"archive": verify_file(root, TINY_ZIP, expected)}
            if not (folder / "wnids.txt").is_file():
                extract_zip_atomic(root / TINY_ZIP, root, TINY_DIR)
        return folder, {**info, "extracted": tree_fingerprint(folder)}

    def load(self, opts):
        root, tv = resolve_root(opts), torchvision()
        folder, info = self.ensure_extracted(root, tv, opts)
        size = int(opts["size"])
        wnids = (folder / "wnids.txt").read_text().split()
        train = tv.datasets.ImageFolder(str(folder / "train"))
        if sorted(wnids) != train.classes:
            raise SourceChecksumError(f"{self.kind}: {folder}/wnids.txt lists {len(wnids)} classes but train/ has "
                                      f"{len(train.classes)} class folders that differ")
        words_file = folder / "words.txt"
        lines = words_file.read_text(encoding="utf-8").splitlines() if words_file.is_file() else []
        pairs = (line.partition("\t") for line in lines)
        words = {wnid.strip(): text.split(",")[0].strip() for wnid, _, text in pairs}
        names = [words.get(w, w) for w in train.classes]
        trx = np.empty((len(train.samples), 3, size, size), np.uint8)
        for i, (path, _) in enumerate(train.samples):
            trx[i] = to_array(train.loader(path), size, 3)
        try_ = np.asarray(train.targets, dtype=np.int64)
        ann = folder / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise DatasetNotFoundError(f"{self.kind}: {ann} not found (incomplete extraction?)")
        rows = [line.split("\t") for line in ann.read_text().splitlines() if line.strip()]
        tex = np.empty((len(rows), 3, size, size), np.uint8)
        tey = np.empty(len(rows), np.int64)
        for i, row in enumerate(rows):
            fname, wnid = row[0].strip(), row[1].strip()
            if wnid not in train.class_to_idx:
                raise SourceChecksumError(f"{self.kind}: {ann}: {fname} has unknown class {wnid}")
            tex[i] = to_array(train.loader(str(folder / "val" / "images" / fname)), size, 3)
            tey[i] = train.class_to_idx[wnid]
        info.update({"reader": "torchvision.datasets.ImageFolder (train), val_annotations.txt (test)",
                     "torchvision_version": tv.__version__, "root": str(root), "size": size,
                     "val_annotations": verify_file(folder, "val/val_annotations.txt", None)})
        return RawData(trx, try_, tex, tey, names, info, class_ids=list(train.classes))

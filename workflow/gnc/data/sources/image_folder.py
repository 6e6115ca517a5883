"""Any ImageFolder-style tree on the user's disk.

Layouts (chosen automatically):

* ``<root>/train/<class>/*`` plus ``<root>/val/<class>/*`` (or ``test/``): those are the splits; the
  classes are the sub-folders of ``train/``; the test tree may miss classes but not add new ones.
* ``<root>/<class>/*``: one tree, split per class by a seeded permutation (``test_fraction``).

Images are read by torchvision's ``ImageFolder`` (PIL loader, the extensions ImageFolder accepts),
converted to ``channels`` (1 = L, 3 = RGB) and brought to ``size``×``size`` (``resize``:
``center_crop`` = shorter side to size then centre crop; ``stretch`` = both sides to size).
The version uses a cheap fingerprint of the tree (relative paths, sizes and mtimes of the files),
so editing, adding or touching an image gives a new version while moving the folder does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._files import tree_fingerprint
from ..errors import DatasetNotFoundError, SpecError
from .base import RawData, Source, torchvision
from .digits import stratified_split
from .tiny_imagenet import to_array

TEST_DIRS = ("val", "test")


def _layout(path: Path) -> tuple[Path, Path | None]:
    if (path / "train").is_dir():
        for t in TEST_DIRS:
            if (path / t).is_dir():
                return path / "train", path / t
        raise DatasetNotFoundError(f"image_folder: {path}/train/ exists but neither {path}/val/ nor {path}/test/")
    return path, None


def _class_dirs(path: Path) -> list[str]:
    return sorted(e.name for e in path.iterdir() if e.is_dir() and not e.name.startswith("."))


class ImageFolderSource(Source):
    kind = "image_folder"
    description = "an ImageFolder tree on disk (train/ + val/ or test/, or one tree split by seed)"
    schema = {
        "root": {"type": "string", "description": "the tree's root folder (not part of the version; its "
                                                  "fingerprint is)"},
        "size": {"type": "integer", "minimum": 4, "maximum": 1024, "default": 32, "description": "image side"},
        "resize": {"enum": ["center_crop", "stretch"], "default": "center_crop",
                   "description": "how images are brought to size x size"},
        "channels": {"enum": [1, 3], "default": 3, "description": "1 = greyscale, 3 = RGB"},
        "test_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.2,
                          "description": "single-tree layout: fraction of each class for the test split"},
        "split_seed": {"type": "integer", "minimum": 0, "default": 0,
                       "description": "single-tree layout: seed of the split"},
    }
    required = ("root",)
    non_content = frozenset({"root"})

    def _path(self, opts) -> Path:
        if self.unavailable(opts):
            raise DatasetNotFoundError(self.unavailable(opts))
        return Path(opts["root"]).expanduser()

    def num_classes(self, opts):
        train, _ = _layout(self._path(opts))
        return len(_class_dirs(train))

    def identity(self, opts):
        return {"fingerprint": tree_fingerprint(self._path(opts))}

    def unavailable(self, opts):
        path = Path(opts["root"]).expanduser()
        return None if path.is_dir() else f"image_folder: folder {path} does not exist (spec key 'root')"

    def load(self, opts):
        tv, path = torchvision(), self._path(opts)
        train_dir, test_dir = _layout(path)
        size, channels, mode = int(opts["size"]), int(opts["channels"]), opts["resize"]

        def transform(img):
            return to_array(img, size, channels, mode)

        try:
            train = tv.datasets.ImageFolder(str(train_dir), transform=transform)
        except FileNotFoundError as exc:  # an empty class folder: torchvision names the class, not the path
            raise DatasetNotFoundError(f"image_folder: {train_dir}: {exc} (every class folder needs at least "
                                       f"one training image)") from exc
        classes, class_to_idx = train.classes, train.class_to_idx

        def read(ds) -> tuple[np.ndarray, np.ndarray]:
            x = np.empty((len(ds), channels, size, size), np.uint8)
            for i in range(len(ds)):
                x[i] = ds[i][0]
            return x, np.asarray(ds.targets, dtype=np.int64)

        trx, try_ = read(train)
        info = {"reader": "torchvision.datasets.ImageFolder", "torchvision_version": tv.__version__,
                "path": str(path), "fingerprint": tree_fingerprint(path), "size": size, "resize": mode,
                "channels": channels}
        rel = lambda ds: [Path(p).relative_to(path).as_posix() for p, _ in ds.samples]  # noqa: E731
        if test_dir is not None:
            extra = sorted(set(_class_dirs(test_dir)) - set(classes))
            if extra:
                raise SpecError(f"image_folder: {test_dir} has classes missing from {train_dir}: {extra}")

            class _TestFolder(tv.datasets.ImageFolder):
                def find_classes(self, directory):
                    return classes, class_to_idx

            test = _TestFolder(str(test_dir), transform=transform, allow_empty=True)
            tex, tey = read(test)
            info["layout"] = {"train": train_dir.name, "test": test_dir.name}
            info["samples"] = {"train": rel(train), "test": rel(test)}
            return RawData(trx, try_, tex, tey, list(classes), info)
        tr, te = stratified_split(try_, len(classes), float(opts["test_fraction"]), int(opts["split_seed"]))
        info["layout"] = {"single_tree": True, "test_fraction": opts["test_fraction"], "seed": opts["split_seed"]}
        info["samples"] = rel(train)
        return RawData(trx[tr], try_[tr], trx[te], try_[te], list(classes), info, train_ids=tr, test_ids=te)

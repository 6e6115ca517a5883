"""scikit-learn's handwritten digits (UCI optdigits test set): 1,797 images of 8×8, 10 classes.

The 16 grey levels (0..16) are scaled to 0..255 (``round(v * 255 / 16)``), 1 channel. The
train/test split is our own, seeded and stratified: in every class a fraction ``test_fraction``
(rounded) of the samples, chosen by a permutation from ``numpy.random.default_rng([split_seed, k])``,
goes to the test split. Sample ids are the row numbers of ``load_digits()``.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from .._files import hash_file
from .base import RawData, Source


def digits_file() -> Path | None:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=8)
def _hash_cached(path: str, size: int, mtime_ns: int) -> str:  # size, mtime_ns: cache key (file changed)
    return hash_file(path)["sha256"]


def stratified_split(y: np.ndarray, num_classes: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    train, test = [], []
    for k in range(num_classes):
        idx = np.flatnonzero(y == k)
        perm = np.random.default_rng([seed, k]).permutation(idx)
        n_test = int(round(test_fraction * len(idx)))
        test.append(perm[:n_test])
        train.append(perm[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class Digits(Source):
    kind = "digits"
    description = "scikit-learn load_digits: 1,797 8x8 grey images, 10 classes, seeded stratified split"
    schema = {
        "test_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.25,
                          "description": "fraction of each class that goes to the test split"},
        "split_seed": {"type": "integer", "minimum": 0, "default": 0, "description": "seed of the split"},
    }

    def num_classes(self, opts):
        return 10

    def identity(self, opts):
        path = digits_file()
        if path is None:
            return {"file": None}
        st = path.stat()
        return {"file": "sklearn/datasets/data/digits.csv.gz", "sha256": _hash_cached(str(path), st.st_size, st.st_mtime_ns)}

    def unavailable(self, opts):
        if not digits_file():
            return "digits: scikit-learn (sklearn/datasets/data/digits.csv.gz) is not installed"
        return None

    def load(self, opts):
        from sklearn.datasets import load_digits  # deferred: sklearn only for this source
        import sklearn  # deferred: as above

        bunch = load_digits()
        x = np.rint(np.asarray(bunch.images) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
        y = np.asarray(bunch.target, dtype=np.int64)
        tr, te = stratified_split(y, 10, float(opts["test_fraction"]), int(opts["split_seed"]))
        info = {
            "loader": "sklearn.datasets.load_digits",
            "sklearn_version": sklearn.__version__,
            "files": {"sklearn/datasets/data/digits.csv.gz": hash_file(digits_file())},
            "grey_levels": "0..16 scaled by 255/16 and rounded",
            "split": {"kind": "stratified", "test_fraction": opts["test_fraction"], "seed": opts["split_seed"]},
        }
        return RawData(x[tr], y[tr], x[te], y[te], [str(i) for i in range(10)], info,
                       train_ids=tr, test_ids=te)

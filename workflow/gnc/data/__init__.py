"""gnc.data — prepared, versioned, checksummed datasets.

Public API (see :mod:`gnc.data.core` for the folder layout and the manifest)::

    version_id(name, spec) -> "v1-<12 hex>"       cheap: source identity + options + FORMAT_VERSION
    num_classes(name, spec) -> int                cheap; raises DatasetNotFoundError if the raw data
                                                  is missing here and download is off
    available(name, spec) -> bool                 raw files present (stat only)
    download_plan(name, spec) -> dict | None      what prepare would download: target folder, (URL, bytes)
    prepared_path(root, name, spec) -> Path       <root>/<name>/<version>
    prepare(name, spec, out_dir) -> manifest      writes the arrays, then manifest.json (atomic)
    load_prepared(folder, classes=None, verify=True) -> Prepared
    verify_prepared(folder) -> manifest           raises DatasetIntegrityError naming the file
    verify_datasets(attrs, ...) -> [problem]      re-hash the datasets a result file's provenance names
    class_subset(num_classes, K, seed) -> list    first K of a seeded permutation (nested in K)
    SPEC_SCHEMA[source]                           JSON schema of a dataset spec, per source

A *spec* is the dict under ``datasets.<name>`` in the config: ``{source: <kind>, <options>}``
(``source`` defaults to the dataset name). Keys accepted by every source:

    max_per_class   null | int | {train: int|null, test: int|null}  balanced seeded sub-sampling
    subsample_seed  int (0)

Sources and their own keys (defaults in brackets; ``python -m gnc.data schema SOURCE`` prints the
full JSON schema with descriptions):

    digits          test_fraction [0.25], split_seed [0]                   sklearn, 8x8x1, K=10
    glyphs          num_classes [100] (<= len(GLYPH_CLASSES) = 117), train_per_font [3],
                    test_per_font [1], size [32], seed [0], fonts [16 DejaVu/STIX faces],
                    rotation [10], scale [0.1], shear [0.15], shift [0.06], stroke_max [0.03],
                    stroke_levels [3]                                      32x32x1, offline
    fashion_mnist_debian  root [/usr/share/datasets/fashion-mnist], checksums    28x28x1, K=10
    cifar10, cifar100, mnist, fashion_mnist, kmnist, stl10
                    root [$GNC_DATA_ROOT or <resources>/raw], download [false], checksums [{}]
    emnist          + split [balanced] (byclass|bymerge|balanced|letters|digits|mnist), transpose [true]
    svhn            + include_extra [false]
    tiny_imagenet   root, download, checksums, url [cs231n], size [64]     64x64x3, K=200
    image_folder    root (required), size [32], resize [center_crop|stretch], channels [3|1],
                    test_fraction [0.2], split_seed [0]  (single-tree layout only)

``root`` (the folder with a source's raw files, for every source), ``download`` and ``url`` do not
enter the version;
everything else does. ``checksums`` ({path relative to root: md5 or sha256}) overrides or extends
the publisher's checksums (mirrors, test files).
"""

from .core import (
    COMMON_SCHEMA, FORMAT_VERSION, SPEC_SCHEMA, Prepared, available, balanced_subsample, class_subset,
    dataset_checksum, download_plan, load_prepared, num_classes, prepare, prepared_path, read_manifest, resolve_spec,
    verify_datasets, verify_prepared, version_id, version_payload,
)
from .errors import DatasetIntegrityError, DatasetNotFoundError, SourceChecksumError, SpecError
from .sources import SOURCES

__all__ = [
    "COMMON_SCHEMA", "FORMAT_VERSION", "SPEC_SCHEMA", "SOURCES", "Prepared", "available", "balanced_subsample",
    "class_subset", "dataset_checksum", "download_plan", "load_prepared", "num_classes", "prepare", "prepared_path",
    "read_manifest", "resolve_spec", "verify_datasets", "verify_prepared", "version_id", "version_payload",
    "DatasetIntegrityError", "DatasetNotFoundError", "SourceChecksumError", "SpecError",
]

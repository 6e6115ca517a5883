"""gnc.data — prepared, versioned, checksummed datasets.

Public API (see :mod:`gnc.data.core` for the folder layout and the manifest)::

    version_id(name, spec) -> "v1-<12 hex>"       cheap: source identity + options + FORMAT_VERSION
    num_classes(name, spec) -> int                cheap; raises DatasetNotFoundError if the raw data
                                                  is missing here and download is off
    available(name, spec) -> bool                 raw files present (stat only)
    download_plan(name, spec) -> dict | None      what prepare would download: target folder, (URL, bytes)
    prepare(name, spec, out_dir) -> manifest      writes the arrays, then manifest.json (atomic)
    read_manifest(folder) -> manifest             the manifest of a prepared folder (no hashing)
    load_prepared(folder, classes=None, verify=True) -> Prepared
    verify_prepared(folder) -> manifest           raises DatasetIntegrityError naming the file
    verify_datasets(attrs, ...) -> [problem]      re-hash the datasets a result file's provenance names
    class_subset(num_classes, K, seed) -> list    first K of a seeded permutation (nested in K)
    SPEC_SCHEMA[source]                           JSON schema of a dataset spec, per source

A *spec* is the dict under ``datasets.<name>`` in the config: ``{source: <kind>, <options>}``
(``source`` defaults to the dataset name). Every source accepts ``max_per_class`` (null, an int, or
{train, test}: balanced seeded sub-sampling) and ``subsample_seed`` (0). The sources (:data:`SOURCES`)
and their own keys with defaults: ``python -m gnc.data list`` and ``python -m gnc.data schema SOURCE``.
``root`` (the folder with a source's raw files, for every source), ``download`` and ``url`` do not
enter the version; everything else does. ``checksums`` ({path relative to root: md5 or sha256})
overrides or extends the publisher's checksums (mirrors, test files).
"""

from .core import (
    SPEC_SCHEMA, Prepared, available, class_subset, dataset_checksum, download_plan, load_prepared, num_classes,
    prepare, read_manifest, verify_datasets, verify_prepared, version_id,
)
from .errors import DatasetIntegrityError, DatasetNotFoundError, SourceChecksumError, SpecError
from .sources import SOURCES

__all__ = [
    "SPEC_SCHEMA", "SOURCES", "Prepared", "available", "class_subset", "dataset_checksum", "download_plan",
    "load_prepared", "num_classes", "prepare", "read_manifest", "verify_datasets", "verify_prepared",
    "version_id", "DatasetIntegrityError", "DatasetNotFoundError", "SourceChecksumError", "SpecError",
]

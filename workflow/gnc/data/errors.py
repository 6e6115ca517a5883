"""Exceptions of :mod:`gnc.data`."""

from __future__ import annotations


class DatasetIntegrityError(ValueError):
    """A prepared dataset (or an input file) does not match its recorded checksum, or is incomplete."""


class SourceChecksumError(DatasetIntegrityError):
    """An input file (archive, batch, IDX file) does not match its published or declared checksum."""


class DatasetNotFoundError(FileNotFoundError):
    """The raw files of a source are not where the spec says; the message names the path and the fix."""


class SpecError(ValueError):
    """A dataset spec from the config is invalid (unknown source, unknown key, bad value)."""

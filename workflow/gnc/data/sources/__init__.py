"""Registry of dataset sources (``spec["source"]`` -> :class:`~gnc.data.sources.base.Source`)."""

from __future__ import annotations

from .base import RawData, Source
from .digits import Digits
from .fashion_debian import FashionMnistDebian
from .glyphs import Glyphs
from .image_folder import ImageFolderSource
from .tiny_imagenet import TinyImageNet
from .torchvision_sets import all_sources as _torchvision_sources

SOURCES: dict[str, Source] = {src.kind: src for src in (
    Digits(), Glyphs(), FashionMnistDebian(), *_torchvision_sources(), TinyImageNet(), ImageFolderSource())}

__all__ = ["SOURCES", "RawData", "Source"]

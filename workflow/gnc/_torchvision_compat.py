"""Make ``import torchvision`` work next to a CPU-only torch.

The torchvision 0.28.0 wheel on PyPI is built against CUDA torch: next to the CPU build of torch 2.13.0
its C++ extension (``_C.so``) cannot load, and ``torchvision/_meta_registrations.py`` then fails with
``RuntimeError: operator torchvision::nms does not exist``. :func:`ensure` defines the two missing op
*schemas* (``nms``, ``qnms``) with ``torch.library`` when (and only when) the extension cannot load.
``torchvision.ops.nms`` and ``torchvision.io`` decoding stay unavailable (gnc-study needs neither: images
are decoded through PIL); models, datasets and ``transforms.v2`` work. Import torchvision through
:func:`import_torchvision` in every process.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_LIB = None  # the shim's torch.library.Library, kept alive for the life of the process


def _extension_loadable() -> bool:
    """True when torchvision's compiled extension can be loaded with this torch (or torchvision is absent)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True
    for loc in spec.submodule_search_locations:
        for lib in Path(loc).glob("_C*"):
            if lib.suffix in (".so", ".pyd"):
                try:
                    torch.ops.load_library(str(lib))
                    return True
                except (OSError, RuntimeError):
                    return False
    return False


def ensure() -> None:
    """Define the missing op schemas if (and only if) the extension cannot load."""
    global _LIB
    if _LIB is not None:
        return
    try:
        torch.ops.torchvision.nms  # noqa: B018 - attribute access resolves a registered op
        return
    except (AttributeError, RuntimeError):
        pass
    if not _extension_loadable():
        _LIB = torch.library.Library("torchvision", "DEF")
        _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def import_torchvision():
    """Import and return torchvision, applying :func:`ensure` first."""
    ensure()
    import torchvision

    return torchvision

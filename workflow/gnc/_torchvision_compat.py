"""Make ``import torchvision`` work next to a CPU-only torch.

The torchvision 0.28.0 wheel on PyPI is built against CUDA torch. Next to the CPU build of
torch 2.13.0 its C++ extension (``_C.so``) cannot load, torchvision silently continues without
it, and then ``torchvision/_meta_registrations.py`` fails with
``RuntimeError: operator torchvision::nms does not exist`` because it registers fake kernels
for ops that were never defined.

:func:`ensure` defines the two missing op *schemas* (``nms`` and ``qnms``) with
``torch.library`` before torchvision is imported. Only the schemas: calling ``torchvision.ops.nms``
still raises, and ``torchvision.io`` image decoding is unavailable — gnc-study needs neither
(images are decoded through PIL). Models, datasets and ``transforms.v2`` work.

On a machine where the extension loads (a CUDA torch with its matching torchvision) the real
ops already exist and :func:`ensure` does nothing. Always import torchvision through
:func:`import_torchvision` (or call :func:`ensure` first) in every process.
"""

from __future__ import annotations

import importlib.util
import os

import torch

_LIB = None  # keeps the torch.library.Library alive for the life of the process
_SHIMMED = False


def _extension_loadable() -> bool:
    """True when torchvision's compiled extension can be loaded with this torch."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision installed: nothing to patch
    for loc in spec.submodule_search_locations:
        for name in os.listdir(loc):
            if name.startswith("_C") and name.endswith((".so", ".pyd")):
                try:
                    torch.ops.load_library(os.path.join(loc, name))
                    return True
                except (OSError, RuntimeError):
                    return False
    return False


def ensure() -> bool:
    """Define the missing op schemas if (and only if) the extension cannot load.

    Returns True when the shim was applied in this process, False when it was not needed.
    """
    global _LIB, _SHIMMED
    if _SHIMMED:
        return True
    try:
        torch.ops.torchvision.nms  # noqa: B018 - attribute access resolves a registered op
        return False
    except (AttributeError, RuntimeError):
        pass
    if _extension_loadable():
        return False
    _LIB = torch.library.Library("torchvision", "DEF")
    _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _SHIMMED = True
    return True


def import_torchvision():
    """Import and return torchvision, applying :func:`ensure` first."""
    ensure()
    import torchvision

    return torchvision

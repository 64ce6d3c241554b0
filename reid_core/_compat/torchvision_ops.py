"""Make ``import timm`` work when torchvision's compiled ops cannot load.

Why: PyPI has no CPU build of torchvision. Next to a CPU-only torch (e.g. the
2.13.0+cpu wheel) the only matching torchvision is a CUDA build whose C
extension ``_C.so`` fails to load. torchvision then still imports, except that
``torchvision/_meta_registrations.py`` unconditionally registers fake kernels
for ``torchvision::nms`` and ``torchvision::qnms``, which raises
``RuntimeError: operator torchvision::nms does not exist``; timm imports
torchvision at import time, so ``import timm`` dies with it.

What: when (and only when) torchvision's extension fails to load, this module
defines the schemas of those two operators (no kernels) in a ``torchvision``
op library, so ``torchvision`` and ``timm`` import. The compiled ops themselves
(nms, roi_align, deform_conv2d, …) stay unavailable and raise torchvision's own
"Couldn't load custom C++ ops" error when called: cxr-reid uses none of them,
and timm's classification backbones need none.

Where torchvision's extension loads (any GPU machine with a matching
torchvision, or a source build) nothing is changed.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

_STATE: dict[str, object] = {"status": None, "library": None}


def _extension_path() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    candidates = sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(Path(spec.origin).parent.glob("_C*.pyd"))
    return candidates[0] if candidates else Path(spec.origin).parent / "_C.so"


def ensure_torchvision_importable() -> str:
    """Apply the shim if needed; return ``native``, ``shimmed``, ``absent`` or ``already-imported``.

    Safe to call many times; it must run before the first ``import torchvision``.
    """
    if _STATE["status"] is not None:
        return str(_STATE["status"])
    if "torchvision" in sys.modules:
        _STATE["status"] = "already-imported"
        return "already-imported"
    ext = _extension_path()
    if ext is None:
        _STATE["status"] = "absent"
        return "absent"
    try:
        torch.ops.load_library(str(ext))
        _STATE["status"] = "native"
        return "native"
    except (OSError, ImportError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _STATE["library"] = lib  # the definitions live as long as this object
    _STATE["status"] = "shimmed"
    return "shimmed"


def status() -> str | None:
    """What :func:`ensure_torchvision_importable` found, or None before it ran."""
    return None if _STATE["status"] is None else str(_STATE["status"])

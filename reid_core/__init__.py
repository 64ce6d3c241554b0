"""cxr-reid: identity embeddings of chest radiographs (library, no UI).

Importing this package makes timm importable on CPU-only machines whose only
matching torchvision is a CUDA build (see :mod:`reid_core._compat.torchvision_ops`).
"""
from reid_core._compat.torchvision_ops import ensure_torchvision_importable as _ensure_tv

_ensure_tv()

__version__ = "0.1.0"

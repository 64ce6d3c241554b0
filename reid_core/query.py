"""Query images from outside the workspace (``cxr-reid verify`` / ``search``, app uploads).

A query must be a frontal radiograph of reasonable size: a DICOM whose
ViewPosition says lateral, or an image smaller than :data:`MIN_QUERY_PX` on its
short side, is refused with a :class:`QueryError` that says why.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reid_core.data.cache import letterbox
from reid_core.data.io import load_image_with_meta
from reid_core.data.manifest import normalize_view
from reid_core.errors import CxrReidError

MIN_QUERY_PX = 64


class QueryError(CxrReidError):
    """A query image that loads but cannot be used (lateral view, too small)."""


def load_query_image(path: str | Path, size: int) -> np.ndarray:
    """A query file as the model sees it: letterboxed ``size``×``size`` uint8."""
    image, meta = load_image_with_meta(path)
    if meta.view_position and normalize_view(meta.view_position) == "LL":
        raise QueryError(f"{path}: lateral view ({meta.view_position}); identity models here use frontal PA/AP films")
    if min(image.shape) < MIN_QUERY_PX:
        raise QueryError(f"{path}: image is {image.shape[1]}×{image.shape[0]} px; at least {MIN_QUERY_PX} px needed")
    return letterbox(image, size)


@torch.no_grad()
def embed_query_images(model: torch.nn.Module, images: list[np.ndarray]) -> np.ndarray:
    """Embeddings (float32) of letterboxed uint8 images."""
    x = torch.from_numpy(np.stack(images))[:, None].float().div_(255.0)
    model.eval()
    return model(x).float().numpy()

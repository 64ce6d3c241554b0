"""Which pixels drive a pair's match: the gradient of the embedding distance with respect to each image.

For two images ``a`` and ``b`` and an embedder ``f``, the distance is
``d = ‖f(a) - f(b)‖`` (Euclidean, as the verifier uses). The saliency of a pixel is
``|∂d/∂x|`` at that pixel, smoothed with a Gaussian (``sigma`` pixels; the raw
gradient of a CNN is speckled at the stride of its first layers) and divided by
the map's maximum, so each map lies in [0, 1] (all zeros when the gradient is).
Bright regions are those where a small change of the image would move the two
embeddings apart or together the most.

Each image enters at its own resolution: it is resized (bilinearly, inside the
differentiated graph) to the embedder's input size, so each map has the shape of
the image it explains. One forward and one backward pass of a two-image batch in
eval mode: cheap on a CPU. The model's parameters are left untouched
(``torch.autograd.grad`` writes no ``.grad``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import nn

EPS = 1e-12
"""Added under the square root of the distance: identical embeddings give zero gradient, not NaN."""


class PairSaliency(NamedTuple):
    """``map_a``, ``map_b`` (each the shape of its image, float32 in [0, 1]) and the distance they explain."""

    map_a: np.ndarray
    map_b: np.ndarray
    distance: float


def as_unit_image(image: np.ndarray) -> torch.Tensor:
    """A 2-D image (uint8, or float in [0, 1]) as a 1×1×H×W float32 tensor in [0, 1]."""
    arr = np.asarray(image)
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise ValueError(f"saliency needs a 2-D image, got shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if arr.dtype == np.uint8:
        x = x / 255.0
    return x[None, None]


def _model_size(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "image_size", None)


def _to_size(x: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def smooth_and_normalise(grad_magnitude: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (``sigma`` px; 0 = none), then divide by the maximum (zeros stay zeros)."""
    m = np.asarray(grad_magnitude, dtype=np.float64)
    if sigma > 0:
        m = gaussian_filter(m, sigma=sigma, mode="nearest")
    peak = float(m.max()) if m.size else 0.0
    return (m / peak if peak > 0 else np.zeros_like(m)).astype(np.float32)


def default_sigma(shape: tuple[int, ...]) -> float:
    """One pixel per 64 of the shorter side (at least 1)."""
    return max(1.0, min(shape[-2:]) / 64.0)


def pair_saliency(model: nn.Module, img_a: np.ndarray, img_b: np.ndarray, sigma: float | None = None,
                  size: int | None = None) -> PairSaliency:
    """Saliency maps of the pair's embedding distance for each image (see module docstring).

    ``model`` maps B×1×S×S images in [0, 1] to B×D embeddings (an :class:`~reid_core.model.Embedder`);
    ``size`` is S (default ``model.config.image_size``, else each image's own size — then both must
    match). ``sigma`` is the smoothing in pixels of each image (default :func:`default_sigma`).
    """
    was_training = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device if any(True for _ in model.parameters()) else torch.device("cpu")
        xa = as_unit_image(img_a).to(dev).requires_grad_(True)
        xb = as_unit_image(img_b).to(dev).requires_grad_(True)
        s = size or _model_size(model)
        with torch.enable_grad():
            emb = model(torch.cat([_to_size(xa, s), _to_size(xb, s)])).float()
            distance = torch.sqrt((emb[0] - emb[1]).square().sum() + EPS)
            ga, gb = torch.autograd.grad(distance, (xa, xb))
    finally:
        model.train(was_training)
    maps = []
    for g, img in ((ga, img_a), (gb, img_b)):
        mag = g[0, 0].abs().cpu().numpy()
        maps.append(smooth_and_normalise(mag, default_sigma(np.shape(img)) if sigma is None else sigma))
    return PairSaliency(maps[0], maps[1], float(distance.detach()))

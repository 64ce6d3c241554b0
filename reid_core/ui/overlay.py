"""Heat maps laid over grayscale radiographs (saliency, counterfactual |Δ|), as RGB uint8 for ``st.image``."""
from __future__ import annotations

import numpy as np


def to_unit_gray(image: np.ndarray) -> np.ndarray:
    """uint8 → /255; floats clipped to [0, 1]; float32 H×W."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {arr.shape}")
    out = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return np.clip(out, 0.0, 1.0)


def normalise(values: np.ndarray) -> np.ndarray:
    """Divide by the maximum (all zeros stay zeros); float32."""
    v = np.asarray(values, dtype=np.float32)
    peak = float(v.max()) if v.size else 0.0
    return v / peak if peak > 0 else np.zeros_like(v)


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """A red → yellow ramp of ``heat`` in [0, 1] (no white, so it stands out on a radiograph): H×W×3 float32."""
    h = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    return np.stack([np.clip(0.5 + 1.5 * h, 0, 1), np.clip(2 * h - 0.6, 0, 1), np.zeros_like(h)], axis=-1)


def heat_overlay(image: np.ndarray, heat: np.ndarray, strength: float = 0.7) -> np.ndarray:
    """``image`` in gray with ``heat`` (same shape, [0, 1]) blended in colour where it is high: H×W×3 uint8.

    Each pixel mixes gray and the heat colour with weight ``strength · heat``, so
    cold regions keep the radiograph untouched.
    """
    gray = to_unit_gray(image)
    h = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    if h.shape != gray.shape:
        raise ValueError(f"heat map {h.shape} and image {gray.shape} differ in shape")
    weight = (strength * h)[..., None]
    rgb = (1.0 - weight) * gray[..., None] + weight * heat_colours(h)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)

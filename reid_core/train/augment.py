"""Batched CXR augmentation on the training device, driven by an explicit ``torch.Generator``.

Every image of a batch gets its own random parameters, all drawn from the given
generator (never from the global RNG), so a batch's augmentation is a pure
function of (images, config, generator state): reproducible and resumable. The
training loop seeds one generator per step from (seed, step, micro-step, rank).

Order: optional horizontal flip → affine (rotation, translation, zoom; zero
padding, i.e. black like air) → contrast → brightness → gamma → Gaussian blur →
Gaussian noise → clamp to [0, 1]. An operation whose strength is 0 is skipped,
so a config with every strength 0 returns the input unchanged (bit for bit).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from reid_core.train.config import AugmentConfig


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _affine(x: Tensor, cfg: AugmentConfig, g: torch.Generator) -> Tensor:
    n, dev = x.shape[0], x.device
    angle = _uniform(n, -cfg.degrees, cfg.degrees, g, dev) * (math.pi / 180.0)
    zoom = _uniform(n, 1.0 - cfg.scale, 1.0 + cfg.scale, g, dev)
    shift = _uniform(2 * n, -cfg.translate, cfg.translate, g, dev).reshape(n, 2) * 2.0  # normalised coords
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _blur(x: Tensor, max_sigma: float, g: torch.Generator) -> Tensor:
    """Separable Gaussian blur with a per-image sigma in [0, max_sigma] (grouped conv)."""
    n, c, h, w = x.shape
    sigma = _uniform(n, 0.0, max_sigma, g, x.device).clamp_min(1e-3)
    radius = max(1, math.ceil(3.0 * max_sigma))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None].to(x.dtype)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n·c) × k
    y = x.reshape(1, n * c, h, w)
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect" if min(h, w) > radius else "replicate")
    y = F.conv2d(y, kernel[:, None, None, :], groups=n * c)
    y = F.conv2d(y, kernel[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def augment_batch(images: Tensor, config: AugmentConfig, generator: torch.Generator) -> Tensor:
    """Augment a B×C×H×W float batch in [0, 1]; returns a new tensor of the same shape in [0, 1].

    ``generator`` must live on ``images.device``; it is the only source of randomness.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"augment_batch needs a float B×C×H×W batch, got {images.dtype} {tuple(images.shape)}")
    if not config.active or images.shape[0] == 0:
        return images
    x, n, dev = images, images.shape[0], images.device
    view = (n, 1, 1, 1)
    if config.hflip:
        flip = torch.rand(n, generator=generator, device=dev) < 0.5
        x = torch.where(flip.view(view), x.flip(-1), x)
    if config.degrees > 0 or config.translate > 0 or config.scale > 0:
        x = _affine(x, config, generator)
    if config.contrast > 0:
        factor = _uniform(n, 1.0 - config.contrast, 1.0 + config.contrast, generator, dev).view(view)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factor.to(x.dtype) + mean
    if config.brightness > 0:
        x = x + _uniform(n, -config.brightness, config.brightness, generator, dev).view(view).to(x.dtype)
    if config.gamma > 0:
        log_g = math.log1p(config.gamma)
        gamma = torch.exp(_uniform(n, -log_g, log_g, generator, dev)).view(view).to(x.dtype)
        x = x.clamp(0.0, 1.0).pow(gamma)
    if config.blur_sigma > 0:
        x = _blur(x, config.blur_sigma, generator)
    if config.noise_std > 0:
        std = _uniform(n, 0.0, config.noise_std, generator, dev).view(view).to(x.dtype)
        noise = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
        x = x + noise * std
    return x.clamp(0.0, 1.0)

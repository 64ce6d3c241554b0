"""Image losses of the conditional autoencoder: SSIM, the identity cycle and its augmentation.

* :func:`ssim` — structural similarity of images in [-1, 1] (Gaussian window
  σ = 1.5, 7 taps, constants of Wang et al. 2004 for a data range of 2), the
  mean over pixels and batch; :func:`ms_ssim_loss` averages ``1 − SSIM`` over
  the full and half resolutions.
* :func:`jitter` — a random per-image similarity transform (shift, scale) and
  a brightness/contrast change, differentiable, drawn from the global RNG: the
  identity cycle judges augmented renders so the generator cannot satisfy the
  frozen embedder with pixel patterns that only it responds to.
* :func:`identity_loss` — ``1 − cos(embedder(jitter(x)), c)`` with the
  embedder frozen (gradients flow to ``x`` only).
* :func:`feature_loss` — a perceptual reconstruction loss in the frozen
  embedder's own feature space (the issue's "features of the frozen embedder's
  intermediate layers"; no VGG weights can be downloaded): squared distances of
  channel-normalised backbone stages, as LPIPS does without its learned weights.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from gan.io import resize

if TYPE_CHECKING:
    from reid_core.model import Embedder

_C1, _C2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2  # data range 2 ([-1, 1])


def _gauss_window(size: int = 7, sigma: float = 1.5, device: torch.device | None = None) -> Tensor:
    t = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-t.square() / (2 * sigma**2))
    return g / g.sum()


def _blur(x: Tensor, g: Tensor) -> Tensor:
    c = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Mean SSIM of two image batches (N, C, H, W) in [-1, 1] (valid-window, no padding)."""
    if x.shape != y.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    g = _gauss_window(device=x.device).to(x.dtype)
    mx, my = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mx.square()
    syy = _blur(y * y, g) - my.square()
    sxy = _blur(x * y, g) - mx * my
    s = ((2 * mx * my + _C1) * (2 * sxy + _C2)) / ((mx.square() + my.square() + _C1) * (sxx + syy + _C2))
    return s.mean()


def ms_ssim_loss(x: Tensor, y: Tensor) -> Tensor:
    """``1 − SSIM`` averaged over the full and the half resolution."""
    full = 1.0 - ssim(x, y)
    if min(x.shape[-2:]) < 32:
        return full
    return 0.5 * (full + 1.0 - ssim(F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)))


def jitter(x: Tensor, shift: float = 0.04, scale: float = 0.05, brightness: float = 0.05,
           contrast: float = 0.1) -> Tensor:
    """Random shift (fraction of the side), zoom, brightness and contrast per image of (N, C, H, W) in [0, 1]."""
    n = x.shape[0]
    dev, dt = x.device, x.dtype
    s = 1.0 + (torch.rand(n, device=dev, dtype=dt) * 2 - 1) * scale
    t = (torch.rand(n, 2, device=dev, dtype=dt) * 2 - 1) * (2 * shift)
    theta = torch.zeros(n, 2, 3, device=dev, dtype=dt)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    b = (torch.rand(n, 1, 1, 1, device=dev, dtype=dt) * 2 - 1) * brightness
    k = 1.0 + (torch.rand(n, 1, 1, 1, device=dev, dtype=dt) * 2 - 1) * contrast
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    return (y - mean) * k + mean + b


def identity_loss(embedder: "Embedder", images: Tensor, c: Tensor, augment: bool = True) -> Tensor:
    """Mean ``1 − cos(embedder(images), c)``; ``images`` (N, 1, R, R) in [-1, 1], the embedder frozen."""
    x = _embedder_input(embedder, images)
    if augment:
        x = jitter(x)
    e = embedder(x.clamp(-0.5, 1.5))
    return (1.0 - F.cosine_similarity(e.float(), c.float(), dim=1)).mean()


@torch.no_grad()
def embed_films(embedder: "Embedder", images: Tensor) -> Tensor:
    """``embedder``'s embeddings of real films ``images`` (N, 1, R, R) in [-1, 1] (no augmentation, no grad)."""
    return embedder(_embedder_input(embedder, images))


def ensemble_identity_loss(recognisers: "list[Embedder]", images: Tensor, targets: Tensor) -> Tensor:
    """Mean over ``recognisers`` of :func:`identity_loss` towards each one's embedding of the ``targets`` films.

    Renders must read as the target patient to recognisers that never defined the condition ``c`` (their
    own embedding spaces), so the generator cannot satisfy the identity cycle with pixel patterns only the
    conditioning embedder responds to.
    """
    losses = [identity_loss(r, images, embed_films(r, targets)) for r in recognisers]
    return torch.stack(losses).mean()


def _embedder_input(embedder: "Embedder", images: Tensor) -> Tensor:
    """Images in [-1, 1] as the embedder reads them: [0, 1] at its training size."""
    return resize(images * 0.5 + 0.5, int(embedder.config.image_size))


def embedder_features(embedder: "Embedder", images: Tensor, stages: int = 3) -> list[Tensor]:
    """The first ``stages`` backbone stage outputs of ``images`` (N, 1, R, R) in [-1, 1], unit-normalised per position."""
    feats = embedder.backbone.forward_intermediates(_embedder_input(embedder, images), indices=stages,
                                                    intermediates_only=True)
    return [f / f.norm(dim=1, keepdim=True).clamp_min(1e-6) for f in feats[:stages]]


def feature_loss(embedder: "Embedder", x: Tensor, target: Tensor, stages: int = 3) -> Tensor:
    """Mean over stages of the per-position squared distance of :func:`embedder_features` (target detached)."""
    with torch.no_grad():
        want = embedder_features(embedder, target, stages)
    got = embedder_features(embedder, x, stages)
    return torch.stack([(g - w).square().sum(dim=1).mean() for g, w in zip(got, want)]).mean()


def noisy_condition(c: Tensor, sigma: float) -> Tensor:
    """``c + σ·ε`` rescaled to ``‖c‖`` (conditioning augmentation on the embedding's sphere)."""
    if sigma <= 0:
        return c
    noisy = c + torch.randn_like(c) * sigma
    return noisy * (c.norm(dim=1, keepdim=True) / noisy.norm(dim=1, keepdim=True).clamp_min(1e-8))


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR in dB of images in [0, 1] (N, C, H, W)."""
    mse = (x - y).square().flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10.0 * torch.log10(1.0 / mse)


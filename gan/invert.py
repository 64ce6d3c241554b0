"""GAN inversion: find the latent that makes the generator reproduce a real radiograph.

``invert(G, embedder, image)``:

1. the condition is the image's own identity embedding, ``c = embedder.embed(image)``
   (the image resized to the embedder's training size), unless ``c`` is given;
2. the latent starts at the condition's mean latent ``w̄_c``
   (:class:`~gan.counterfactual.ConditionMeans`) and is optimised with Adam
   (short warm-up, cosine ramp-down over the last quarter) against

   ``loss = pixel(G(w), x) + feature_weight · ‖f̂(G(w)) - f̂(x)‖² [+ noise_weight · noise_reg]``

   with both images in [0, 1] at the generator's resolution, ``pixel`` the mean
   squared (``'l2'``) or absolute (``'l1'``) error, and ``f̂`` the L2-normalised
   pooled embedder features (:meth:`Embedder.features` with gradients), computed
   at ``feature_size`` (default: the embedder's training size).

Latent space: **W+** by default (one w per synthesis layer, ``num_ws × w_dim``
free values). It reconstructs real images far better than W (a single w), which
matters because the result is shown next to the real image; editing does not
happen in w here but through the condition (:meth:`CounterfactualRenderer.render_ws`
shifts the inverted ws by ``w̄_c' - w̄_c``), so W+'s weaker editability costs
little. ``space='w'`` optimises one w shared by all layers.

Noise: by default the generator's fixed ``'const'`` noise is used. With
``optimize_noise=True`` per-layer noise maps are optimised too, regularised
toward white noise (squared autocorrelation at one-pixel shifts over an image
pyramid down to 8 px, as in the StyleGAN2 projector) and re-standardised after
every step; they are returned in :attr:`InversionResult.noise`.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan.counterfactual import ConditionMeans
from gan.io import resize, to_unit
from gan.networks import Generator

if TYPE_CHECKING:
    from reid_core.model import Embedder

log = logging.getLogger(__name__)


@dataclass
class InversionResult:
    """``ws`` (1, num_ws, w_dim), condition ``c`` (1, c_dim), reconstruction ``image`` (H×W in [0, 1]),
    per-step ``losses`` (``total``, ``pixel``, ``feature`` arrays), ``target`` at the generator's resolution
    and the optimised ``noise`` maps (None when the generator's const noise was used)."""

    ws: Tensor
    c: Tensor
    image: np.ndarray
    losses: dict[str, np.ndarray]
    target: np.ndarray
    noise: list[Tensor] | None = field(default=None)


@contextlib.contextmanager
def _eval_frozen(*modules: nn.Module) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` for the duration; both restored after."""
    saved = [(m, m.training, [(p, p.requires_grad) for p in m.parameters()]) for m in modules]
    for m, _, params in saved:
        m.eval()
        for p, _ in params:
            p.requires_grad_(False)
    try:
        yield
    finally:
        for m, training, params in saved:
            m.train(training)
            for p, flag in params:
                p.requires_grad_(flag)


def _as_batch(image: np.ndarray | Tensor) -> Tensor:
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, Tensor) else image).float()
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3 and x.shape[0] == 1:
        x = x[None]
    if x.ndim != 4 or x.shape[:2] != (1, 1):
        raise ValueError(f"image must be H×W, 1×H×W or 1×1×H×W, got shape {tuple(x.shape)}")
    if float(x.min()) < -1e-3 or float(x.max()) > 1 + 1e-3:
        raise ValueError("image values must be in [0, 1]")
    return x


def features_with_grad(embedder: "Embedder", x: Tensor) -> Tensor:
    """Pooled embedder features (B×num_features) of [0, 1] images, differentiable w.r.t. ``x``."""
    return embedder.pooled_features(x).float()


def noise_regularizer(noise: list[Tensor]) -> Tensor:
    """Σ over layers and pyramid levels (down to 8 px) of squared one-pixel autocorrelations."""
    total = noise[0].new_zeros(())
    for n in noise:
        while True:
            total = total + (n * n.roll(1, dims=3)).mean().square() + (n * n.roll(1, dims=2)).mean().square()
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


def _lr_at(step: int, steps: int, lr: float, warmup: float = 0.05, rampdown: float = 0.25) -> float:
    """Linear warm-up over the first ``warmup`` fraction, cosine ramp-down over the last ``rampdown``."""
    t = step / max(steps, 1)
    down = min(1.0, (1.0 - t) / rampdown)
    warm = min(1.0, (step + 1) / max(warmup * steps, 1.0))
    return lr * (0.5 - 0.5 * math.cos(down * math.pi)) * warm


def invert(G: Generator, embedder: "Embedder", image: np.ndarray | Tensor, steps: int = 300, lr: float = 0.05,
           *, space: Literal["w+", "w"] = "w+", c: np.ndarray | Tensor | None = None,
           pixel_loss: Literal["l2", "l1"] = "l2", feature_weight: float = 1.0, optimize_noise: bool = False,
           noise_weight: float = 1e3, feature_size: int | None = None, n_avg: int = 256,
           seed: int = 0) -> InversionResult:
    """Optimise ``ws`` (and optionally noise) so that ``G.synthesis(ws)`` reproduces ``image`` (see module doc)."""
    if space not in ("w+", "w") or pixel_loss not in ("l2", "l1"):
        raise ValueError(f"space must be 'w+' or 'w' and pixel_loss 'l2' or 'l1', got {space!r}, {pixel_loss!r}")
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    dev = next(G.parameters()).device
    target = _as_batch(image).to(dev)
    feat_size = int(feature_size or embedder.config.image_size)
    with _eval_frozen(G, embedder):
        if c is None:
            c_t = embedder.embed(resize(target, embedder.config.image_size)).reshape(1, -1)
        else:
            c_t = torch.as_tensor(np.asarray(c) if not isinstance(c, Tensor) else c).float().reshape(1, -1)
        if c_t.shape[1] != G.c_dim:
            raise ValueError(f"condition has {c_t.shape[1]} values, the generator expects c_dim={G.c_dim}")
        c_t = c_t.to(dev)
        x_t = resize(target, G.img_resolution)
        f_t = F.normalize(features_with_grad(embedder, resize(x_t, feat_size)).detach(), dim=1)
        w0 = ConditionMeans(G, n_avg)(c_t).clone().to(dev)
        n_free = G.num_ws if space == "w+" else 1
        w_opt = w0.reshape(1, 1, -1).repeat(1, n_free, 1).requires_grad_(True)
        gen = torch.Generator().manual_seed(int(seed))
        noise = ([torch.randn(1, *s, generator=gen).to(dev).requires_grad_(True)
                  for s in G.synthesis.noise_shapes()] if optimize_noise else None)
        opt = torch.optim.Adam([w_opt] + (noise or []), lr=lr, betas=(0.9, 0.999))
        hist: dict[str, list[float]] = {"total": [], "pixel": [], "feature": []}
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, steps, lr)
            ws = w_opt if space == "w+" else w_opt.expand(1, G.num_ws, -1)
            x = G.synthesis(ws, noise_mode="const", noise=noise) * 0.5 + 0.5
            pix = (x - x_t).square().mean() if pixel_loss == "l2" else (x - x_t).abs().mean()
            f = F.normalize(features_with_grad(embedder, resize(x, feat_size)), dim=1)
            feat = (f - f_t).square().sum(dim=1).mean()
            loss = pix + feature_weight * feat
            if noise is not None:
                loss = loss + noise_weight * noise_regularizer(noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if noise is not None:
                with torch.no_grad():
                    for n in noise:
                        n.sub_(n.mean()).div_(n.std().clamp_min(1e-8))
            hist["total"].append(float(loss.detach()))
            hist["pixel"].append(float(pix.detach()))
            hist["feature"].append(float(feat.detach()))
        with torch.no_grad():
            ws = (w_opt if space == "w+" else w_opt.expand(1, G.num_ws, -1)).detach().clone()
            noise_out = None if noise is None else [n.detach().clone() for n in noise]
            img = to_unit(G.synthesis(ws, noise_mode="const", noise=noise_out))[0, 0]
    log.debug("inversion: loss %.4g → %.4g in %d steps", hist["total"][0], hist["total"][-1], steps)
    return InversionResult(ws=ws, c=c_t.detach(), image=img.cpu().numpy().astype(np.float32),
                           losses={k: np.asarray(v, dtype=np.float32) for k, v in hist.items()},
                           target=x_t[0, 0].detach().cpu().numpy().astype(np.float32), noise=noise_out)

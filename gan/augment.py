"""Adaptive discriminator augmentation (ADA; Karras et al. 2020).

Every image shown to the discriminator, real or generated, first goes through
:class:`AugmentPipe`; :class:`AdaController` tunes the pipe's probability ``p``
from the overfitting heuristic ``r_t = E[sign(D(real))]`` toward a target
(0.6 in the paper), so that D sees more augmentation when it starts to
memorise a small training set::

    pipe = AugmentPipe()                      # p = 0: exact identity
    ada = AdaController(pipe)                 # target 0.6, every 4 steps
    real_logits = D(pipe(reals)); ada.accumulate(real_logits)

Transforms, in the order applied, each drawn per sample with probability
``p × multiplier``: integer translation, isotropic scale and a small rotation
(composed into one affine matrix and resampled once), then gamma, brightness,
contrast and cutout. Horizontal flips exist but are off by default
(``xflip=0``): a chest's left/right is anatomy, not a nuisance variable.

Differentiability: R1 needs the gradient of ``D(aug(x))`` w.r.t. ``x`` and
then its gradient again, so every op here supports double backward.
:func:`affine_warp` is bilinear sampling written with ``floor``/``gather`` and
products (reflect or zero padding); the tests prove it with ``gradgradcheck``.
(Current PyTorch does double-backward ``grid_sample`` w.r.t. its input, only
not w.r.t. the grid; we keep our sampler for exact integer shifts and
bit-exact identity samples, and no reliance on a backend's derivative table.)

Pixel conventions: coordinates are in pixels, ``x`` to the right and ``y``
down, measured from the image centre ``((W-1)/2, (H-1)/2)``. With no scale or
rotation the sampling positions are exact integers, so an integer translation
is an exact shift (no blur), and samples that draw no geometric transform come
back bit-identical. Translation is folded into the same matrix rather than done
by a separate pad-and-slice step: one resampling, and it is exact anyway.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["AdaController", "AugmentParams", "AugmentPipe", "affine_warp", "inverse_affine"]

logger = logging.getLogger(__name__)

PADDING_MODES = ("reflect", "zeros")
_GAMMA_EPS = 1e-3


# -- geometric warp -------------------------------------------------------------
def _reflect_index(idx: Tensor, size: int) -> Tensor:
    """Fold integer indices into ``[0, size)`` by mirroring about the edge pixels
    (``-1 → 1``; numpy/scipy ``mirror``, torch ``reflect`` padding)."""
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= size, period - idx, idx)


def _taps(src: Tensor, taps: Tensor, size: int, padding: str) -> tuple[Tensor, Tensor]:
    """Integer indices (in range) and linear weights of the two neighbours of
    ``src`` (B×H×W) along one axis, stacked on dim 1; zero padding zeroes the
    weight of out-of-range neighbours."""
    base = torch.floor(src)
    frac = (src - base).unsqueeze(1)
    idx = base.long().unsqueeze(1) + taps  # B×2×H×W
    weight = torch.where(taps == 0, 1 - frac, frac)
    if padding == "reflect":
        return _reflect_index(idx, size), weight
    valid = (idx >= 0) & (idx < size)
    return idx.clamp(0, size - 1), weight * valid.to(weight.dtype)


def affine_warp(images: Tensor, matrix: Tensor, padding: str = "reflect") -> Tensor:
    """Bilinearly resample ``images`` (B×C×H×W) so that ``out(o) = images(A·o + b)``.

    ``matrix`` is B×2×3 ``[A | b]`` in centred pixel coordinates (x right, y
    down), i.e. the *inverse* of the transform applied to the content.
    ``padding`` is ``"reflect"`` (mirror without repeating the edge) or
    ``"zeros"``. Built from ``floor``/``gather``/products only, so it is twice
    differentiable w.r.t. ``images``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be B×C×H×W, got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    if matrix.shape != (b, 2, 3):
        raise ValueError(f"matrix must be {b}×2×3, got {tuple(matrix.shape)}")
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
    m = matrix.to(device=images.device, dtype=images.dtype)
    xs = torch.arange(w, device=images.device, dtype=images.dtype) - (w - 1) / 2
    ys = torch.arange(h, device=images.device, dtype=images.dtype) - (h - 1) / 2
    xs, ys = xs.view(1, 1, w), ys.view(1, h, 1)

    def row(i: int) -> Tensor:
        return m[:, i, 0, None, None] * xs + m[:, i, 1, None, None] * ys + m[:, i, 2, None, None]

    src_x = row(0) + (w - 1) / 2  # B×H×W, absolute source pixel coordinates
    src_y = row(1) + (h - 1) / 2
    taps = torch.arange(2, device=images.device).view(1, 2, 1, 1)
    xi, wx = _taps(src_x, taps, w, padding)  # B×2×H×W each: left/right neighbour
    yi, wy = _taps(src_y, taps, h, padding)  # top/bottom neighbour
    index = (yi.unsqueeze(2) * w + xi.unsqueeze(1)).view(b, 1, 4 * h * w).expand(b, c, 4 * h * w)
    weight = (wy.unsqueeze(2) * wx.unsqueeze(1)).view(b, 1, 4, h * w)
    values = images.reshape(b, c, h * w).gather(2, index).view(b, c, 4, h * w)
    return (values * weight).sum(dim=2).view(b, c, h, w)


# -- random parameters ----------------------------------------------------------
@dataclass
class AugmentParams:
    """Per-sample augmentation parameters; identity values mean "not applied".

    Shapes: ``translate`` and ``cutout_center`` B×2 (x, y), the rest B.
    ``translate`` is the integer content shift in pixels, ``xflip`` is 1.0 for
    mirrored samples, ``rotate`` is in radians, ``cutout_center`` in fractions
    of the image (0..1) and ``cutout_size`` a fraction of the side (0 = none).
    """

    translate: Tensor
    xflip: Tensor
    scale: Tensor
    rotate: Tensor
    gamma: Tensor
    brightness: Tensor
    contrast: Tensor
    cutout_center: Tensor
    cutout_size: Tensor

    @classmethod
    def identity(cls, batch: int, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> AugmentParams:
        """Parameters that leave every sample unchanged."""
        z = torch.zeros(batch, device=device, dtype=dtype)
        o = torch.ones(batch, device=device, dtype=dtype)
        z2 = torch.zeros(batch, 2, device=device, dtype=dtype)
        return cls(translate=z2, xflip=z, scale=o, rotate=z, gamma=o, brightness=z,
                   contrast=o, cutout_center=z2.clone(), cutout_size=z.clone())

    def to(self, device: torch.device | str, dtype: torch.dtype) -> AugmentParams:
        """Copy every field to ``device``/``dtype``."""
        return AugmentParams(**{f.name: getattr(self, f.name).to(device=device, dtype=dtype)
                                for f in fields(self)})


def inverse_affine(params: AugmentParams) -> Tensor:
    """B×2×3 sampling matrix for :func:`affine_warp` from geometric parameters.

    Content transform (paper order): x-flip, integer translation, then scale and
    rotation about the centre, ``o = s·R(θ)·(F·i + t)``; returned is its inverse
    ``i = F·R(-θ)/s·o − F·t``. Identity parameters give exactly ``[I | 0]``.
    """
    f = 1 - 2 * params.xflip
    cos, sin = torch.cos(params.rotate) / params.scale, torch.sin(params.rotate) / params.scale
    tx, ty = params.translate[:, 0], params.translate[:, 1]
    row0 = torch.stack([f * cos, f * sin, -f * tx], dim=1)
    row1 = torch.stack([-sin, cos, -ty], dim=1)
    return torch.stack([row0, row1], dim=1)


# -- colour and cutout ----------------------------------------------------------
def adjust_gamma(images: Tensor, gamma: Tensor) -> Tensor:
    """``v ↦ v**γ`` per sample on images mapped from [-1, 1] to [0, 1].

    Values are clamped to ``[eps, 1]`` before the power and the clamped-off
    residual is added back unchanged, so out-of-range pixels (generated images
    overshoot) keep slope 1 instead of a zero gradient, and the map stays
    continuous and finite. ``γ = 1`` returns the input exactly.
    """
    v = (images + 1) / 2
    c = v.clamp(_GAMMA_EPS, 1.0)
    g = gamma.view(-1, 1, 1, 1)
    delta = torch.where(g == 1, torch.zeros_like(c), c.pow(g) - c)
    return images + 2 * delta


def adjust_brightness(images: Tensor, brightness: Tensor) -> Tensor:
    """Add a per-sample offset."""
    return images + brightness.view(-1, 1, 1, 1)


def adjust_contrast(images: Tensor, contrast: Tensor) -> Tensor:
    """Scale each sample about its own mean (over C, H, W) by ``contrast``."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return images + (contrast.view(-1, 1, 1, 1) - 1) * (images - mean)


def cutout_mask(params: AugmentParams, height: int, width: int, dtype: torch.dtype) -> Tensor:
    """B×1×H×W multiplicative mask: 0 inside each sample's square, 1 elsewhere.

    A pixel is cut when its centre lies within half the side of the square's
    centre on both axes (sides measured as fractions of W and H)."""
    dev = params.cutout_size.device
    px = (torch.arange(width, device=dev, dtype=dtype) + 0.5) / width
    py = (torch.arange(height, device=dev, dtype=dtype) + 0.5) / height
    half = params.cutout_size.to(dtype).view(-1, 1, 1) / 2
    cx = params.cutout_center[:, 0].to(dtype).view(-1, 1, 1)
    cy = params.cutout_center[:, 1].to(dtype).view(-1, 1, 1)
    inside = ((px.view(1, 1, -1) - cx).abs() < half) & ((py.view(1, -1, 1) - cy).abs() < half)
    return (~inside).to(dtype).unsqueeze(1)


# -- the pipe -------------------------------------------------------------------
class AugmentPipe(nn.Module):
    """Differentiable ADA augmentation for D's inputs (images in [-1, 1], B×C×H×W).

    ``p`` is the overall probability; each transform fires independently per
    sample with probability ``p × multiplier`` (multiplier 0 disables it). The
    ``*_std``/``*_max`` arguments set the strength: translation uniform in
    ``±xint_max`` of the side (rounded to pixels), scale ``2**N(0, scale_std)``,
    rotation uniform in ``±rotate_max_deg``, gamma ``2**N(0, gamma_std)``,
    brightness ``N(0, brightness_std)`` added, contrast ``2**N(0, contrast_std)``,
    cutout a square of side ``cutout_size`` at a uniform centre. ``p`` is a plain
    float (no device sync per call) saved in ``state_dict`` as extra state.
    ``p == 0`` returns the input object itself.
    """

    def __init__(self, p: float = 0.0, *, xint: float = 1.0, scale: float = 1.0,
                 rotate: float = 1.0, xflip: float = 0.0, gamma: float = 1.0,
                 brightness: float = 1.0, contrast: float = 1.0, cutout: float = 1.0,
                 xint_max: float = 0.125, scale_std: float = 0.2, rotate_max_deg: float = 10.0,
                 gamma_std: float = 0.3, brightness_std: float = 0.2, contrast_std: float = 0.5,
                 cutout_size: float = 0.5, padding: str = "reflect") -> None:
        super().__init__()
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
        self.multipliers = {"xint": xint, "xflip": xflip, "scale": scale, "rotate": rotate,
                            "gamma": gamma, "brightness": brightness, "contrast": contrast,
                            "cutout": cutout}
        for name, value in self.multipliers.items():
            if value < 0:
                raise ValueError(f"multiplier {name} must be >= 0, got {value}")
        self.xint_max, self.scale_std, self.rotate_max_deg = xint_max, scale_std, rotate_max_deg
        self.gamma_std, self.brightness_std = gamma_std, brightness_std
        self.contrast_std, self.cutout_size, self.padding = contrast_std, cutout_size, padding
        self._p = 0.0
        self.p = p

    @property
    def p(self) -> float:
        """Augmentation probability in [0, 1]."""
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {value}")
        self._p = value

    def get_extra_state(self) -> Tensor:
        """Persist ``p`` in ``state_dict`` (a tensor, so safetensors can hold it)."""
        return torch.tensor([self._p], dtype=torch.float64)

    def set_extra_state(self, state: Any) -> None:
        """Restore ``p`` from :meth:`get_extra_state`."""
        self.p = float(torch.as_tensor(state).reshape(-1)[0])

    def sample_params(self, batch: int, height: int, width: int, *,
                      device: torch.device | str | None = None,
                      generator: torch.Generator | None = None) -> AugmentParams:
        """Draw per-sample parameters (float32 on ``device``).

        Draws come from ``generator`` (on its own device) or the global RNG; the
        number of draws does not depend on ``p``, so a seeded stream is stable.
        """
        gen_dev = generator.device if generator is not None else device

        def rand(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator, device=gen_dev)

        def randn(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=generator, device=gen_dev)

        def fire(name: str) -> Tensor:
            return rand(batch) < min(1.0, self._p * self.multipliers[name])

        ident = AugmentParams.identity(batch, device=gen_dev)
        size = torch.tensor([width, height], device=gen_dev, dtype=torch.float32)
        shift = torch.round((rand(batch, 2) * 2 - 1) * self.xint_max * size)
        params = AugmentParams(
            translate=torch.where(fire("xint")[:, None], shift, ident.translate),
            xflip=torch.where(fire("xflip") & (rand(batch) < 0.5), 1.0, ident.xflip),
            scale=torch.where(fire("scale"), torch.exp2(randn(batch) * self.scale_std), ident.scale),
            rotate=torch.where(fire("rotate"), (rand(batch) * 2 - 1) * math.radians(self.rotate_max_deg),
                               ident.rotate),
            gamma=torch.where(fire("gamma"), torch.exp2(randn(batch) * self.gamma_std), ident.gamma),
            brightness=torch.where(fire("brightness"), randn(batch) * self.brightness_std,
                                   ident.brightness),
            contrast=torch.where(fire("contrast"), torch.exp2(randn(batch) * self.contrast_std),
                                 ident.contrast),
            cutout_center=rand(batch, 2),
            cutout_size=torch.where(fire("cutout"), self.cutout_size, ident.cutout_size),
        )
        return params if device is None else params.to(device, torch.float32)

    def forward(self, images: Tensor, params: AugmentParams | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Augment ``images`` (B×C×H×W); pass ``params`` to fix the random draws.

        With ``params=None`` and ``p == 0`` the input is returned as is. With
        explicit ``params`` every stage runs (identity values are exact no-ops).
        """
        if images.ndim != 4:
            raise ValueError(f"images must be B×C×H×W, got shape {tuple(images.shape)}")
        b, _, h, w = images.shape
        if params is None:
            if self._p == 0:
                return images
            params = self.sample_params(b, h, w, device=images.device, generator=generator)
            geometry = any(self.multipliers[k] > 0 for k in ("xint", "xflip", "scale", "rotate"))
        else:
            geometry = True
        params = params.to(images.device, images.dtype)
        x = images
        if geometry:
            x = affine_warp(x, inverse_affine(params), padding=self.padding)
        x = adjust_gamma(x, params.gamma)
        x = adjust_brightness(x, params.brightness)
        x = adjust_contrast(x, params.contrast)
        x = x * cutout_mask(params, h, w, images.dtype)
        return x

    def extra_repr(self) -> str:
        on = ", ".join(f"{k}={v:g}" for k, v in self.multipliers.items() if v)
        return f"p={self._p:.4f}, {on}, padding={self.padding}"


# -- the controller -------------------------------------------------------------
class AdaController:
    """Adapts ``pipe.p`` from the sign of D's logits on real images.

    Every ``interval`` calls to :meth:`accumulate`, ``r_t = mean(sign(D(real)))``
    over the images seen since the last update and
    ``p ← clamp(p + sign(r_t − target) · n / (ada_kimg · 1000), 0, 1)`` with
    ``n`` the number of real logits in those calls (``batch × interval`` for a
    fixed batch), so ``p`` can sweep 0→1 in ``ada_kimg`` thousand images. Under
    ``torch.distributed`` the sums are all-reduced at each update, keeping every
    rank's ``p`` identical. Sums stay on the logits' device between updates, so
    :meth:`accumulate` does not synchronise with the GPU.
    """

    def __init__(self, pipe: AugmentPipe, *, target: float = 0.6, interval: int = 4,
                 ada_kimg: float = 500.0) -> None:
        if interval < 1 or ada_kimg <= 0:
            raise ValueError(f"need interval >= 1 and ada_kimg > 0, got {interval}, {ada_kimg}")
        self.pipe, self.target, self.interval, self.ada_kimg = pipe, target, interval, ada_kimg
        self.rt: float | None = None  # last estimate, None before the first update
        self.num_updates, self._calls, self._count, self._sign_sum = 0, 0, 0, 0.0
        self._pending: Tensor | None = None  # sum of signs still on the logits' device

    @property
    def p(self) -> float:
        """The pipe's current augmentation probability."""
        return self.pipe.p

    def accumulate(self, real_logits: Tensor) -> bool:
        """Record D's logits on (augmented) reals; return True when ``p`` was updated."""
        signs = torch.sign(real_logits.detach().float()).sum()
        self._pending = signs if self._pending is None else self._pending + signs
        self._count += real_logits.numel()
        self._calls += 1
        if self._calls < self.interval:
            return False
        self._update()
        return True

    def _flush(self) -> None:
        """Move the pending device sum to the host (synchronises)."""
        if self._pending is not None:
            self._sign_sum += float(self._pending)
            self._pending = None

    def _update(self) -> None:
        self._flush()
        totals = torch.tensor([self._sign_sum, self._count], dtype=torch.float64)
        if dist.is_available() and dist.is_initialized():
            backend_dev = "cuda" if dist.get_backend() == "nccl" else "cpu"
            totals = totals.to(backend_dev)
            dist.all_reduce(totals)
            totals = totals.cpu()
        sign_sum, count = float(totals[0]), float(totals[1])
        if count > 0:
            self.rt = sign_sum / count
            step = math.copysign(1.0, self.rt - self.target) if self.rt != self.target else 0.0
            self.pipe.p = min(1.0, max(0.0, self.pipe.p + step * count / (self.ada_kimg * 1000)))
            self.num_updates += 1
            logger.debug("ADA update %d: r_t=%.3f p=%.5f", self.num_updates, self.rt, self.pipe.p)
        self._calls, self._count, self._sign_sum = 0, 0, 0.0

    def state_dict(self) -> dict[str, Any]:
        """Plain-number state, including the partial interval, for exact resume."""
        self._flush()
        return {"p": self.pipe.p, "rt": self.rt, "target": self.target,
                "interval": self.interval, "ada_kimg": self.ada_kimg,
                "num_updates": self.num_updates, "calls": self._calls,
                "sign_sum": self._sign_sum, "count": self._count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (also sets ``pipe.p``)."""
        missing = {"p", "rt", "target", "interval", "ada_kimg", "num_updates", "calls",
                   "sign_sum", "count"} - set(state)
        if missing:
            raise KeyError(f"AdaController state lacks {sorted(missing)}")
        self.pipe.p = state["p"]
        self.rt = None if state["rt"] is None else float(state["rt"])
        self.target, self.interval = float(state["target"]), int(state["interval"])
        self.ada_kimg, self.num_updates = float(state["ada_kimg"]), int(state["num_updates"])
        self._calls, self._pending = int(state["calls"]), None
        self._sign_sum, self._count = float(state["sign_sum"]), int(state["count"])

"""The nuisance encoder: a film → the mean and log-variance of its nuisance code ``n``.

Built from the discriminator's residual down-sampling blocks
(:class:`~gan.networks.DiscriminatorBlock`): R → 4 px, then a 3×3 conv, a
fully connected layer and a linear output of ``2 · n_dim`` values. The
log-variance is clamped to [-8, 4] so the KL term and the sampling noise stay
finite from the first step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from gan.layers import DEFAULT_FIR, EqualConv2d, EqualLinear, assert_shape
from gan.networks import DiscriminatorBlock, block_resolutions, channels_for
from reid_core.typed_config import TypedConfig

LOGVAR_RANGE = (-8.0, 4.0)


@dataclass(frozen=True)
class EncoderConfig(TypedConfig):
    """What :class:`NuisanceEncoder` needs; stored with its weights (``encoder`` in the checkpoint meta)."""

    RECORD_KEYS: ClassVar[tuple[str, ...]] = ("encoder",)

    resolution: int
    n_dim: int
    channel_base: int = 1024
    channel_max: int = 128
    img_channels: int = 1

    def validate(self) -> None:
        for name in self.field_names():
            if not 1 <= getattr(self, name) <= 1 << 16:
                raise ValueError(f"EncoderConfig.{name} must be an int in [1, 65536], got {getattr(self, name)!r}")


class NuisanceEncoder(nn.Module):
    """``E(x) → (mu, logvar)``, each (N, n_dim), for images (N, C, R, R) in [-1, 1]."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        resolutions = block_resolutions(cfg.resolution)[::-1]  # R, …, 4

        def ch(res: int) -> int:
            return channels_for(res, cfg.channel_base, cfg.channel_max)

        self.blocks = nn.ModuleList(
            DiscriminatorBlock(0 if i == 0 else ch(res), ch(res), ch(res // 2), cfg.img_channels, None, DEFAULT_FIR)
            for i, res in enumerate(resolutions[:-1]))
        c4 = ch(4)
        self.conv = EqualConv2d(c4, c4, 3, activation="lrelu")
        self.fc = EqualLinear(c4 * 16, c4, activation="lrelu")
        self.out = EqualLinear(c4, 2 * cfg.n_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r = self.cfg.resolution
        assert_shape(x, [None, self.cfg.img_channels, r, r], "encoder input")
        for block in self.blocks:
            x = block(x)
        y = self.out(self.fc(self.conv(x).flatten(1)))
        mu, logvar = y.chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)


def sample_n(mu: Tensor, logvar: Tensor) -> Tensor:
    """``mu + σ·ε`` with ε from the global torch RNG (the reparameterisation trick)."""
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


def kl_to_prior(mu: Tensor, logvar: Tensor) -> Tensor:
    """Mean over the batch of KL(N(mu, σ²) ‖ N(0, I)), summed over the code's dimensions (nats)."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).sum(dim=1).mean()

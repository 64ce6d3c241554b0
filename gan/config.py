"""Typed GAN architecture configuration, presets and network factories.

Presets (all with a 2-layer mapping network, lr multiplier 0.01, ``z_dim = w_dim``)::

    name   px   z/w   G channel_base / max   D base / max   G feature maps 4 → R
    tiny   16   16/32   256 / 32               256 / 32       32, 32, 16           (tests)
    64     64   256     8192 / 256             8192 / 256     256 ×4, 128
    128    128  512     8192 / 256             16384 / 256    256 ×4, 128, 64
    256    256  512     16384 / 512            16384 / 512    512 ×4, 256, 128, 64

Choices: one-channel radiographs in small datasets favour narrow networks, so
64/128 px cap at 256 feature maps (the limited-data paper's low-resolution
setups use 2 mapping layers and ~256–512 maps); 256 px follows that paper's
256 px sizing (16384 / 512). The discriminator mirrors the generator, except
at 128 px, where the generator is halved in its two top blocks (128 and 64
maps at 64 and 128 px instead of 256 and 128): the counterfactual slider
renders one image per move on a CPU, and the wider generator took 200 ms per
render on 2 cores against a goal of 150 ms; the slim one is 2.0× faster
(BENCHMARKS.md, "Counterfactual render latency"). The discriminator keeps its
width, since it costs nothing at render time.
``conv_clamp`` is off (fp32); set 256 when training in reduced precision.
The discriminator's condition mapping (``cmap``) uses the same 2 layers and
lr multiplier 0.01 as the generator's; on the toy conditional test (blob
position = ``c[0]``) 0.01, 0.1 and 1.0 learned the condition equally fast, so
the field is kept only as a knob.

Usage::

    cfg = GanConfig.preset("128", c_dim=64)
    G, D = build_generator(cfg), build_discriminator(cfg)
    GanConfig.from_dict(cfg.to_dict()) == cfg

:class:`GanArchOverrides` is the typed form of "this preset, except …": one
optional field per :class:`GanConfig` field a run may change (all but
``resolution`` and ``c_dim``), None meaning the preset's value.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from gan.layers import DEFAULT_FIR
from gan.networks import Discriminator, Generator, block_resolutions
from reid_core.typed_config import TypedConfig

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(resolution=16, z_dim=16, w_dim=32, g_channel_base=256, g_channel_max=32,
                 d_channel_base=256, d_channel_max=32),
    "64": dict(resolution=64, z_dim=256, w_dim=256, g_channel_base=8192, g_channel_max=256,
               d_channel_base=8192, d_channel_max=256),
    "128": dict(resolution=128, z_dim=512, w_dim=512, g_channel_base=8192, g_channel_max=256,
                d_channel_base=16384, d_channel_max=256),
    "256": dict(resolution=256, z_dim=512, w_dim=512, g_channel_base=16384, g_channel_max=512,
                d_channel_base=16384, d_channel_max=512),
}


@dataclass(frozen=True)
class GanConfig(TypedConfig):
    """Architecture of a conditional generator/discriminator pair (see module docstring)."""

    RECORD_KEYS: ClassVar[tuple[str, ...]] = ("gan", "gan_config")

    resolution: int
    c_dim: int
    img_channels: int = 1
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 2
    embed_features: int | None = None  # None: w_dim
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.998
    g_channel_base: int = 16384
    g_channel_max: int = 512
    d_channel_base: int = 16384
    d_channel_max: int = 512
    cmap_dim: int | None = None  # None: the discriminator's 4×4 feature maps
    d_mapping_layers: int = 2
    d_mapping_lr_multiplier: float = 0.01
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1
    conv_clamp: float | None = None
    fir: tuple[float, ...] = DEFAULT_FIR

    def validate(self) -> None:
        block_resolutions(self.resolution)  # raises unless a power of two ≥ 8
        if self.c_dim < 0 or self.z_dim < 0 or (self.c_dim == 0 and self.z_dim == 0):
            raise ValueError(f"need c_dim ≥ 0, z_dim ≥ 0, not both 0 (got {self.c_dim}, {self.z_dim})")
        for name in ("img_channels", "w_dim", "mapping_layers", "d_mapping_layers", "mbstd_group_size",
                     "g_channel_base", "g_channel_max", "d_channel_base", "d_channel_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")

    @classmethod
    def preset(cls, name: str | int, c_dim: int, **overrides: Any) -> GanConfig:
        """The named preset (``tiny``, ``64``, ``128``, ``256``) with ``c_dim`` and overrides."""
        key = str(name)
        if key not in PRESETS:
            raise ValueError(f"unknown GAN preset {name!r}; choose from {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[key], "c_dim": c_dim, **overrides})


@dataclass(frozen=True)
class GanArchOverrides(TypedConfig):
    """Changes to a preset's :class:`GanConfig` (``arch`` of a GAN run); None keeps the preset's value.

    ``resolution`` and ``c_dim`` are not here: the run's ``res`` and the embeddings set them.
    """

    img_channels: int | None = None
    z_dim: int | None = None
    w_dim: int | None = None
    mapping_layers: int | None = None
    embed_features: int | None = None
    mapping_lr_multiplier: float | None = None
    w_avg_beta: float | None = None
    g_channel_base: int | None = None
    g_channel_max: int | None = None
    d_channel_base: int | None = None
    d_channel_max: int | None = None
    cmap_dim: int | None = None
    d_mapping_layers: int | None = None
    d_mapping_lr_multiplier: float | None = None
    mbstd_group_size: int | None = None
    mbstd_num_channels: int | None = None
    conv_clamp: float | None = None
    fir: tuple[float, ...] | None = None

    def changes(self) -> dict[str, Any]:
        """The fields that are set, as :meth:`GanConfig.preset` keyword overrides."""
        return {name: value for name in self.field_names() if (value := getattr(self, name)) is not None}


def build_generator(cfg: GanConfig) -> Generator:
    """The :class:`~gan.networks.Generator` described by ``cfg``."""
    G = Generator(
        cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.resolution, cfg.img_channels,
        mapping_kwargs=dict(num_layers=cfg.mapping_layers, embed_features=cfg.embed_features,
                            lr_multiplier=cfg.mapping_lr_multiplier, w_avg_beta=cfg.w_avg_beta),
        synthesis_kwargs=dict(channel_base=cfg.g_channel_base, channel_max=cfg.g_channel_max,
                              conv_clamp=cfg.conv_clamp, fir=cfg.fir),
    )
    log.debug("generator %d px: %d parameters", cfg.resolution, sum(p.numel() for p in G.parameters()))
    return G


def build_discriminator(cfg: GanConfig) -> Discriminator:
    """The :class:`~gan.networks.Discriminator` described by ``cfg``."""
    D = Discriminator(
        cfg.c_dim, cfg.resolution, cfg.img_channels, channel_base=cfg.d_channel_base,
        channel_max=cfg.d_channel_max, cmap_dim=cfg.cmap_dim, mbstd_group_size=cfg.mbstd_group_size,
        mbstd_num_channels=cfg.mbstd_num_channels, conv_clamp=cfg.conv_clamp, fir=cfg.fir,
        mapping_kwargs=dict(num_layers=cfg.d_mapping_layers, lr_multiplier=cfg.d_mapping_lr_multiplier),
    )
    log.debug("discriminator %d px: %d parameters", cfg.resolution, sum(p.numel() for p in D.parameters()))
    return D

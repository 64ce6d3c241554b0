"""Typed options of ``cxr-reid train-gan``: :class:`GanTrainConfig`.

Every run writes the resolved config as JSON (``gan/train_config.json`` at the
start and inside ``gan/config.json`` next to ``G_ema.safetensors``). It is a
:class:`~reid_core.typed_config.TypedConfig`: :meth:`GanTrainConfig.from_dict`
refuses unknown keys and wrongly typed values, :meth:`GanTrainConfig.with_overrides`
applies ``key=value`` strings (``lr_g=0.002``, ``arch.conv_clamp=256``) the way
the embedder's ``--set`` does.

Conventions (those of Karras et al. 2020, "Training generative adversarial
networks with limited data"):

* ``batch`` is the global batch: images per optimiser step over all processes;
  under ``torchrun`` each of the W processes takes ``batch / W``.
* ``kimg`` is the budget in thousands of real images shown to D.
* ``r1_gamma`` None → :func:`gan.loss.r1_gamma_for` (``0.0002 · res² / batch``).
* Lazy regularisation: R1 every ``r1_interval`` steps and path length every
  ``pl_interval`` steps, each with ``gain = interval``; Adam's lr and betas of
  the regularised network are adjusted by ``mb_ratio = interval / (interval + 1)``
  (``lr · mb_ratio``, ``beta ** mb_ratio``).
* ``ema_kimg``: half-life of G_ema in thousands of images; ``ema_rampup``
  (None: off) caps it at ``ema_rampup · cur_nimg`` early in training.
* ``augment``: ADA on D's inputs, ``p`` tuned toward ``ada_target`` every
  ``ada_interval`` steps, able to sweep 0 → 1 in ``ada_kimg``.
* ``arch``: :class:`~gan.config.GanArchOverrides`, typed changes to the preset's
  :class:`~gan.config.GanConfig` (unset fields keep the preset's values; runs
  written before it was typed stored the same keys as a dict, which still loads).
* ``amp`` (bf16 autocast) and ``channels_last`` apply on CUDA only; with amp the
  architecture gets ``conv_clamp = 256`` unless ``arch.conv_clamp`` sets a value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from gan.config import PRESETS, GanArchOverrides
from reid_core.errors import ConfigError, TrainingError
from reid_core.typed_config import TypedConfig

DEVICES = ("auto", "cpu", "cuda")
SPLITS = ("all", "train")


@dataclass
class GanTrainConfig(TypedConfig):
    """Every option of a GAN training run (see module docstring); JSON round-trips."""

    RECORD_KEYS: ClassVar[tuple[str, ...]] = ("train",)

    preset: str = "128"
    res: int | None = None  # None: the preset's resolution
    batch: int = 32
    kimg: float = 5000.0
    lr_g: float = 0.0025
    lr_d: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float | None = None
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    augment: bool = True
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500.0
    cond_ramp_kimg: float = 0.0
    unconditional: bool = False
    splits: Literal["all", "train"] = "all"
    snapshot_kimg: float = 50.0
    tick_kimg: float = 4.0
    grid_rows: int = 8
    grid_cols: int = 8
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    channels_last: bool = True
    num_workers: int = 0
    arch: GanArchOverrides = field(default_factory=GanArchOverrides)

    def __post_init__(self) -> None:
        if isinstance(self.preset, int) and not isinstance(self.preset, bool):
            self.preset = str(self.preset)  # `--set preset=64` parses as a number
        super().__post_init__()

    def validate(self) -> None:
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {list(self.betas)!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown GAN preset {self.preset!r}; choose from {sorted(PRESETS)}")
        for name in ("batch", "r1_interval", "pl_interval", "pl_batch_shrink", "ada_interval", "grid_rows",
                     "grid_cols"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("kimg", "lr_g", "lr_d", "ada_kimg", "snapshot_kimg", "tick_kimg"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("pl_weight", "ema_kimg", "cond_ramp_kimg", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.r1_gamma is not None and self.r1_gamma < 0:
            raise ValueError(f"r1_gamma must be None or >= 0, got {self.r1_gamma}")
        if self.ema_rampup is not None and self.ema_rampup <= 0:
            raise ValueError(f"ema_rampup must be None or > 0, got {self.ema_rampup}")
        if self.res is not None and (self.res < 8 or self.res & (self.res - 1)):
            raise ValueError(f"res must be a power of two >= 8, got {self.res}")
        for name in ("style_mixing_prob", "ada_target"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def resolution(self) -> int:
        """The training resolution: ``res`` or the preset's."""
        return self.res if self.res is not None else int(PRESETS[self.preset]["resolution"])


def load_gan_train_config(path: str | Path) -> GanTrainConfig:
    """A config from a JSON file: the config itself or a ``gan/config.json`` record (``meta.train``)."""
    try:
        return GanTrainConfig.from_file(path)
    except ConfigError as exc:
        raise TrainingError(str(exc)) from None

"""Typed options of ``cxr-reid train-gan``: :class:`GanTrainConfig`.

Every run writes the resolved config as JSON (``gan/train_config.json`` at the
start and inside ``gan/config.json`` next to ``G_ema.safetensors``).
:meth:`GanTrainConfig.from_dict` refuses unknown keys and wrongly typed values;
:func:`apply_gan_overrides` applies ``key=value`` strings (``lr_g=0.002``,
``arch.conv_clamp=256``) the way the embedder's ``--set`` does.

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
* ``arch``: :class:`~gan.config.GanConfig` overrides on top of the preset.
* ``amp`` (bf16 autocast) and ``channels_last`` apply on CUDA only; with amp the
  architecture gets ``conv_clamp = 256`` unless ``arch`` sets it.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from gan.config import PRESETS
from reid_core.errors import TrainingError
from reid_core.train.config import check_type, parse_value

DEVICES = ("auto", "cpu", "cuda")
SPLITS = ("all", "train")


@dataclass
class GanTrainConfig:
    """Every option of a GAN training run (see module docstring); JSON round-trips."""

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
    arch: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.preset, int) and not isinstance(self.preset, bool):
            self.preset = str(self.preset)  # `--set preset=64` parses as a number
        hints = _hints()
        for f in dataclasses.fields(self):
            if f.name != "betas":
                setattr(self, f.name, check_type(getattr(self, f.name), hints[f.name], f.name))
        self.betas = _check_betas(self.betas)
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
        if "c_dim" in self.arch or "resolution" in self.arch:
            raise ValueError("arch may not set c_dim (from the embeddings / unconditional) or resolution (res)")

    @property
    def resolution(self) -> int:
        """The training resolution: ``res`` or the preset's."""
        return self.res if self.res is not None else int(PRESETS[self.preset]["resolution"])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``betas`` as a list)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GanTrainConfig:
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys raise ValueError."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a GAN training config must be a mapping, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown GanTrainConfig key(s) {unknown}; valid keys: {names}")
        return cls(**dict(data))


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(GanTrainConfig)


def _check_betas(value: Any) -> tuple[float, float]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in value)):
        raise ValueError(f"betas must be two numbers, got {value!r}")
    b1, b2 = float(value[0]), float(value[1])
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise ValueError(f"betas must lie in [0, 1), got {value!r}")
    return b1, b2


def apply_gan_overrides(config: GanTrainConfig, overrides: Sequence[str]) -> GanTrainConfig:
    """A copy with ``key=value`` overrides (``arch.<GanConfig field>=…`` reaches the architecture).

    Values are parsed as JSON when they parse (``1e-3``, ``true``, ``null``,
    ``[0, 0.99]``), else taken as strings; ValueError names the bad override.
    """
    data = config.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key=value (e.g. lr_g=0.002 or arch.conv_clamp=256)")
        head, dot, tail = key.partition(".")
        if dot:
            if head != "arch" or not tail or "." in tail:
                raise ValueError(f"override {item!r}: only arch.<field> may be dotted")
            data["arch"] = {**data["arch"], tail: parse_value(raw)}
        elif head not in data:
            raise ValueError(f"override {item!r}: unknown key {head!r}; valid keys: {sorted(data)}")
        else:
            data[head] = parse_value(raw)
    return GanTrainConfig.from_dict(data)


def load_gan_train_config(path: str | Path) -> GanTrainConfig:
    """A config from a JSON file: the config itself or a ``gan/config.json`` record (``meta.train``)."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"config file {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TrainingError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("meta"), dict):
        data = data["meta"].get("train", data)
    try:
        return GanTrainConfig.from_dict(data)
    except ValueError as exc:
        raise TrainingError(f"{path}: {exc}") from None

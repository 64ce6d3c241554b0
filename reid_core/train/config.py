"""Typed training options: :class:`TrainConfig` (with nested model, augmentation and loss options).

Every run saves its full config as JSON (``embedder/train_config.json`` at the
start, and inside ``config.json`` next to the best weights). A config comes
from :meth:`TrainConfig.from_dict` (unknown keys and wrongly typed values are
refused with the valid choices), from a JSON file (:func:`load_config`; YAML
too when PyYAML is installed) and from ``key=value`` overrides
(:func:`apply_overrides`, e.g. ``lr=1e-3`` or ``model.embedding_dim=32``).
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from reid_core.errors import TrainingError
from reid_core.model import EmbedderConfig

LOSSES: tuple[str, ...] = ("triplet", "multi_similarity", "contrastive_xbm")
MINERS: tuple[str, ...] = ("semihard", "hard", "all")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass
class AugmentConfig:
    """CXR-appropriate, batched augmentation; every strength 0 (or ``enabled=False``) is the identity.

    ``degrees``: max rotation; ``translate``: max shift as a fraction of the side;
    ``scale``: max relative zoom; ``brightness``: max additive shift; ``contrast``:
    max relative contrast change; ``gamma``: gamma drawn log-uniformly in
    [1/(1+gamma), 1+gamma]; ``noise_std``: max Gaussian noise std; ``blur_sigma``:
    max Gaussian blur sigma in pixels of the training size. ``hflip`` stays False
    by default: the heart's side is anatomy, a mirrored chest is another body.
    """

    enabled: bool = True
    degrees: float = 5.0
    translate: float = 0.05
    scale: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: float = 0.2
    noise_std: float = 0.02
    blur_sigma: float = 0.5
    hflip: bool = False

    def __post_init__(self) -> None:
        _check_fields(self)
        for name in ("degrees", "translate", "scale", "brightness", "contrast", "gamma", "noise_std", "blur_sigma"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.scale >= 1 or self.contrast >= 1 or self.translate >= 1:
            raise ValueError("augment.scale, augment.contrast and augment.translate must be < 1")

    @property
    def active(self) -> bool:
        """Whether any augmentation would change an image."""
        strengths = (self.degrees, self.translate, self.scale, self.brightness, self.contrast, self.gamma,
                     self.noise_std, self.blur_sigma)
        return self.enabled and (self.hflip or any(s > 0 for s in strengths))


@dataclass
class LossParams:
    """The less common knobs of the losses (the main ones, ``loss``/``miner``/``margin``, are on TrainConfig).

    ``ms_*``: MultiSimilarityLoss alpha/beta/base and MultiSimilarityMiner epsilon.
    ``pos_margin``/``neg_margin``: ContrastiveLoss margins (Euclidean distance of
    unit vectors, in [0, 2]). ``xbm_memory_size``: CrossBatchMemory queue length.
    """

    ms_alpha: float = 2.0
    ms_beta: float = 50.0
    ms_base: float = 0.5
    ms_epsilon: float = 0.1
    pos_margin: float = 0.0
    neg_margin: float = 0.5
    xbm_memory_size: int = 1024

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.xbm_memory_size < 1:
            raise ValueError(f"loss_params.xbm_memory_size must be >= 1, got {self.xbm_memory_size}")


@dataclass
class TrainConfig:
    """Every option of ``cxr-reid train``; JSON round-trips through :meth:`to_dict` / :meth:`from_dict`.

    Budget: ``epochs`` and/or ``max_steps`` (optimizer steps; the smaller wins and
    sets the cosine schedule's length). A batch holds ``batch_size`` images:
    ``batch_size // m_per_patient`` patients with ``m_per_patient`` images each,
    per process and per micro-step (``grad_accum`` micro-steps make one step).
    ``image_size`` None takes the workspace's largest prepared size. ``val_every``
    steps the val split is embedded and scored (mAP@R); training stops after
    ``early_stop_patience`` validations without improvement (None: never).
    ``amp`` (bf16 autocast) applies on CUDA only. ``train_findings`` "normal"
    trains on the studies labelled ``No Finding`` only: the loss then never
    pulls a patient's abnormal films onto their normal ones, so findings keep
    moving the embedding (the longitudinal drift signal) while identity is
    learned from normal anatomy; validation still uses every val image.
    """

    model: EmbedderConfig = field(default_factory=EmbedderConfig)
    loss: Literal["triplet", "multi_similarity", "contrastive_xbm"] = "triplet"
    miner: Literal["semihard", "hard", "all"] = "semihard"
    margin: float = 0.1
    loss_params: LossParams = field(default_factory=LossParams)
    m_per_patient: int = 4
    batch_size: int = 32
    epochs: int = 30
    max_steps: int | None = None
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 200
    min_lr_ratio: float = 0.01
    grad_accum: int = 1
    grad_clip_norm: float | None = None
    image_size: int | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    val_every: int = 500
    val_max_patients: int | None = None
    train_findings: Literal["all", "normal"] = "all"
    early_stop_patience: int | None = 10
    log_every: int = 10
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    channels_last: bool = True
    num_workers: int = 2
    init_weights: str | None = None

    def __post_init__(self) -> None:
        _check_fields(self)
        positive = ("m_per_patient", "batch_size", "epochs", "grad_accum", "val_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.m_per_patient < 2:
            raise ValueError("m_per_patient must be >= 2: a patient needs a positive pair in every batch")
        if self.batch_size % self.m_per_patient or self.batch_size < 2 * self.m_per_patient:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of m_per_patient "
                             f"({self.m_per_patient}) holding at least 2 patients")
        for name in ("max_steps", "image_size", "val_max_patients", "early_stop_patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be None or >= 1, got {value!r}")
        if self.image_size is not None and self.image_size < 16:
            raise ValueError(f"image_size must be >= 16 px, got {self.image_size}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_steps < 0 or self.num_workers < 0:
            raise ValueError("lr must be > 0; weight_decay, warmup_steps and num_workers >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
            raise ValueError(f"grad_clip_norm must be None or > 0, got {self.grad_clip_norm}")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.loss == "contrastive_xbm" and self.loss_params.xbm_memory_size < self.batch_size:
            raise ValueError(f"loss_params.xbm_memory_size ({self.loss_params.xbm_memory_size}) must be >= "
                             f"batch_size ({self.batch_size})")

    @property
    def patients_per_batch(self) -> int:
        return self.batch_size // self.m_per_patient

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict of every field (nested configs as dicts)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build a config from :meth:`to_dict` output; missing fields take their defaults.

        Raises ValueError on an unknown key (with the valid ones) or a wrongly typed value.
        """
        return _from_dict(cls, data, "")

    def with_overrides(self, overrides: Sequence[str]) -> "TrainConfig":
        """A copy with ``key=value`` overrides applied (see :func:`apply_overrides`)."""
        return apply_overrides(self, overrides)


# --------------------------------------------------------------------------- dict ⇄ dataclass, type checks

def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_dict(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown config key(s) {[prefix + k for k in unknown]}; valid keys of "
                         f"{prefix.rstrip('.') or 'the config'}: {names}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        if hint is EmbedderConfig:
            try:
                kwargs[key] = value if isinstance(value, EmbedderConfig) else EmbedderConfig.from_dict(dict(value))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{prefix}{key}: {exc}") from None
        elif dataclasses.is_dataclass(hint):
            kwargs[key] = value if isinstance(value, hint) else _from_dict(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = check_type(value, hint, prefix + key)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ValueError(f"{prefix}{exc}" if prefix else str(exc)) from None


def check_type(value: Any, hint: Any, name: str) -> Any:
    """``value`` if it fits the annotation ``hint`` (ints are accepted for floats); ValueError if not."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be one of {list(args)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return check_type(value, arg, name)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if len(errors) == 1 else f"{name}: {value!r} fits none of {args}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return value
    else:  # pragma: no cover - only the annotations above are used in the configs
        return value
    type_name = getattr(hint, "__name__", str(hint))
    raise ValueError(f"{name} must be of type {type_name}, got {type(value).__name__} {value!r}")


# --------------------------------------------------------------------------- files and overrides

def load_config(path: str | Path) -> TrainConfig:
    """Read a TrainConfig from a JSON file (``.yaml``/``.yml`` too when PyYAML is installed).

    The file may hold the config itself or a checkpoint record with it under
    ``meta.extra.train_config`` (an ``embedder/config.json``).
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"config file {path} not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise TrainingError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); "
                                "or write the config as JSON") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise TrainingError(f"{path}: not valid YAML ({exc})") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TrainingError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("meta"), dict):
        data = data["meta"].get("extra", {}).get("train_config", data)
    try:
        return TrainConfig.from_dict(data)
    except ValueError as exc:
        raise TrainingError(f"{path}: {exc}") from None


def parse_value(text: str) -> Any:
    """An override's value: JSON when it parses (``1e-3``, ``true``, ``null``, ``[1,2]``), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        lowered = text.strip().lower()
        if lowered in ("none", "null"):
            return None
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def apply_overrides(config: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """A new config with ``key=value`` overrides (dotted keys reach nested configs), type-checked.

    Raises ValueError naming the bad override and the valid keys.
    """
    data = config.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key=value (e.g. lr=1e-3 or model.embedding_dim=32)")
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                where = ".".join(parts[:depth + 1])
                raise ValueError(f"override {item!r}: {where!r} is not a nested config; "
                                 f"nested configs are {[k for k, v in data.items() if isinstance(v, dict)]}")
            node = node[part]
        if parts[-1] not in node and not (len(parts) > 1 and parts[-2] == "backbone_kwargs"):
            raise ValueError(f"override {item!r}: unknown key {key!r}; valid keys here: {sorted(node)}")
        node[parts[-1]] = parse_value(raw)
    return TrainConfig.from_dict(data)


def _check_fields(obj: Any) -> None:
    """Type-check every non-dataclass field of a config dataclass instance."""
    for name, hint in _hints(type(obj)).items():
        if dataclasses.is_dataclass(hint):
            if not isinstance(getattr(obj, name), hint):
                raise ValueError(f"{name} must be a {hint.__name__} (use TrainConfig.from_dict for plain dicts)")
            continue
        setattr(obj, name, check_type(getattr(obj, name), hint, name))

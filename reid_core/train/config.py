"""Typed training options: :class:`TrainConfig` (with nested model, augmentation and loss options).

Every run saves its full config as JSON (``embedder/train_config.json`` at the
start, and inside ``config.json`` next to the best weights). The classes are
:class:`~reid_core.typed_config.TypedConfig` dataclasses: :meth:`TrainConfig.from_dict`
refuses unknown keys and wrongly typed values with the valid choices,
:meth:`TrainConfig.with_overrides` applies ``key=value`` strings (``lr=1e-3``,
``model.embedding_dim=32``) and :func:`load_config` reads a JSON/YAML file or a
checkpoint record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from reid_core.errors import ConfigError, TrainingError
from reid_core.model import EmbedderConfig
from reid_core.train.loss_kinds import TripletMiner, get_loss
from reid_core.typed_config import TypedConfig

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass
class AugmentConfig(TypedConfig):
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

    def validate(self) -> None:
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
class LossParams(TypedConfig):
    """The less common knobs of the losses (the main ones, ``loss``/``miner``/``margin``, are on TrainConfig).

    Each loss kind (:mod:`reid_core.train.loss_kinds`) reads its own parameters from here.

    ``ms_*``: MultiSimilarityLoss alpha/beta/base and MultiSimilarityMiner epsilon.
    ``pos_margin``/``neg_margin``: ContrastiveLoss margins (Euclidean distance of
    unit vectors, in [0, 2]). ``xbm_memory_size``: CrossBatchMemory queue length.
    ``pa_margin``/``pa_alpha``: ProxyAnchorLoss margin δ and scale α.
    ``cosface_margin``/``cosface_scale``: CosFaceLoss additive cosine margin and logit scale.
    ``proxy_lr_mult``: learning rate of a proxy loss's class proxies relative to ``lr``.
    """

    ms_alpha: float = 2.0
    ms_beta: float = 50.0
    ms_base: float = 0.5
    ms_epsilon: float = 0.1
    pos_margin: float = 0.0
    neg_margin: float = 0.5
    xbm_memory_size: int = 1024
    pa_margin: float = 0.1
    pa_alpha: float = 32.0
    cosface_margin: float = 0.2
    cosface_scale: float = 30.0
    proxy_lr_mult: float = 10.0

    def validate(self) -> None:
        if self.xbm_memory_size < 1:
            raise ValueError(f"loss_params.xbm_memory_size must be >= 1, got {self.xbm_memory_size}")
        if self.pa_alpha <= 0 or self.cosface_scale <= 0 or self.proxy_lr_mult <= 0:
            raise ValueError("loss_params.pa_alpha, cosface_scale and proxy_lr_mult must be > 0")


@dataclass
class TrainConfig(TypedConfig):
    """Every option of ``cxr-reid train``; JSON round-trips through :meth:`to_dict` / :meth:`from_dict`.

    ``loss`` names a kind in :data:`reid_core.train.loss_kinds.LOSSES`; ``margin``
    and ``miner`` are the triplet loss's, the other kinds read ``loss_params``.
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

    RECORD_KEYS: ClassVar[tuple[str, ...]] = ("extra.train_config",)

    model: EmbedderConfig = field(default_factory=EmbedderConfig)
    loss: str = "triplet"  # a name in reid_core.train.loss_kinds.LOSSES
    miner: TripletMiner = "semihard"
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

    def validate(self) -> None:
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
        get_loss(self.loss)  # refuses an unregistered name, listing the registered ones
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        get_loss(self.loss).check(self)

    @property
    def patients_per_batch(self) -> int:
        return self.batch_size // self.m_per_patient


def load_config(path: str | Path) -> TrainConfig:
    """A TrainConfig from a JSON file (``.yaml``/``.yml`` too when PyYAML is installed); TrainingError if unusable.

    The file may hold the config itself or a checkpoint record with it under
    ``meta.extra.train_config`` (an ``embedder/config.json``).
    """
    try:
        return TrainConfig.from_file(path)
    except ConfigError as exc:
        raise TrainingError(str(exc)) from None

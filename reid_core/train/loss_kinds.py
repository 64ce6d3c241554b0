"""The registry of metric-learning losses: one :class:`LossKind` per ``TrainConfig.loss`` name.

A kind has its own parameter dataclass (``Params``, a :class:`TypedConfig`),
reads it from the run's :class:`~reid_core.train.config.TrainConfig`
(:meth:`LossKind.params`), builds the pytorch-metric-learning loss and, only
where the loss uses one, its miner (:meth:`LossKind.build`), and names the
miner a model card reports. ``TrainConfig.miner`` reaches the triplet loss
only; the other kinds bring their own (or none). Proxy kinds (``proxy_anchor``,
``cosface``) hold one learnable proxy per training patient: they are built
with ``num_classes`` (labels must be ``0 … num_classes - 1``) and their
parameters train at ``lr × proxy_lr_mult`` (:meth:`LossKind.lr_mult`).

Adding a loss: a ``Params`` dataclass, a subclass with ``name`` and the two
methods, ``@register_loss``; its knobs go on ``TrainConfig.loss_params``.
pytorch-metric-learning is imported when a loss is built, not when this
module is (``import gan.train`` must not load it).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from torch import nn

from reid_core.typed_config import TypedConfig

if TYPE_CHECKING:
    from reid_core.train.config import TrainConfig

TripletMiner = Literal["semihard", "hard", "all"]
"""The triplet miner's choices (``TrainConfig.miner``)."""


class LossKind(ABC):
    """Protocol of one loss: its parameters, how to read them from a TrainConfig, how to build it."""

    name: ClassVar[str]
    Params: ClassVar[type[TypedConfig]]

    @classmethod
    @abstractmethod
    def params(cls, config: TrainConfig) -> TypedConfig:
        """This loss's parameters, taken from the run's config."""

    @classmethod
    @abstractmethod
    def build(cls, params: TypedConfig, embedding_dim: int,
              num_classes: int = 0) -> tuple[nn.Module, nn.Module | None]:
        """``(loss, miner)``; the miner is None when the loss uses none. ``num_classes``: training patients."""

    @classmethod
    def lr_mult(cls, params: TypedConfig) -> float:
        """Learning-rate multiplier of the loss's own parameters (proxies), if it has any."""
        return 1.0

    @classmethod
    def miner_name(cls, params: TypedConfig) -> str:
        """The miner the loss trains with, as a model card reports it."""
        return "none"

    @classmethod
    def check(cls, config: TrainConfig) -> None:
        """ValueError when the loss cannot work with the rest of ``config`` (default: always can)."""


LOSSES: dict[str, type[LossKind]] = {}
"""Every registered loss kind by name, in registration order."""


def register_loss(kind: type[LossKind]) -> type[LossKind]:
    """Class decorator adding ``kind`` to :data:`LOSSES` (names must be unique)."""
    if kind.name in LOSSES:
        raise ValueError(f"loss {kind.name!r} is registered twice")
    LOSSES[kind.name] = kind
    return kind


def get_loss(name: str) -> type[LossKind]:
    """The kind called ``name``; ValueError naming the registered ones."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {name!r}") from None


# --------------------------------------------------------------------------- the kinds

@dataclass(frozen=True)
class TripletParams(TypedConfig):
    """``TripletMarginLoss(margin)`` on the triplets of ``TripletMarginMiner(margin, miner)``."""

    margin: float = 0.1
    miner: TripletMiner = "semihard"


@register_loss
class Triplet(LossKind):
    name = "triplet"
    Params = TripletParams

    @classmethod
    def params(cls, config: TrainConfig) -> TripletParams:
        return TripletParams(margin=config.margin, miner=config.miner)

    @classmethod
    def build(cls, params: TripletParams, embedding_dim: int,
              num_classes: int = 0) -> tuple[nn.Module, nn.Module | None]:
        from pytorch_metric_learning import losses, miners

        return (losses.TripletMarginLoss(margin=params.margin),
                miners.TripletMarginMiner(margin=params.margin, type_of_triplets=params.miner))

    @classmethod
    def miner_name(cls, params: TripletParams) -> str:
        return params.miner


@dataclass(frozen=True)
class MultiSimilarityParams(TypedConfig):
    """``MultiSimilarityLoss(alpha, beta, base)`` on the pairs of ``MultiSimilarityMiner(epsilon)``."""

    alpha: float = 2.0
    beta: float = 50.0
    base: float = 0.5
    epsilon: float = 0.1


@register_loss
class MultiSimilarity(LossKind):
    name = "multi_similarity"
    Params = MultiSimilarityParams

    @classmethod
    def params(cls, config: TrainConfig) -> MultiSimilarityParams:
        p = config.loss_params
        return MultiSimilarityParams(alpha=p.ms_alpha, beta=p.ms_beta, base=p.ms_base, epsilon=p.ms_epsilon)

    @classmethod
    def build(cls, params: MultiSimilarityParams, embedding_dim: int,
              num_classes: int = 0) -> tuple[nn.Module, nn.Module | None]:
        from pytorch_metric_learning import losses, miners

        return (losses.MultiSimilarityLoss(alpha=params.alpha, beta=params.beta, base=params.base),
                miners.MultiSimilarityMiner(epsilon=params.epsilon))

    @classmethod
    def miner_name(cls, params: MultiSimilarityParams) -> str:
        return "multi_similarity"


@dataclass(frozen=True)
class ContrastiveXbmParams(TypedConfig):
    """``ContrastiveLoss(pos_margin, neg_margin)`` inside a ``CrossBatchMemory`` of ``memory_size`` embeddings."""

    pos_margin: float = 0.0
    neg_margin: float = 0.5
    memory_size: int = 1024


@register_loss
class ContrastiveXbm(LossKind):
    name = "contrastive_xbm"
    Params = ContrastiveXbmParams

    @classmethod
    def params(cls, config: TrainConfig) -> ContrastiveXbmParams:
        p = config.loss_params
        return ContrastiveXbmParams(pos_margin=p.pos_margin, neg_margin=p.neg_margin, memory_size=p.xbm_memory_size)

    @classmethod
    def build(cls, params: ContrastiveXbmParams, embedding_dim: int,
              num_classes: int = 0) -> tuple[nn.Module, nn.Module | None]:
        from pytorch_metric_learning import losses

        inner = losses.ContrastiveLoss(pos_margin=params.pos_margin, neg_margin=params.neg_margin)
        return losses.CrossBatchMemory(inner, embedding_size=embedding_dim, memory_size=params.memory_size), None

    @classmethod
    def miner_name(cls, params: ContrastiveXbmParams) -> str:
        return "none (cross-batch memory)"

    @classmethod
    def check(cls, config: TrainConfig) -> None:
        memory = config.loss_params.xbm_memory_size
        if memory < config.batch_size:
            raise ValueError(f"loss_params.xbm_memory_size ({memory}) must be >= batch_size ({config.batch_size})")


class ProxyLossKind(LossKind):
    """A loss with one learnable proxy per training patient: needs ``num_classes``, trains its proxies at
    ``lr × proxy_lr_mult``, mines nothing."""

    @classmethod
    @abstractmethod
    def loss(cls, params: TypedConfig, embedding_dim: int, num_classes: int) -> nn.Module:
        """The pytorch-metric-learning loss module."""

    @classmethod
    def build(cls, params: TypedConfig, embedding_dim: int, num_classes: int = 0) -> tuple[nn.Module, None]:
        if num_classes < 2:
            raise ValueError(f"the {cls.name} loss needs the number of training patients (>= 2), got {num_classes}")
        return cls.loss(params, embedding_dim, num_classes), None

    @classmethod
    def lr_mult(cls, params: TypedConfig) -> float:
        return float(params.proxy_lr_mult)  # type: ignore[attr-defined]

    @classmethod
    def miner_name(cls, params: TypedConfig) -> str:
        return "none (class proxies)"


@dataclass(frozen=True)
class ProxyAnchorParams(TypedConfig):
    """``ProxyAnchorLoss(margin, alpha)`` (Kim et al. 2020): every batch is compared with one proxy per patient."""

    margin: float = 0.1
    alpha: float = 32.0
    proxy_lr_mult: float = 10.0


@register_loss
class ProxyAnchor(ProxyLossKind):
    name = "proxy_anchor"
    Params = ProxyAnchorParams

    @classmethod
    def params(cls, config: TrainConfig) -> ProxyAnchorParams:
        p = config.loss_params
        return ProxyAnchorParams(margin=p.pa_margin, alpha=p.pa_alpha, proxy_lr_mult=p.proxy_lr_mult)

    @classmethod
    def loss(cls, params: ProxyAnchorParams, embedding_dim: int, num_classes: int) -> nn.Module:
        from pytorch_metric_learning import losses

        return losses.ProxyAnchorLoss(num_classes, embedding_dim, margin=params.margin, alpha=params.alpha)


@dataclass(frozen=True)
class CosFaceParams(TypedConfig):
    """``CosFaceLoss(margin, scale)`` (Wang et al. 2018): softmax over patients with an additive cosine margin."""

    margin: float = 0.2
    scale: float = 30.0
    proxy_lr_mult: float = 10.0


@register_loss
class CosFace(ProxyLossKind):
    name = "cosface"
    Params = CosFaceParams

    @classmethod
    def params(cls, config: TrainConfig) -> CosFaceParams:
        p = config.loss_params
        return CosFaceParams(margin=p.cosface_margin, scale=p.cosface_scale, proxy_lr_mult=p.proxy_lr_mult)

    @classmethod
    def loss(cls, params: CosFaceParams, embedding_dim: int, num_classes: int) -> nn.Module:
        from pytorch_metric_learning import losses

        return losses.CosFaceLoss(num_classes, embedding_dim, margin=params.margin, scale=params.scale)

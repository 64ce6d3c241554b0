"""The metric-learning objective: a pytorch-metric-learning loss, its miner, and (for XBM) a memory.

The loss is the kind ``TrainConfig.loss`` names in :data:`reid_core.train.loss_kinds.LOSSES`:
``triplet``: ``TripletMarginLoss(margin)`` on the triplets of
``TripletMarginMiner(margin, type_of_triplets=miner)`` (semihard / hard / all).
``multi_similarity``: ``MultiSimilarityLoss`` on the pairs of
``MultiSimilarityMiner``. ``contrastive_xbm``: ``ContrastiveLoss`` wrapped in
``CrossBatchMemory`` (the batch is compared against a queue of recent
embeddings as well), the Packhäuser et al. baseline's pair loss with more
negatives. ``proxy_anchor`` and ``cosface`` learn one proxy per training
patient (their parameters are :meth:`Objective.parameters`, trained by the
embedder's optimizer at ``lr × lr_mult`` and saved with the resume state).
Losses run in float32 (embeddings are cast before the loss).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from pytorch_metric_learning import losses
from torch import Tensor, nn

from reid_core.train.config import TrainConfig
from reid_core.train.loss_kinds import get_loss

log = logging.getLogger(__name__)


@dataclass
class Objective:
    """A loss module and its miner (None when the loss mines itself or uses all pairs).

    ``lr_mult``: learning-rate multiplier of the loss's own parameters (proxies), if any.
    """

    loss: nn.Module
    miner: nn.Module | None
    lr_mult: float = 1.0

    def parameters(self) -> list[nn.Parameter]:
        """The loss's learnable parameters (class proxies; empty for pair losses)."""
        return [p for p in self.loss.parameters() if p.requires_grad]

    def __call__(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        embeddings = embeddings.float()
        if self.miner is None:
            return self.loss(embeddings, labels)
        return self.loss(embeddings, labels, self.miner(embeddings, labels))

    def to(self, device: torch.device) -> "Objective":
        self.loss.to(device)
        return self

    # -- resumable state (a cross-batch memory's queue, or learnable proxies) ---------
    def state(self) -> dict[str, Any] | None:
        """The memory queue of a CrossBatchMemory or the proxies of a proxy loss (CPU copies), else None."""
        if self.parameters():
            return {"parameters": {k: v.detach().cpu().clone() for k, v in self.loss.state_dict().items()}}
        if not isinstance(self.loss, losses.CrossBatchMemory):
            return None
        m = self.loss
        return {"embedding_memory": m.embedding_memory.detach().cpu().clone(),
                "label_memory": m.label_memory.detach().cpu().clone(),
                "queue_idx": int(m.queue_idx), "has_been_filled": bool(m.has_been_filled)}

    def load_state(self, state: dict[str, Any] | None) -> None:
        """Restore what :meth:`state` returned (a no-op for stateless losses)."""
        if state is not None and "parameters" in state:
            self.loss.load_state_dict(state["parameters"])
            return
        if state is None or not isinstance(self.loss, losses.CrossBatchMemory):
            return
        m = self.loss
        if tuple(state["embedding_memory"].shape) != tuple(m.embedding_memory.shape):
            raise ValueError(f"cross-batch memory shape {tuple(state['embedding_memory'].shape)} does not fit "
                             f"{tuple(m.embedding_memory.shape)}")
        m.embedding_memory = state["embedding_memory"].to(m.embedding_memory.device)
        m.label_memory = state["label_memory"].to(m.label_memory.device)
        m.queue_idx, m.has_been_filled = int(state["queue_idx"]), bool(state["has_been_filled"])


def build_objective(config: TrainConfig, num_classes: int = 0) -> Objective:
    """The loss (+ miner, + memory) of the kind ``config.loss`` names; ValueError on an unknown name.

    ``num_classes``: the number of training patients (labels ``0 … num_classes - 1``), which proxy losses need.
    """
    kind = get_loss(config.loss)
    params = kind.params(config)
    default_miner = TrainConfig.__dataclass_fields__["miner"].default
    if "miner" not in params.field_names() and config.miner != default_miner:
        log.warning("miner=%s has no effect on the %s loss (its miner: %s)", config.miner, kind.name,
                    kind.miner_name(params))
    loss, miner = kind.build(params, config.model.embedding_dim, num_classes)
    return Objective(loss, miner, kind.lr_mult(params))

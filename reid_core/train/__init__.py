"""Training of the identity embedder: ``train_embedder(workspace, TrainConfig(...))`` or ``cxr-reid train``.

Modules, one concept each: ``config`` (typed options), ``augment`` (batched CXR
augmentation), ``sampler`` (deterministic m-per-patient batches), ``data``
(store rows → batches), ``losses`` (PML loss + miner + memory), ``optim``
(AdamW + warm-up/cosine), ``distributed`` (torchrun/DDP), ``state`` (exact
resume), ``validate`` (mAP@R), ``runlog`` (JSONL log, atomic JSON), ``loop``
(the training loop), ``cli`` (the ``train`` subcommand).
"""
from reid_core.train.config import AugmentConfig, LossParams, TrainConfig, apply_overrides, load_config
from reid_core.train.loop import TrainResult, train_embedder

__all__ = ["AugmentConfig", "LossParams", "TrainConfig", "TrainResult", "apply_overrides", "load_config",
           "train_embedder"]

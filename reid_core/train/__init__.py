"""Training of the identity embedder: ``train_embedder(workspace, TrainConfig(...))`` or ``cxr-reid train``.

Modules, one concept each: ``config`` (typed options), ``augment`` (batched CXR
augmentation), ``sampler`` (deterministic m-per-patient batches), ``data``
(store rows → batches), ``losses`` (PML loss + miner + memory), ``optim``
(AdamW + warm-up/cosine), ``distributed`` (torchrun/DDP), ``state`` (exact
resume), ``validate`` (mAP@R), ``runlog`` (JSONL log, atomic JSON), ``run_loop``
(the step loop every trainer runs in: log, evaluate, save, slices, signals), ``session``
(a trainer's session around it: restore or reset, run config, log),
``loop`` (the embedder's step and outputs), ``cli`` (the ``train`` subcommand).
"""
from typing import Any

from reid_core.train.config import AugmentConfig, LossParams, TrainConfig, load_config

__all__ = ["AugmentConfig", "LossParams", "TrainConfig", "TrainResult", "load_config",
           "train_embedder"]


def __getattr__(name: str) -> Any:
    """``train_embedder`` and ``TrainResult`` load the loop (and pytorch-metric-learning) on first use only, so
    the GAN trainers can use the run-layer modules of this package without it."""
    if name in ("TrainResult", "train_embedder"):
        from reid_core.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

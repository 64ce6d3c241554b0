"""GAN resume state in ``gan/resume/``: ``state.safetensors`` + ``state.json``, the one before in ``state_prev.*``.

It holds G, D, G_ema, both Adam states, the ADA controller (``p`` and its
partial interval), the loss state (path-length mean), the counters
(:class:`GanProgress`), the training config and the architecture that wrote it.
No RNG state is needed: the training loop reseeds the global RNG from
``(seed, step, rank)`` at every step and the data order is a function of
``(seed, step)`` (:class:`gan.data.RealSampler`).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid_core.train.state import ResumeFolder

log = logging.getLogger(__name__)

# Options that change neither the trajectory's definition nor its outputs' meaning: free to differ on resume.
RESUMABLE_CHANGES = frozenset({"kimg", "snapshot_kimg", "tick_kimg", "num_workers", "device", "amp",
                               "channels_last", "grid_rows", "grid_cols"})


@dataclass
class GanProgress:
    """Counters of a run: optimiser steps, real images shown (all processes), wall and step time."""

    step: int = 0
    cur_nimg: int = 0
    elapsed_s: float = 0.0
    train_time_s: float = 0.0

    @property
    def kimg(self) -> float:
        return self.cur_nimg / 1000.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GanProgress:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def gan_resume(gan_dir: Path) -> ResumeFolder:
    """The GAN trainer's resume folder, ``gan/resume/`` (shared with the autoencoder's, which it refuses)."""
    from gan.train_config import GanTrainConfig

    return ResumeFolder(Path(gan_dir) / "resume", "gan", GanTrainConfig, RESUMABLE_CHANGES)

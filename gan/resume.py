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

from reid_core.errors import CheckpointError, TrainingError
from reid_core.train.generations import has_state, load_newest_state, save_state_generation
from reid_core.train.state import check_resumable as check_config_unchanged

log = logging.getLogger(__name__)

STATE_NAME = "state"
STATE_VERSION = 1
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


def resume_dir(gan_dir: Path) -> Path:
    return Path(gan_dir) / "resume"


def has_resume_state(gan_dir: Path) -> bool:
    return has_state(resume_dir(gan_dir), STATE_NAME)


def save_resume(gan_dir: Path, *, engine_state: dict[str, Any], progress: GanProgress, config: dict[str, Any],
                gan: dict[str, Any], world_size: int) -> None:
    """Atomically write the resume state (call right after ``state_dict()``: its tensors alias live ones)."""
    save_state_generation(resume_dir(gan_dir), STATE_NAME, {
        "version": STATE_VERSION, "engine": engine_state, "progress": progress.to_dict(), "config": config,
        "gan": gan, "world_size": world_size})


def load_resume(gan_dir: Path) -> dict[str, Any]:
    """The resume state; TrainingError (suggesting ``--no-resume``) when unreadable or of another version."""
    folder = resume_dir(gan_dir)
    try:
        state = load_newest_state(folder, STATE_NAME)
    except CheckpointError as exc:
        raise TrainingError(f"cannot resume the GAN: {exc}. Start over with --no-resume") from None
    if state.get("objective") is not None:  # another trainer's run (cxr-reid train-cae) in the same gan/ folder
        raise TrainingError(f"{folder} holds a {state['objective']} run (cxr-reid train-cae), not a GAN run; "
                            "continue it with train-cae, or start the GAN over with --no-resume (replaces it)")
    if state.get("version") != STATE_VERSION:
        raise TrainingError(f"{folder}: GAN resume state version {state.get('version')!r} is not {STATE_VERSION}; "
                            "start over with --no-resume")
    return state


def check_resumable(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    """TrainingError when options that shape the GAN's trajectory changed since the state was written."""
    check_config_unchanged(saved, current, where, resumable=RESUMABLE_CHANGES, what="GAN run")

"""Resume state: everything needed to continue a run exactly where it stopped, in ``embedder/resume/``.

One atomic :func:`~reid_core.checkpoint.save_state` pair (``state.safetensors`` +
``state.json``; the previous generation stays as ``state_prev.*``, see
:mod:`reid_core.train.generations`) holds the live model weights, the optimizer and scheduler state
dicts, the cross-batch memory of every rank, the position (step, epoch, step in
epoch) and the early-stopping bookkeeping, plus the config that wrote it. No
sampler or RNG state is needed: batch order is a function of (seed, epoch) and
the loop reseeds its RNGs from (seed, step, micro-step, rank) at every step.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection

from reid_core.errors import CheckpointError, TrainingError
from reid_core.train.generations import has_state, load_newest_state, save_state_generation

log = logging.getLogger(__name__)

STATE_NAME = "state"
STATE_VERSION = 1
# Options that change neither the trajectory nor its meaning: they may differ on resume.
RESUMABLE_CHANGES = frozenset({"epochs", "max_steps", "val_every", "val_max_patients", "early_stop_patience",
                               "log_every", "num_workers", "device", "init_weights"})


@dataclass
class Progress:
    """Where a run stands: position, early-stopping bookkeeping, and totals for the report."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_metric: float = -math.inf
    best_step: int = -1
    best_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    bad_validations: int = 0
    last_val_step: int = -1
    stopped_early: bool = False
    elapsed_s: float = 0.0
    train_time_s: float = 0.0
    images_seen: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Progress":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def resume_dir(embedder_dir: Path) -> Path:
    return Path(embedder_dir) / "resume"


def has_resume_state(embedder_dir: Path) -> bool:
    return has_state(resume_dir(embedder_dir), STATE_NAME)


def save_resume(embedder_dir: Path, *, model_state: dict, optimizer: dict, scheduler: dict,
                objective_states: list[Any], progress: Progress, config: dict[str, Any],
                world_size: int) -> None:
    """Atomically write the resume state (call right after ``state_dict()``: tensors alias live params)."""
    save_state_generation(resume_dir(embedder_dir), STATE_NAME, {
        "version": STATE_VERSION, "model": dict(model_state), "optimizer": optimizer, "scheduler": scheduler,
        "objective": objective_states, "progress": progress.to_dict(), "config": config,
        "world_size": world_size})


def load_resume(embedder_dir: Path) -> dict[str, Any]:
    """The resume state; TrainingError (suggesting ``--no-resume``) when it is unreadable."""
    folder = resume_dir(embedder_dir)
    try:
        state = load_newest_state(folder, STATE_NAME)
    except CheckpointError as exc:
        raise TrainingError(f"cannot resume: {exc}. Start over with --no-resume (resume=False)") from None
    if state.get("version") != STATE_VERSION:
        raise TrainingError(f"{folder}: resume state version {state.get('version')!r} is not "
                            f"{STATE_VERSION}; start over with --no-resume")
    return state


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old → new`` for every option that differs (nested keys dotted)."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "backbone_kwargs":
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} → {b!r}")
    return out


def check_resumable(saved: dict[str, Any], current: dict[str, Any], where: Path,
                    resumable: Collection[str] = RESUMABLE_CHANGES, what: str = "run") -> None:
    """TrainingError if options that shape the trajectory changed since the state was written.

    Options named in ``resumable`` (budgets, logging, device) may change; the
    GAN loop passes its own set.
    """
    diffs = config_differences(saved, current)
    blocking = [d for d in diffs if d.split(":")[0] not in resumable]
    if blocking:
        raise TrainingError(f"the {what} in {where} was started with a different config ("
                            + "; ".join(blocking[:8]) + (" …" if len(blocking) > 8 else "")
                            + "). Resume with the original options, or start over with --no-resume")
    if diffs:
        log.info("resuming the %s with changed options: %s", what, "; ".join(diffs))

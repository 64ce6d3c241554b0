"""Resume state: everything needed to continue a run exactly where it stopped (:class:`ResumeFolder`).

For the embedder (``embedder/resume/``, :func:`embedder_resume`), one atomic pair
(``state.safetensors`` + ``state.json``; the previous generation stays as ``state_prev.*``,
see :mod:`reid_core.train.generations`) holds the live model weights, the optimizer and scheduler state
dicts, the cross-batch memory of every rank, the position (step, epoch, step in
epoch) and the early-stopping bookkeeping, plus the config that wrote it. No
sampler or RNG state is needed: batch order is a function of (seed, epoch) and
the loop reseeds its RNGs from (seed, step, micro-step, rank) at every step.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable

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


_COMMANDS = {"embedder": "cxr-reid train", "gan": "cxr-reid train-gan", "autoencoder": "cxr-reid train-cae"}


def state_kind(state: dict[str, Any]) -> str:
    """Which trainer wrote ``state``: its ``run_kind`` tag, or for states written before the tag, their shape."""
    if isinstance(state.get("run_kind"), str):
        return state["run_kind"]
    if state.get("objective") == "autoencoder":
        return "autoencoder"
    return "gan" if "engine" in state else "embedder" if "model" in state else "unknown"


@dataclass(frozen=True)
class ResumeFolder:
    """One trainer's resume state in ``folder`` (``state.*`` and the generation before, ``state_prev.*``).

    The one resume layer of every trainer: ``kind`` tags what it saves ("embedder", "gan",
    "autoencoder"), and :meth:`load` refuses another trainer's run, another version or an
    unreadable state with a :class:`TrainingError` that says what to do. :meth:`check_config`
    reads the saved options through ``config_cls`` (options added since take their defaults)
    and refuses changes outside ``resumable``. :meth:`start_over` clears a previous run.
    """

    folder: Path
    kind: str
    config_cls: Any
    resumable: frozenset[str]
    version: int = STATE_VERSION

    @property
    def what(self) -> str:
        return f"{self.kind} run"

    def exists(self) -> bool:
        return has_state(self.folder, STATE_NAME)

    def save(self, payload: dict[str, Any]) -> None:
        """Atomically write ``payload`` as the newest generation (call right after ``state_dict()``:
        its tensors alias live parameters)."""
        save_state_generation(self.folder, STATE_NAME, {**payload, "version": self.version, "run_kind": self.kind})

    def load(self) -> dict[str, Any]:
        """The newest readable state (see :mod:`reid_core.train.generations`); TrainingError otherwise."""
        try:
            state = load_newest_state(self.folder, STATE_NAME)
        except CheckpointError as exc:
            raise TrainingError(f"cannot resume the {self.what}: {exc}. Start over with --no-resume") from None
        kind = state_kind(state)
        if kind != self.kind:
            hint = f"continue it with {_COMMANDS[kind]}, or " if kind in _COMMANDS else ""
            article = "an" if kind[0] in "aeiou" else "a"
            raise TrainingError(f"{self.folder} holds {article} {kind} run, not the {self.what} asked for; {hint}"
                                "start over with --no-resume (replaces it)")
        if state.get("version") != self.version:
            raise TrainingError(f"{self.folder}: {self.what} state version {state.get('version')!r} is not "
                                f"{self.version}; start over with --no-resume")
        return state

    def read(self, resume: bool, current: dict[str, Any],
             also_resumable: Callable[[Any, dict[str, Any]], Collection[str]] | None = None) -> dict[str, Any] | None:
        """The state to continue from: when ``resume`` and one exists, :meth:`load` it and :meth:`check_config`
        it against ``current`` (the options of this session); None to start over. ``also_resumable(saved config,
        state)`` names further options that may differ for this state (e.g. loss terms not yet started)."""
        if not (resume and self.exists()):
            return None
        state = self.load()
        self.check_config(state["config"], current, also_resumable=None if also_resumable is None
                          else lambda saved: also_resumable(saved, state))
        return state

    def check_config(self, saved: dict[str, Any], current: dict[str, Any],
                     also_resumable: Callable[[Any], Collection[str]] | None = None) -> None:
        """TrainingError when options that shape the trajectory changed since ``saved`` was written
        (``also_resumable`` maps the saved options, read through ``config_cls``, to further changeable names)."""
        try:
            config = self.config_cls.from_dict(saved)
        except ValueError as exc:
            raise TrainingError(f"{self.folder} holds options this version does not know: {exc}") from None
        resumable = self.resumable | frozenset(also_resumable(config) if also_resumable else ())
        check_resumable(config.to_dict(), current, self.folder, resumable=resumable, what=self.what)

    def start_over(self, out: Path, outputs: Iterable[str]) -> None:
        """Remove the previous run's ``outputs`` (names in ``out``) and this folder."""
        old = [n for n in outputs if (out / n).exists()]
        if old or self.folder.exists():
            log.info("starting the %s over in %s: removing %s", self.what, out, old + [f"{self.folder.name}/"])
        shutil.rmtree(self.folder, ignore_errors=True)
        for name in old:
            (out / name).unlink(missing_ok=True)


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


def embedder_resume(embedder_dir: Path) -> ResumeFolder:
    """The embedder trainer's resume folder, ``embedder/resume/``."""
    from reid_core.train.config import TrainConfig

    return ResumeFolder(Path(embedder_dir) / "resume", "embedder", TrainConfig, RESUMABLE_CHANGES)

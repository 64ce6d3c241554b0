"""One training session of any trainer: :func:`run_session` opens the run folder, restores or resets, runs the loop.

Every trainer (embedder, GAN, autoencoder) is a :class:`SessionTrainer`: the step
loop's hooks (:class:`~reid_core.train.run_loop.LoopTrainer`) plus what a session
needs to set itself up. A session, in order:

1. makes the run folder (main process);
2. **restore or reset**: the resume state the trainer read when it was built
   (:meth:`~reid_core.train.state.ResumeFolder.read`, config checked) goes to
   :meth:`SessionTrainer.load_state`; without one, :meth:`SessionTrainer.reset`
   runs and the previous run's outputs and resume folder are deleted;
3. returns at once when the restored run is already finished (nothing written);
4. writes ``train_config.json`` (:meth:`SessionTrainer.run_config`, main process),
   starts ``train_log.jsonl`` (records past the restored step dropped) and runs
   :func:`~reid_core.train.run_loop.run_loop` on :meth:`SessionTrainer.schedule`
   between :meth:`SessionTrainer.before_loop` and :meth:`SessionTrainer.after_loop`.

The trainer keeps only its step, its state dict, its log line and its outputs.
"""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, TypeVar

from reid_core import artefact_names as names
from reid_core.train.distributed import DistContext, init_distributed
from reid_core.train.run_loop import LoopTrainer, Schedule, Unit, run_loop
from reid_core.train.runlog import JsonlLog, write_json_atomic
from reid_core.train.state import ResumeFolder

log = logging.getLogger(__name__)

T = TypeVar("T", bound="SessionTrainer")


class SessionTrainer(LoopTrainer):
    """A :class:`LoopTrainer` with a run folder.

    Its constructor sets ``out`` (the run folder), ``resume`` (its resume folder),
    ``state`` (the state read from it, None to start over; the session takes it),
    ``log_file`` (``train_log.jsonl``), ``ctx`` (this process in the job) and
    ``show_bar``; ``progress`` has ``step`` (optimiser steps taken). The class names
    ``desc`` (the progress bar's label) and ``outputs`` (the files in ``out`` a fresh
    start deletes).
    """

    out: Path
    resume: ResumeFolder
    state: dict[str, Any] | None
    log_file: JsonlLog
    ctx: DistContext
    show_bar: bool
    desc: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a saved resume ``state`` (its config already checked): weights, optimisers, ``progress``."""

    def reset(self) -> None:
        """Prepare a fresh start (every process, before the previous run's files go). Default: nothing."""

    @abc.abstractmethod
    def run_config(self) -> dict[str, Any]:
        """The resolved options of this run, written to ``train_config.json``."""

    @abc.abstractmethod
    def schedule(self, stop_after: float | None) -> Schedule:
        """When the loop logs, evaluates and saves; ``stop_after`` ends the session slice (budget unit)."""

    @abc.abstractmethod
    def where(self) -> str:
        """Where the run stands, for a log message (e.g. ``step 40 (epoch 2)``)."""

    def before_loop(self) -> None:
        """Just before the loop starts (e.g. wrap the model for DDP). Default: nothing."""

    def after_loop(self) -> None:
        """After the loop returned normally (e.g. unwrap DDP). Default: nothing."""


@dataclass(frozen=True)
class SessionOutcome:
    """How :func:`run_session` ended: ``reason`` is the loop's ``finished`` / ``stopped``, or ``done_before``
    when the run folder already held a finished run; ``resumed_from`` the restored step (None: fresh start)."""

    reason: Literal["finished", "stopped", "done_before"]
    resumed_from: int | None

    @property
    def finished(self) -> bool:
        return self.reason != "stopped"

    @property
    def ran(self) -> bool:
        return self.reason != "done_before"


def check_stop_after(name: str, value: float | None, unit: Unit) -> None:
    """ValueError unless ``value`` is None or a positive slice (at least one step, or some images)."""
    if value is None:
        return
    if unit == "step" and value < 1:
        raise ValueError(f"{name} must be None or >= 1, got {value}")
    if value <= 0:
        raise ValueError(f"{name} must be None or > 0, got {value}")


def restore_or_reset(trainer: SessionTrainer) -> int | None:
    """Load the state the trainer read (returns its step) or clear the previous run's files (returns None)."""
    ctx = trainer.ctx
    state, trainer.state = trainer.state, None  # the session owns it now; dropped once loaded
    if state is not None:
        trainer.load_state(state)
        saved_world = state.get("world_size", ctx.world_size)
        if saved_world != ctx.world_size:
            log.warning("resuming a %d-process %s on %d processes: batch order differs from an uninterrupted run",
                        saved_world, trainer.resume.what, ctx.world_size)
        if ctx.is_main:
            log.info("resuming the %s at %s from %s", trainer.resume.what, trainer.where(), trainer.resume.folder)
        return trainer.progress.step
    trainer.reset()
    if ctx.is_main:
        trainer.resume.start_over(trainer.out, trainer.outputs)
    ctx.barrier()
    return None


def run_session(trainer: SessionTrainer, stop_after: float | None = None) -> SessionOutcome:
    """Set up the session, train until the budget, the slice ``stop_after`` or a signal (see module docstring).

    Every process calls it; SIGINT/SIGTERM save and raise KeyboardInterrupt as :func:`run_loop` does.
    """
    ctx = trainer.ctx
    if ctx.is_main:
        trainer.out.mkdir(parents=True, exist_ok=True)
    resumed_from = restore_or_reset(trainer)
    if resumed_from is not None and trainer.finished():
        if ctx.is_main:
            log.info("%s already holds a finished %s (%s); raise its budget to continue or pass --no-resume to "
                     "start over", trainer.out, trainer.resume.what, trainer.where())
        return SessionOutcome("done_before", resumed_from)
    if ctx.is_main:
        write_json_atomic(trainer.out / names.RUN_CONFIG, trainer.run_config())
    trainer.log_file.start(resumed_from)
    trainer.before_loop()
    reason = run_loop(trainer, trainer.schedule(stop_after), desc=trainer.desc, show_bar=trainer.show_bar,
                      agree=ctx.any_flag)
    trainer.after_loop()
    return SessionOutcome(reason, resumed_from)  # type: ignore[arg-type]  # run_loop returns finished/stopped


def run_in_job(device: str, build: Callable[[DistContext], T], stop_after: float | None) -> tuple[T, SessionOutcome]:
    """``build`` the trainer on this process's :class:`DistContext` and :func:`run_session` it; under ``torchrun``
    the process group is set up first and torn down after (every process calls this)."""
    with init_distributed(device) as ctx:
        trainer = build(ctx)
        return trainer, run_session(trainer, stop_after)

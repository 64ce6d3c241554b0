"""The one step loop of every trainer: :func:`run_loop` drives a :class:`LoopTrainer` through a :class:`Schedule`.

A trainer keeps only its step and its outputs; the loop does the rest. Each
iteration reads a batch from ``trainer.batches()`` (timed as data wait), calls
``trainer.step(batch)`` (which advances ``trainer.position()``: optimiser steps,
or real images shown), adds the step's time to ``progress.train_time_s`` and
``progress.elapsed_s`` and its stats to a :class:`StatsWindow`; then, in order:

1. **log** (``trainer.log(window stats)``, which writes the record and returns the
   progress bar's postfix) when the position crossed a multiple of ``log_every``
   (the device is synchronised first, so the logged throughput is true), and at
   the end of the run, of the session slice, or on a stop request;
2. **evaluate** (``trainer.evaluate()``) when it crossed ``evaluate_every`` and at
   the end of the budget; evaluation may end the run (early stop: ``finished()``);
3. **save** (``trainer.save()``) when it crossed ``save_every``, when the run is
   finished, at the end of the session slice (``stop_after``) and on SIGINT/SIGTERM.

Evaluating and saving count in ``elapsed_s`` but not in ``train_time_s``. After a
stop request the loop raises KeyboardInterrupt (the state saved; a second SIGINT
aborts at once, see :mod:`reid_core.train.signals`); it returns ``"stopped"`` at
the end of a slice and ``"finished"`` once ``trainer.finished()``.
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Mapping

import torch
from tqdm.auto import tqdm

from reid_core.device import synchronize
from reid_core.train.signals import StopRequest
from reid_core.train.window import StatsWindow

Unit = Literal["step", "kimg"]


def crossed(before: int, after: int, every: int) -> bool:
    """Whether the position moving from ``before`` to ``after`` crossed a multiple of ``every``."""
    return after // every > before // every


def _images(kimg: float) -> int:
    return max(1, int(round(kimg * 1000)))


@dataclass(frozen=True)
class Schedule:
    """When :func:`run_loop`'s hooks fire, counted in the trainer's position unit: optimiser steps
    (``unit="step"``) or real images shown (``unit="kimg"``: the bar shows thousands).

    ``total``: the budget; ``stop_after``: end this session after that much more (None: run to the
    budget); ``evaluate_every`` None: the trainer does not evaluate.
    """

    unit: Unit
    total: int
    log_every: int
    save_every: int
    evaluate_every: int | None = None
    stop_after: float | None = None

    def __post_init__(self) -> None:
        for name in ("log_every", "save_every", "evaluate_every"):
            every = getattr(self, name)
            if every is not None and every < 1:
                raise ValueError(f"{name} must be >= 1, got {every}")

    @classmethod
    def in_kimg(cls, total_kimg: float, log_kimg: float, save_kimg: float,
                stop_after_kimg: float | None = None) -> "Schedule":
        """A budget of real images given in thousands (each interval at least one image)."""
        return cls("kimg", int(round(total_kimg * 1000)), _images(log_kimg), _images(save_kimg),
                   stop_after=None if stop_after_kimg is None else stop_after_kimg * 1000)

    def shown(self, position: int) -> float:
        """``position`` as the progress bar counts it."""
        return position / 1000.0 if self.unit == "kimg" else position


class LoopTrainer(abc.ABC):
    """What :func:`run_loop` drives: one trainer's step and outputs.

    ``progress`` has ``elapsed_s`` and ``train_time_s`` (the loop adds to both),
    ``images_per_step`` counts the images one step shows (all processes) and
    ``device`` is where the step runs.
    """

    progress: Any
    images_per_step: int
    device: torch.device

    @abc.abstractmethod
    def position(self) -> int:
        """Where the run stands, in its schedule's unit (steps taken or images shown)."""

    @abc.abstractmethod
    def finished(self) -> bool:
        """Whether the run is over: its budget reached (or, for a trainer that evaluates, stopped early)."""

    @abc.abstractmethod
    def batches(self) -> Iterator[Any]:
        """The batches from the current position on (the loop closes the iterator when it ends)."""

    @abc.abstractmethod
    def step(self, batch: Any) -> Mapping[str, Any]:
        """One optimisation step on ``batch``; advances :meth:`position`; returns scalar stats to average."""

    @abc.abstractmethod
    def log(self, stats: dict[str, float]) -> Mapping[str, str]:
        """Write one log record from the window's ``stats``; return the progress bar's postfix."""

    @abc.abstractmethod
    def save(self) -> None:
        """Write the resume state and the outputs (every process calls it)."""

    def evaluate(self) -> None:
        """Score the model (every process calls it); may make :meth:`finished` true. Default: nothing."""


def progress_bar(schedule: Schedule, position: int, desc: str, enabled: bool) -> tqdm:
    """The bar of a run at ``position``: steps, or kimg with three decimals."""
    if schedule.unit == "step":
        return tqdm(total=schedule.total, initial=position, disable=not enabled, unit="step", desc=desc,
                    dynamic_ncols=True)
    return tqdm(total=schedule.shown(schedule.total), initial=schedule.shown(position), disable=not enabled,
                desc=desc, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.3f}/{total:.3f} kimg [{elapsed}<{remaining}"
                           "{postfix}]")


def run_loop(trainer: LoopTrainer, schedule: Schedule, *, desc: str, show_bar: bool = True,
             agree: Callable[[bool], bool] = bool) -> str:
    """Train until ``trainer.finished()``, the slice ``schedule.stop_after`` or a signal (see module docstring).

    ``agree`` turns this process's stop request into the decision of all processes
    (``DistContext.any_flag`` under torchrun). Returns ``"finished"`` or ``"stopped"``.
    """
    p = trainer.progress
    start = trainer.position()
    window = StatsWindow()
    bar = progress_bar(schedule, start, desc, show_bar)
    batches = trainer.batches()
    try:
        with StopRequest().installed() as stopper:
            while not trainer.finished():
                t0 = time.perf_counter()
                batch = next(batches)
                t1 = time.perf_counter()
                before = trainer.position()
                window.add(trainer.step(batch))
                after = trainer.position()
                log_due = crossed(before, after, schedule.log_every)
                if log_due:
                    synchronize(trainer.device)
                dt = time.perf_counter() - t0
                p.train_time_s, p.elapsed_s = p.train_time_s + dt, p.elapsed_s + dt
                window.add_time(dt, trainer.images_per_step, wait_s=t1 - t0)
                bar.update(schedule.shown(after - before))
                slice_done = schedule.stop_after is not None and after - start >= schedule.stop_after
                stop = agree(stopper.requested)
                if log_due or trainer.finished() or slice_done or stop:
                    bar.set_postfix(trainer.log(window.flush()))
                t2 = time.perf_counter()
                every = schedule.evaluate_every
                if every is not None and (crossed(before, after, every) or trainer.finished()):
                    trainer.evaluate()
                if crossed(before, after, schedule.save_every) or trainer.finished() or slice_done or stop:
                    trainer.save()
                p.elapsed_s += time.perf_counter() - t2
                if stop:
                    raise KeyboardInterrupt
                if slice_done and not trainer.finished():
                    return "stopped"
            return "finished"
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        bar.close()

"""What the two generator trainers add to :mod:`reid_core.train.run_loop`: a budget counted in real images.

:class:`KimgTrainer` is the :class:`~reid_core.train.run_loop.LoopTrainer` of
``gan.train``'s adversarial session and ``gan.cae.train``'s autoencoder session:
its position is ``progress.cur_nimg`` (:class:`~gan.resume.GanProgress`), its
budget ``cfg.kimg``; it logs a tick every ``tick_kimg`` and saves every
``snapshot_kimg`` (and at the end, at ``stop_after_kimg`` and on a stop request).
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Mapping

from gan.resume import GanProgress
from reid_core.train.run_loop import LoopTrainer, Schedule, run_loop


class KimgTrainer(LoopTrainer):
    """A trainer whose ``cfg`` has ``batch`` (images per step), ``kimg``, ``tick_kimg`` and ``snapshot_kimg``."""

    progress: GanProgress
    cfg: Any

    @property
    def images_per_step(self) -> int:  # type: ignore[override]
        return self.cfg.batch

    @property
    def total_nimg(self) -> int:
        return int(round(self.cfg.kimg * 1000))

    def position(self) -> int:
        return self.progress.cur_nimg

    def finished(self) -> bool:
        return self.progress.cur_nimg >= self.total_nimg

    @abc.abstractmethod
    def train_step(self, images: Any, positions: Any) -> Mapping[str, Any]:
        """One step on a batch of stored images and their positions in the data (advances ``progress``)."""

    def step(self, batch: tuple[Any, Any]) -> Mapping[str, Any]:
        return self.train_step(*batch)

    def tick_record(self, stats: dict[str, float], **extra: float) -> dict[str, Any]:
        """The ``tick`` line of ``train_log.jsonl``: position, the window's ``stats``, ``extra``, elapsed time."""
        p = self.progress
        return {"event": "tick", "step": p.step, "kimg": round(p.kimg, 6), **stats, **extra,
                "elapsed_s": round(p.elapsed_s, 3)}

    def run_kimg(self, stop_after_kimg: float | None, desc: str, show_bar: bool,
                 agree: Callable[[bool], bool] = bool) -> str:
        """Train until the budget, ``stop_after_kimg`` or a signal; returns ``finished`` or ``stopped``."""
        cfg = self.cfg
        schedule = Schedule.in_kimg(cfg.kimg, cfg.tick_kimg, cfg.snapshot_kimg, stop_after_kimg)
        return run_loop(self, schedule, desc=desc, show_bar=show_bar, agree=agree)

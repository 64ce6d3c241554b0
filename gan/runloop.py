"""What the two generator trainers add to the run layer (:mod:`reid_core.train.session`): a budget in real images.

:class:`KimgTrainer` is the :class:`~reid_core.train.session.SessionTrainer` of
``gan.train``'s adversarial session and ``gan.cae.train``'s autoencoder session:
its position is ``progress.cur_nimg`` (:class:`~gan.resume.GanProgress`), its
budget ``cfg.kimg``; it logs a tick every ``tick_kimg`` and saves every
``snapshot_kimg`` (and at the end, at ``stop_after_kimg`` and on a stop request).
"""
from __future__ import annotations

import abc
from typing import Any, Mapping

from gan.resume import GanProgress
from reid_core.train.run_loop import Schedule
from reid_core.train.session import SessionTrainer


class KimgTrainer(SessionTrainer):
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

    def schedule(self, stop_after: float | None) -> Schedule:
        """A tick every ``tick_kimg``, a snapshot every ``snapshot_kimg``; ``stop_after`` in kimg."""
        cfg = self.cfg
        return Schedule.in_kimg(cfg.kimg, cfg.tick_kimg, cfg.snapshot_kimg, stop_after)

    def where(self) -> str:
        return f"step {self.progress.step} ({self.progress.kimg:.3f} kimg)"

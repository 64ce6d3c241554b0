"""The loop both generator trainers share: budgets in kimg, ticks, snapshots, time slices and signals.

:func:`run_kimg_loop` drives a :class:`KimgSession` (``gan.train``'s adversarial
session, ``gan.cae.train``'s autoencoder session): each step reads a batch from
the stream and calls ``train_step``, which advances the session's
:class:`~gan.resume.GanProgress`; the loop times it, logs a tick every
``tick_kimg``, saves every ``snapshot_kimg``, and at the end of the budget, of
``stop_after_kimg`` or on a stop request (which then raises KeyboardInterrupt
after saving).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Protocol

from tqdm.auto import tqdm

from gan.resume import GanProgress
from reid_core.train.window import StatsWindow, crossed


class KimgSession(Protocol):
    progress: GanProgress
    cfg: Any  # has batch, kimg, tick_kimg, snapshot_kimg

    def train_step(self, images: Any, positions: Any) -> dict[str, Any]: ...

    def finished(self) -> bool: ...

    def log_tick(self, window: StatsWindow, bar: tqdm) -> None: ...

    def save(self) -> None: ...

    def synchronize(self) -> None: ...


def run_kimg_loop(session: KimgSession, stream: Iterator, stop_after_kimg: float | None,
                  interrupted: Callable[[], bool], bar: tqdm) -> str:
    """Train until the budget, ``stop_after_kimg`` or ``interrupted()``; returns ``finished`` or ``stopped``."""
    p, cfg = session.progress, session.cfg
    session_start = p.cur_nimg
    window = StatsWindow()
    while not session.finished():
        t0 = time.perf_counter()
        images, positions = next(stream)
        before = p.cur_nimg
        window.add(session.train_step(images, positions))
        tick = crossed(before, p.cur_nimg, cfg.tick_kimg)
        if tick:
            session.synchronize()  # a true time at each tick (device steps run asynchronously between)
        dt = time.perf_counter() - t0
        p.train_time_s, p.elapsed_s = p.train_time_s + dt, p.elapsed_s + dt
        window.add_time(dt, cfg.batch)
        bar.update(cfg.batch / 1000.0)
        session_done = stop_after_kimg is not None and p.cur_nimg - session_start >= stop_after_kimg * 1000
        stop = interrupted()
        if tick or session.finished() or session_done or stop:
            session.log_tick(window, bar)
        t1 = time.perf_counter()
        if crossed(before, p.cur_nimg, cfg.snapshot_kimg) or session.finished() or session_done or stop:
            session.save()
        p.elapsed_s += time.perf_counter() - t1
        if stop:
            raise KeyboardInterrupt
        if session_done and not session.finished():
            return "stopped"
    return "finished"


def kimg_bar(cfg: Any, progress: GanProgress, desc: str, enabled: bool) -> tqdm:
    """The kimg progress bar both trainers show."""
    return tqdm(total=cfg.kimg, initial=progress.kimg, disable=not enabled, desc=desc, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.3f}/{total:.3f} kimg [{elapsed}<{remaining}"
                           "{postfix}]")

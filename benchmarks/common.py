"""Helpers shared by the benchmark cases: interleaved timing and a prepared phantom workspace."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from reid_core.workspace import Workspace


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall seconds of each callable, run in turn ``repeats`` times (A B A B …).

    Interleaving puts the two sides of a comparison under the same background
    load (this machine is shared), so their ratio is fairer than either figure.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def prepared_phantom(root: Path, patients: int, size: int, workers: int = 2) -> Workspace:
    """A workspace with the phantom's manifest and image store at ``size`` px (``cxr-reid prepare --dataset phantom``)."""
    from reid_core.prepare import prepare_workspace

    return prepare_workspace(root, "phantom", size=size, workers=workers, progress=False, patients=patients).workspace


def ratio(a: float, b: float) -> float:
    """``a / b`` rounded to 3 significant decimals (inf when ``b`` is 0)."""
    return round(a / b, 3) if b > 0 else float("inf")

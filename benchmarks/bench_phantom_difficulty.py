"""Benchmark: how hard each phantom difficulty is for the pixel baseline (issue #18 points 1 and 5).

Run ``python benchmarks/bench_phantom_difficulty.py`` (``--quick`` for a smoke run).
Renders every film of the same patients at each difficulty, quantised to 8 bits
as ``cxr-reid prepare`` stores them, and scores the project's no-learning
baseline (:func:`reid_core.metrics.pixel_baseline_embeddings`: pixels 32×32 →
standardise → PCA(50) → nearest neighbour) with the evaluation's leave-one-out
retrieval metrics. Goal: P@1 ≤ 0.05 on the hard phantom (200 patients, 128 px).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np

from reid_core.data.phantom import DIFFICULTIES, PhantomGenerator
from reid_core.data.phantom.export import to_uint8
from reid_core.metrics import pixel_baseline_embeddings, retrieval_metrics

log = logging.getLogger("bench_phantom_difficulty")
SEED = 0
GOAL_HARD_P1 = 0.05


def render_films(difficulty: str, n_patients: int, size: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(images N×size×size uint8, patient labels)`` of every film of patients ``0..n_patients-1``."""
    gen = PhantomGenerator(seed=seed, size=size, difficulty=difficulty)  # type: ignore[arg-type]
    images, labels = [], []
    for i in range(n_patients):
        for j in range(len(gen.studies(i))):
            images.append(to_uint8(gen.render(i, j)))
            labels.append(i)
    return np.stack(images), np.asarray(labels)


def pixel_baseline(difficulty: str, n_patients: int, size: int, seed: int = SEED) -> dict:
    """The pixel baseline's retrieval metrics on one difficulty, with its n and render time."""
    t0 = time.perf_counter()
    images, labels = render_films(difficulty, n_patients, size, seed)
    render_s = time.perf_counter() - t0
    metrics = retrieval_metrics(pixel_baseline_embeddings(images), labels)
    return {"patients": n_patients, "films": int(len(labels)), "size": size, "seed": seed,
            "render_s": round(render_s, 1), **{k: (round(v, 4) if isinstance(v, float) else v)
                                               for k, v in metrics.items()}}


def run(quick: bool = False) -> dict:
    """Pixel-baseline P@1 (and R-precision, MAP@R) of every difficulty on the same patients."""
    n_patients, size = (30, 64) if quick else (200, 128)
    out: dict = {"method": "pixel 32x32 -> standardise -> PCA(50) -> nearest neighbour",
                 "goal_hard_p_at_1": GOAL_HARD_P1}
    for difficulty in DIFFICULTIES:
        out[difficulty] = pixel_baseline(difficulty, n_patients, size)
    if not quick:  # the goal is stated at 200 patients; 30 patients leave chance itself near it
        out["hard_meets_goal"] = bool(out["hard"]["precision_at_1"] <= GOAL_HARD_P1)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    log.info(json.dumps(run(args.quick), indent=2))

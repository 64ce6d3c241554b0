"""Benchmark: phantom images per second at 256 px (1 process, 2 worker processes, and full NIH export).

Run ``python benchmarks/bench_phantom.py`` (add ``--quick`` for a short run).
Counts whole patients (anatomy layers built once per patient, then every study
rendered from them), so the numbers include the per-patient cost.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

from reid_core.data.phantom import PhantomGenerator, write_phantom_dataset

log = logging.getLogger("bench_phantom")
SIZE = 256
SEED = 1234


def _render_patients(ids: list[int]) -> int:
    gen = PhantomGenerator(seed=SEED, size=SIZE)
    n = 0
    for i in ids:
        for j in range(len(gen.studies(i))):
            gen.render(i, j)
            n += 1
    return n


def _parallel(n_patients: int, workers: int) -> tuple[int, float]:
    chunks = [list(range(k, n_patients, workers * 4)) for k in range(workers * 4)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
        n = sum(ex.map(_render_patients, chunks))
    return n, time.perf_counter() - t0


def run(quick: bool = False) -> dict:
    """Throughput numbers (images/s at 256 px) as a dict."""
    n_patients = 24 if quick else 150
    _render_patients([10_000])  # warm-up (imports, caches)
    t0 = time.perf_counter()
    n1 = _render_patients(list(range(n_patients)))
    t1 = time.perf_counter() - t0
    n2, t2 = _parallel(n_patients, 2)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_phantom_dataset(tmp, n_patients, seed=SEED, size=SIZE, fmt="nih", workers=2, progress=False)
        t3 = time.perf_counter() - t0
    return {
        "size": SIZE, "patients": n_patients, "images": n1,
        "images_per_s_1_process": round(n1 / t1, 1),
        "images_per_s_2_workers": round(n2 / t2, 1),
        "nih_export_images_per_s_2_workers": round(n1 / t3, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    log.info(json.dumps(run(args.quick), indent=2))

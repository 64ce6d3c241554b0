"""Retrieval: ``reid_core.retrieval.Index`` (FAISS) exact search vs scikit-learn brute-force kNN, and IVF/HNSW.

Random unit-normalised 64-d float32 vectors: the worst case for approximate
search (isotropic, intrinsic dimension 64, so every cell/graph neighbourhood is
as far as any other). Trained identity embeddings have far lower intrinsic
dimension; for contrast the IVF/HNSW sweeps also run on ``lowdim`` vectors (unit
normalised ``A z + noise``, ``z`` 16-d). Per gallery size it reports, side by
side in one process:

* single-query latency (median over ``n_single`` held-out queries, the three
  searches timed in turn per query): ``Index.search``, raw FAISS ``IndexFlatL2``
  (so the wrapper's own cost shows) and ``NearestNeighbors(algorithm="brute")``;
* batched throughput (queries/s, median of interleaved repeats) of both;
* for IVF and HNSW (where the size is in ``ann_sizes``): recall@10 against the
  exact top-10 and the batched speed-up over exact, per ``nprobe``/``ef_search``,
  and the fastest setting with recall ≥ 0.95, whose single-query latency is
  also timed against exact (one query at a time, as the retrieval page asks).

Goals (issue 7): exact FAISS ≥ 5× scikit-learn and ≤ 50 ms/query at 1M on 2
cores; an approximate index with recall@10 ≥ 0.95 at ≥ 20× over exact.
"""
from __future__ import annotations

import gc
import statistics
import time

import faiss
import numpy as np
from sklearn.neighbors import NearestNeighbors

from benchmarks.common import interleaved_medians, ratio
from reid_core._compat.faiss_tuning import FAISS_DEFAULT, picks_blas, threshold_unit
from reid_core.retrieval import Index, faiss_search

DIM, K = 64, 10
RECALL_GOAL, ANN_SPEEDUP_GOAL = 0.95, 20.0
IVF_NPROBES = (4, 8, 16, 32, 64, 128, 256, 512)
HNSW_EFS = (16, 32, 64, 128, 256, 512)


LOWDIM, LOWDIM_NOISE = 16, 0.05
SINGLE_QUERIES = 50  # single-query latency at the best ANN setting: median over this many


def unit_vectors(n: int, seed: int, kind: str = "random", chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors (float32), generated in chunks so no float64 copy of the gallery exists.

    ``random``: isotropic Gaussian directions. ``lowdim``: ``A z + noise`` with a
    fixed random 64×16 ``A`` (seed 0) and ``z`` ~ N(0, I₁₆), then normalised.
    """
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).standard_normal((LOWDIM, DIM), dtype=np.float32) / np.sqrt(LOWDIM)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        if kind == "lowdim":
            block = rng.standard_normal((m, LOWDIM), dtype=np.float32) @ basis
            block += LOWDIM_NOISE * rng.standard_normal((m, DIM), dtype=np.float32)
        else:
            block = rng.standard_normal((m, DIM), dtype=np.float32)
        out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _single_query_ms(fns: dict, queries: np.ndarray) -> dict[str, float]:
    """Median ms per single query of each ``fn(q)``, the functions timed in turn for every query."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn(queries[:1])
    for i in range(len(queries)):
        q = queries[i:i + 1]
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(q)
            times[name].append(time.perf_counter() - t0)
    return {name: round(1000 * statistics.median(ts), 3) for name, ts in times.items()}


def _recall(approx_ids: np.ndarray, truth_ids: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(t)) / K for a, t in zip(approx_ids, truth_ids)]))


def exact_vs_sklearn(flat: Index, x: np.ndarray, single: np.ndarray, batch: np.ndarray, repeats: int) -> dict:
    """Single-query latency and batched throughput of Index (flat), raw FAISS and scikit-learn brute force."""
    nn = NearestNeighbors(n_neighbors=K, algorithm="brute").fit(x)
    lat = _single_query_ms({
        "index": lambda q: flat.search(q, K),
        "faiss_raw": lambda q: faiss_search(flat.faiss_index, q, K),
        "sklearn": lambda q: nn.kneighbors(q, K),
    }, single)
    t = interleaved_medians({"index": lambda: flat.search(batch, K), "sklearn": lambda: nn.kneighbors(batch, K),
                             "faiss_own_rule": lambda: _search_with_threshold(flat.faiss_index, batch, FAISS_DEFAULT)},
                            repeats)
    _, faiss_rows = faiss_search(flat.faiss_index, batch, K)
    _, sk_rows = nn.kneighbors(batch, K)
    return {
        "single_ms_index": lat["index"], "single_ms_faiss_raw": lat["faiss_raw"], "single_ms_sklearn": lat["sklearn"],
        "single_speedup_vs_sklearn": ratio(lat["sklearn"], lat["index"]),
        "batch_qps_index": round(len(batch) / t["index"], 1), "batch_qps_sklearn": round(len(batch) / t["sklearn"], 1),
        "batch_speedup_vs_sklearn": ratio(t["sklearn"], t["index"]),
        "batch_qps_faiss_own_rule": round(len(batch) / t["faiss_own_rule"], 1),
        "batch_speedup_vs_faiss_own_rule": ratio(t["faiss_own_rule"], t["index"]),
        "top10_agreement_vs_sklearn": round(_recall(faiss_rows, sk_rows), 4),
    }


def _search_with_threshold(index: faiss.Index, x: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw FAISS search with ``distance_compute_blas_threshold`` = ``threshold`` (``faiss_search`` resets it)."""
    faiss.cvar.distance_compute_blas_threshold = threshold
    return getattr(index, "search_numpy", index.search)(x, K)


def blas_crossover(n: int, dims: tuple[int, ...], query_counts: tuple[int, ...], repeats: int) -> dict:
    """Flat search time by FAISS's SIMD scan vs by BLAS, per dimension and query count, on this thread count.

    The measurement behind ``reid_core._compat.faiss_tuning``: ``scan_over_blas``
    > 1 where BLAS is faster; ``rule_picks`` is what ``faiss_search`` uses there.
    """
    never, always = 2**31 - 1, 0
    rows = []
    for dim in dims:
        x = np.random.default_rng(dim).standard_normal((n, dim), dtype=np.float32)
        index = faiss.IndexFlatL2(dim)
        index.add(x)
        for nq in query_counts:
            q = np.random.default_rng(nq).standard_normal((nq, dim), dtype=np.float32)
            t = interleaved_medians({"scan": lambda i=index, q=q: _search_with_threshold(i, q, never),
                                     "blas": lambda i=index, q=q: _search_with_threshold(i, q, always)}, repeats)
            rows.append({"dim": dim, "queries": nq, "scan_ms": round(1000 * t["scan"], 3),
                         "blas_ms": round(1000 * t["blas"], 3), "scan_over_blas": ratio(t["scan"], t["blas"]),
                         "rule_picks": "blas" if picks_blas(nq, dim) else "scan"})
    # how much slower the picked path is than the faster one, worst case
    regret = [r["scan_over_blas"] if r["rule_picks"] == "scan" else 1 / r["scan_over_blas"] for r in rows]
    return {"n": n, "threads": faiss.omp_get_max_threads(), "faiss_threshold_unit": threshold_unit(),
            "faiss_own_default": FAISS_DEFAULT, "rows": rows,
            "worst_slowdown_of_rule": round(max(1.0, *regret), 3)}


def _use_setting(index: Index, kind: str, value: int) -> None:
    """Search ``index`` with ``nprobe`` (IVF) or ``ef_search`` (HNSW) = ``value``."""
    if kind == "ivf":
        index.nprobe = value
    else:
        index.ef_search = value


def ann_sweep(kind: str, x: np.ndarray, ids: list[str], flat: Index, batch: np.ndarray, truth: np.ndarray,
              repeats: int) -> dict:
    """Build ``kind`` (defaults of ``Index``), then recall@10 and batched speed-up over exact per search setting."""
    t0 = time.perf_counter()
    index = Index.build(x, ids, kind=kind)
    out: dict = {"build_s": round(time.perf_counter() - t0, 1)}
    if kind == "ivf":
        out.update(nlist=index.nlist, default_nprobe=index.nprobe)
        settings = sorted({p for p in IVF_NPROBES if p <= index.nlist} | {index.nprobe})
    else:
        out.update(hnsw_m=index.hnsw_m, default_ef_search=index.ef_search)
        settings = list(HNSW_EFS)
    rows = []
    for s in settings:
        _use_setting(index, kind, s)
        _, approx = index.search(batch, K)
        t = interleaved_medians({"exact": lambda: flat.search(batch, K), "ann": lambda: index.search(batch, K)},
                                repeats)
        rows.append({"nprobe" if kind == "ivf" else "ef_search": s, "recall_at_10": round(_recall(approx, truth), 4),
                     "qps": round(len(batch) / t["ann"], 1), "speedup_vs_exact": ratio(t["exact"], t["ann"])})
    out["sweep"] = rows
    good = [r for r in rows if r["recall_at_10"] >= RECALL_GOAL]
    best = out["best_at_recall_0.95"] = max(good, key=lambda r: r["speedup_vs_exact"]) if good else None
    if best:  # one query at a time (the app's retrieval page), at the best batched setting
        _use_setting(index, kind, best["nprobe" if kind == "ivf" else "ef_search"])
        lat = _single_query_ms({"exact": lambda q: flat.search(q, K), "ann": lambda q: index.search(q, K)},
                               batch[:SINGLE_QUERIES])
        best["single_ms_exact"], best["single_ms_ann"] = lat["exact"], lat["ann"]
        best["single_speedup_vs_exact"] = ratio(lat["exact"], lat["ann"])
    return out


def measure_size(n: int, n_single: int, n_batch: int, repeats: int, ann: bool) -> dict:
    """Exact search (and, if ``ann``, the IVF/HNSW sweeps) on ``n`` random vectors; vectors freed before returning."""
    x = unit_vectors(n, seed=n)
    queries = unit_vectors(n_single + n_batch, seed=1)
    single, batch = queries[:n_single], queries[n_single:]
    ids = [str(i) for i in range(n)]
    t0 = time.perf_counter()
    flat = Index.build(x, ids)
    out: dict = {"n": n, "flat_build_s": round(time.perf_counter() - t0, 2), "n_batch_queries": n_batch}
    out.update(exact_vs_sklearn(flat, x, single, batch, repeats))
    if ann:
        out.update(ann_sweeps(x, ids, flat, batch, repeats))
    del flat, x
    gc.collect()
    return out


def ann_sweeps(x: np.ndarray, ids: list[str], flat: Index, batch: np.ndarray, repeats: int) -> dict:
    """IVF and HNSW sweeps against the exact top-10 of ``flat``."""
    _, truth = flat.search(batch, K)
    return {kind: ann_sweep(kind, x, ids, flat, batch, truth, repeats) for kind in ("ivf", "hnsw")}


def lowdim_ann(n: int, n_batch: int, repeats: int) -> dict:
    """The IVF/HNSW sweeps on ``lowdim`` vectors (structure like trained embeddings have)."""
    x = unit_vectors(n, seed=n, kind="lowdim")
    batch = unit_vectors(n_batch, seed=1, kind="lowdim")
    ids = [str(i) for i in range(n)]
    flat = Index.build(x, ids)
    out = {"n": n, "intrinsic_dim": LOWDIM, "noise": LOWDIM_NOISE, **ann_sweeps(x, ids, flat, batch, repeats)}
    del flat, x
    gc.collect()
    return out


def run(quick: bool = False, sizes: tuple[int, ...] | None = None, ann_n: int | None = None) -> dict:
    """Exact search at every size; the ANN sweeps at ``ann_n`` (random and lowdim).

    Full run: 10k, 100k, 1M exact; ANN at 100k here (random and lowdim); the 1M
    lowdim sweep is its own case, ``bench_ann`` (its builds take minutes).
    ``quick``: 2,000 vectors, few queries, the sweeps too (to exercise them).
    """
    if quick:
        sizes, ann_n, n_single, n_batch, repeats = (2_000,), 2_000, 5, 50, 1
        crossover_n, crossover_counts = 2_000, (1, 32)
    else:
        sizes, ann_n = sizes or (10_000, 100_000, 1_000_000), ann_n or 100_000
        n_single, n_batch, repeats = 30, 500, 3
        crossover_n, crossover_counts = 100_000, (1, 2, 4, 8, 16, 32, 64, 256, 1024)
    out: dict = {"dim": DIM, "k": K, "faiss_threads": faiss.omp_get_max_threads(),
                 "goals": "exact >= 5x sklearn and <= 50 ms/query at 1M; ANN recall@10 >= 0.95 at >= 20x exact"}
    out["blas_crossover"] = blas_crossover(crossover_n, (16, DIM, 128), crossover_counts, repeats)
    for n in sizes:
        out[f"random_{n}"] = measure_size(n, n_single, n_batch, repeats, ann=n == ann_n)
    out[f"lowdim_{ann_n}"] = lowdim_ann(ann_n, n_batch, repeats)
    return out

"""FAISS exact search re-tuned for few threads: where BLAS takes over, and one thread for a lone query.

**The BLAS switch.**
FAISS computes exact (flat) L2/IP distances in one of two ways: a per-query
SIMD scan of the whole gallery, or one BLAS GEMM over blocks of queries and
gallery vectors. Up to FAISS 1.14 it used BLAS from 20 queries on
(``distance_compute_blas_threshold = 20``, compared with the query count). FAISS
1.15 changed the rule to ``n_queries × dim < 128000`` — tuned for many OpenMP
threads, where the scan parallelises over queries — so at 64-d a batch of up to
1,999 queries takes the scan. On 1–2 threads that is the slow choice: 500 queries
× 1M 64-d vectors took 5.2 s by the scan and 1.2 s by BLAS on this project's
2-core machine (FAISS upstream: issues 4925, PR 5109, which proposes a
thread-aware default of about 800 × threads).

Measured here (the crossover sweep of ``benchmarks/bench_retrieval.py``, 100k
gallery, d = 16/64/128): on one thread BLAS wins from 4–8 queries, on two from
8–16, and below that the scan is up to 7× faster (one 128-d query). So this
module makes FAISS use BLAS from ``QUERIES_PER_THREAD × threads`` queries on,
whatever the dimension; the sweep's worst case for that rule is 1.5× (four
16-d queries on one thread left on the scan):

* FAISS ≤ 1.14 (threshold in queries, default 20): the same value for every search;
* FAISS 1.15 (threshold in ``queries × dim``, default 128000): set per search
  from the index's dimension (:func:`prefer_blas_for`; a global FAISS reads at
  search time — concurrent searches of different dimensions can only make one
  take the slower path; both paths are exact, equal up to float32 rounding);
* any other default (a later FAISS with its own tuning): left alone.

**A lone query runs on one thread.** With fewer queries than OpenMP threads,
FAISS 1.15 splits the gallery scan across threads, and on the 2-core machine
that was 3.6× slower than one thread doing it all (one 64-d query × 1M: 35 ms
on two threads, 9.7 ms on one; 4 queries: 20 ms on two, 37 ms on one). So
:func:`threads_for` runs a search of fewer queries than threads on a single
thread. ``omp_set_num_threads`` sets the calling thread's OpenMP setting only,
so concurrent searches from other threads keep theirs.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import faiss

QUERIES_PER_THREAD = 8
_QUERY_COUNT_DEFAULT, _QUERY_TIMES_DIM_DEFAULT = 20, 128_000
FAISS_DEFAULT = int(faiss.cvar.distance_compute_blas_threshold)


def threshold_unit() -> str | None:
    """``"queries"``, ``"queries×dim"`` or ``None`` (unknown rule: left alone), from FAISS's default."""
    return {_QUERY_COUNT_DEFAULT: "queries", _QUERY_TIMES_DIM_DEFAULT: "queries×dim"}.get(FAISS_DEFAULT)


def blas_threshold(dim: int, threads: int | None = None) -> int | None:
    """The ``distance_compute_blas_threshold`` value that starts BLAS at ``QUERIES_PER_THREAD × threads`` queries."""
    threads = faiss.omp_get_max_threads() if threads is None else threads
    queries = QUERIES_PER_THREAD * max(1, int(threads))
    unit = threshold_unit()
    if unit == "queries":
        return queries
    if unit == "queries×dim":
        return queries * int(dim)
    return None


def picks_blas(n_queries: int, dim: int, threads: int | None = None) -> bool:
    """Whether FAISS, once :func:`prefer_blas_for` set it, searches ``n_queries`` ``dim``-d vectors by BLAS."""
    value = blas_threshold(dim, threads)
    if value is None:
        return False
    return n_queries >= value if threshold_unit() == "queries" else n_queries * dim >= value


def prefer_blas_for(dim: int) -> None:
    """Set FAISS's BLAS switch for searches of ``dim``-dimensional vectors on the current thread count."""
    value = blas_threshold(dim)
    if value is not None and faiss.cvar.distance_compute_blas_threshold != value:
        faiss.cvar.distance_compute_blas_threshold = value


@contextlib.contextmanager
def threads_for(n_queries: int) -> Iterator[int]:
    """Run the block on one OpenMP thread when ``n_queries`` < the thread count; yields the count in force."""
    threads = faiss.omp_get_max_threads()
    if threads <= 1 or n_queries >= threads:
        yield threads
        return
    faiss.omp_set_num_threads(1)
    try:
        yield 1
    finally:
        faiss.omp_set_num_threads(threads)

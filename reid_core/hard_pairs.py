"""Pairs a search produces, not only random ones: nearest other-patient films and rank-1 neighbours.

A verifier fitted and judged on random pairs (:func:`reid_core.verify.make_pairs`) meets easy negatives
only: two random patients lie far apart. In use it scores a query's nearest neighbours, the hardest
negatives there are. This module builds those pair sets:

* :func:`nearest_other_patient` — each image with its nearest film of *another* patient (a hard negative);
* :func:`nearest_neighbour` — each query image (one with another film of its patient) with its rank-1
  neighbour, whoever it is (what the retrieval page shows first);
* :func:`top_k_neighbours` — each image with each of its ``k`` nearest films (what the retrieval page and the
  explorer list, with a same-patient probability beside each);
* :func:`fit_pairs` — the pairs a verifier is fitted on: ``"random"`` (make_pairs, balanced) or
  ``"neighbours"`` (:func:`top_k_neighbours` with ``k = 10``, the pairs a search shows).

Why not fit on the hardest negatives alone: a set chosen by its outcome (all different patients) cannot be
calibrated by any function of the distance; the population a probability must be right on is the one
a user looks at, and that is a search's result list.

Pairs are ``(i, j)`` int64 row arrays with ``i != j`` (not ordered); a pair found from both ends is kept once.
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from reid_core.metrics import _flat_index, as_embedding_matrix, encode_labels, knn_excluding_self

PairKind = Literal["random", "neighbours"]
PAIR_KINDS: tuple[str, ...] = ("random", "neighbours")
NEIGHBOURS_K = 10  # the retrieval page's default result count


def _knn(x: np.ndarray, k: int) -> np.ndarray:
    """Row indices of each row's ``k`` nearest other rows (N×k, nearest first)."""
    rows = np.arange(len(x))
    out = np.empty((len(x), k), np.int64)
    for sl, _, nbr in knn_excluding_self(x, _flat_index(x), rows, k):
        out[sl] = nbr
    return out


def nearest_other_patient(embeddings: np.ndarray, labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """``(i, j)``: for every image ``i`` (in row order), ``j`` is its nearest image of another patient.

    Exact: among the ``m`` nearest neighbours, ``m`` = the largest patient's image count, at most ``m - 1``
    share the query's patient, so one of them is another patient's. Raises if there is only one patient.
    """
    x = as_embedding_matrix(embeddings)
    codes = encode_labels(labels, len(x))
    if codes.max() == 0:
        raise ValueError("nearest other-patient films need at least two patients")
    k = min(int(np.bincount(codes).max()), len(x) - 1)
    nbr = _knn(x, k)
    other = codes[nbr] != codes[:, None]
    first = other.argmax(axis=1)
    return np.arange(len(x), dtype=np.int64), nbr[np.arange(len(x)), first]


def nearest_neighbour(embeddings: np.ndarray, labels: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, same)``: every image ``i`` with another film of its patient, and its rank-1 neighbour ``j``."""
    x = as_embedding_matrix(embeddings)
    codes = encode_labels(labels, len(x))
    counts = np.bincount(codes)
    q = np.flatnonzero(counts[codes] > 1)
    if len(q) == 0 or len(x) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool)
    nbr = _knn(x, 1)[q, 0]
    return q.astype(np.int64), nbr, codes[q] == codes[nbr]


def top_k_neighbours(embeddings: np.ndarray, labels: Sequence, k: int = NEIGHBOURS_K
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, same)``: every image ``i`` with each of its ``min(k, N-1)`` nearest other images ``j``.

    Ordered pairs, rank order within each query (a pair of mutual neighbours appears twice, once per
    query, as it does in the two searches).
    """
    x = as_embedding_matrix(embeddings)
    codes = encode_labels(labels, len(x))
    k = min(int(k), len(x) - 1)
    if k < 1:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool)
    nbr = _knn(x, k)
    i = np.repeat(np.arange(len(x), dtype=np.int64), k)
    j = nbr.ravel()
    return i, j, codes[i] == codes[j]


def fit_pairs(embeddings: np.ndarray, labels: Sequence, rng: np.random.Generator, kind: PairKind = "neighbours",
              max_pairs: int = 1_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, same)`` to fit a verifier on; ``kind`` ``"random"`` or ``"neighbours"`` (module docstring)."""
    from reid_core.verify import make_pairs

    if kind not in PAIR_KINDS:
        raise ValueError(f"kind must be one of {PAIR_KINDS}, got {kind!r}")
    x = as_embedding_matrix(embeddings)
    codes = encode_labels(labels, len(x))
    if kind == "random":
        return make_pairs(codes, rng, 1, max_pairs)
    i, j, same = top_k_neighbours(x, codes)
    if len(i) > max_pairs:
        keep = np.sort(rng.choice(len(i), max_pairs, replace=False))
        i, j, same = i[keep], j[keep], same[keep]
    return i, j, same

"""Retrieval metrics of identity embeddings (model-free: an N×D matrix plus patient labels).

Protocol (Packhäuser et al. 2022, "Deep learning-based patient re-identification
is able to exploit the biometric nature of medical chest X-ray data"): every
image of a set is a query against **all other** images of the same set; the
query itself is never in its own result list.

Definitions (Musgrave et al. 2020, "A Metric Learning Reality Check", and
pytorch-metric-learning's ``AccuracyCalculator``, to which the tests compare us).
For a query image ``q`` of patient ``p`` let ``R_q = n_p - 1`` be the number of
*other* images of ``p`` (its positives) and ``rel_q(j)`` be 1 when the ``j``-th
nearest other image belongs to ``p``:

* ``precision_at_k`` = ``(1/k) Σ_{j≤k} rel_q(j)``, averaged over queries. A
  query with fewer than ``k`` positives cannot reach 1 (this is the textbook
  P@k, not "hit@k"); a gallery with fewer than ``k`` other images counts the
  missing ranks as misses. ``precision_at_1`` is the top-1 re-identification
  accuracy.
* ``r_precision`` = ``(1/R_q) Σ_{j≤R_q} rel_q(j)``.
* ``map_at_r`` (MAP@R) = ``(1/R_q) Σ_{j≤R_q} rel_q(j) · P_q(j)`` where
  ``P_q(j)`` is the precision at rank ``j``.

**Single-image patients** (``R_q = 0``) stay in the gallery as distractors — a
query can wrongly match them — but they are *not* queries: they have no
positive, so every metric above is undefined for them. Like PML's
``AccuracyCalculator`` ("lone query labels") they are left out of the averages;
``n_queries`` reports how many queries were averaged. With no query left at all
the metrics are NaN.

**Ties.** The kNN is FAISS exact L2 (``IndexFlatL2``) on float32. Within the
returned list, neighbours at an identical distance are ordered by their row in
the embedding matrix (smaller first), which makes results deterministic;
ties straddling the cut-off rank are resolved by FAISS (in practice also by
smaller row). Random continuous embeddings essentially never tie; exact
duplicates (identical images, collapsed embeddings) do, and then the score
depends on row order — a collapsed model shows up as near-chance scores either
way. The self-match is removed by row index, not by distance, so a duplicate
of the query at distance 0 still counts as a neighbour; if FAISS does not
return the query itself among its ``k+1`` hits (more than ``k`` exact
duplicates), the last hit is dropped instead, as PML does.

**Memory.** Queries are searched in chunks, so only ``chunk × k`` neighbour
indices exist at any time (``k`` = the largest needed rank, i.e. the largest
patient minus one, at least ``max(ks)``); a 100k × 100k distance matrix is never
materialised.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import faiss
import numpy as np
import pandas as pd

from reid_core.retrieval import faiss_search

_CHUNK_ELEMENTS = 1 << 21  # neighbour indices held per chunk (≈16 MiB of int64)


# ---------------------------------------------------------------------------
# input checks and the kNN
# ---------------------------------------------------------------------------
def as_embedding_matrix(embeddings: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """Return ``embeddings`` as a C-contiguous float32 N×D matrix, or raise ``ValueError``."""
    x = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a 2-D N×D array with D ≥ 1, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return x


def encode_labels(labels: Sequence, n: int) -> np.ndarray:
    """Map arbitrary patient labels (str/int) to dense int64 codes; check the length is ``n``."""
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) != n:
        raise ValueError(f"labels must be 1-D with one entry per embedding ({n}), got shape {lab.shape}")
    _, codes = np.unique(lab, return_inverse=True)
    return codes.astype(np.int64).ravel()


def _stable_tie_order(dist: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder each row by (distance, index) so equal distances come in index order."""
    order = np.lexsort((idx, dist), axis=-1)
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)


def knn_excluding_self(
    queries: np.ndarray,
    index: faiss.Index,
    self_rows: np.ndarray,
    k: int,
    chunk_size: int | None = None,
) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield ``(rows, sq_distances, neighbours)`` chunk by chunk, the query's own row removed.

    ``index`` holds the gallery (row ``g`` = FAISS id ``g``); ``self_rows[i]`` is
    the gallery row of ``queries[i]`` (-1 when the query is not in the gallery).
    Each chunk has ``k`` columns of squared L2 distances and gallery rows, ties
    in index order (see the module docstring). ``k`` must be ≤ gallery size - 1
    when queries are in the gallery.
    """
    n = len(queries)
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // (k + 1))
    for start in range(0, n, chunk_size):
        rows = slice(start, min(start + chunk_size, n))
        d, i = faiss_search(index, queries[rows], k + 1)
        d, i = _stable_tie_order(d, i)
        own = self_rows[rows]
        is_self = i == own[:, None]
        # A query missing from its own k+1 hits (> k exact duplicates): drop the last hit.
        missing = ~is_self.any(axis=1)
        is_self[missing, -1] = True
        keep = ~is_self
        yield rows, d[keep].reshape(-1, k), i[keep].reshape(-1, k)


def _flat_index(x: np.ndarray) -> faiss.IndexFlatL2:
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    return index


# ---------------------------------------------------------------------------
# retrieval metrics
# ---------------------------------------------------------------------------
def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(k) for k in ks)
    if not out or any(k < 1 for k in out) or len(set(out)) != len(out):
        raise ValueError(f"ks must be distinct positive integers, got {ks!r}")
    return out


def per_query_metrics(embeddings: np.ndarray, labels: Sequence, ks: Sequence[int] = (1, 5, 10)) -> pd.DataFrame:
    """Per-query retrieval scores (one row per image, in input order).

    Columns: ``n_positives`` (``R_q``), ``is_query`` (``R_q ≥ 1``),
    ``precision_at_{k}`` for each ``k``, ``r_precision``, ``average_precision_at_r``.
    Rows with ``is_query == False`` (single-image patients) hold NaN scores.
    :func:`retrieval_metrics` is the mean over query rows; per-query values are
    what a patient-level bootstrap (:func:`reid_core.bootstrap.bootstrap_mean_ci`)
    resamples.
    """
    ks = _check_ks(ks)
    x = as_embedding_matrix(embeddings)
    n = len(x)
    if n < 2:
        raise ValueError(f"need at least 2 embeddings to retrieve against each other, got {n}")
    codes = encode_labels(labels, n)
    counts = np.bincount(codes)
    n_pos = counts[codes] - 1
    is_query = n_pos > 0
    k = min(max(max(ks), int(n_pos.max())), n - 1)

    prec = {kk: np.full(n, np.nan) for kk in ks}
    r_prec = np.full(n, np.nan)
    ap_r = np.full(n, np.nan)
    index = _flat_index(x)
    q_rows = np.flatnonzero(is_query)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    for rows, _, nbr in knn_excluding_self(x[q_rows], index, q_rows, k):
        q = q_rows[rows]
        rel = codes[nbr] == codes[q][:, None]  # chunk × k
        for kk in ks:
            prec[kk][q] = rel[:, :kk].sum(axis=1) / kk
        r = n_pos[q]
        within_r = ranks[None, :] <= r[:, None]
        rel_r = rel & within_r
        cum = np.cumsum(rel_r, axis=1)
        r_prec[q] = rel_r.sum(axis=1) / r
        ap_r[q] = (rel_r * cum / ranks[None, :]).sum(axis=1) / r

    out = pd.DataFrame({"n_positives": n_pos, "is_query": is_query})
    for kk in ks:
        out[f"precision_at_{kk}"] = prec[kk]
    out["r_precision"] = r_prec
    out["average_precision_at_r"] = ap_r
    return out


def retrieval_metrics(embeddings: np.ndarray, labels: Sequence, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Leave-one-out retrieval metrics of a set of embeddings (see the module docstring).

    Returns ``precision_at_{k}`` for each ``k`` in ``ks``, ``r_precision``,
    ``map_at_r`` (floats in [0, 1], NaN when there is no query) and ``n_queries``
    (images with at least one other image of their patient).
    """
    per_query = per_query_metrics(embeddings, labels, ks)
    q = per_query[per_query["is_query"]]
    out: dict[str, float] = {}
    for k in _check_ks(ks):
        out[f"precision_at_{k}"] = _mean_or_nan(q[f"precision_at_{k}"])
    out["r_precision"] = _mean_or_nan(q["r_precision"])
    out["map_at_r"] = _mean_or_nan(q["average_precision_at_r"])
    out["n_queries"] = int(len(q))
    return out


def _mean_or_nan(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")


# ---------------------------------------------------------------------------
# database-size curve
# ---------------------------------------------------------------------------
def database_size_curve(
    embeddings: np.ndarray,
    labels: Sequence,
    query_mask: np.ndarray,
    gallery_sizes: Sequence[int],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Top-1 re-identification accuracy as distractor patients join the gallery.

    The *query patients* are the patients of the images where ``query_mask`` is
    True. Each gallery holds every image of the query patients (so their
    positives never change) plus images of *distractor patients* (all other
    patients), added whole patient after whole patient in one random order
    drawn from ``rng`` — galleries are nested, a larger one contains every smaller
    one — and cut at exactly ``gallery_size`` images (the last distractor
    patient may be partial; it only ever acts as a distractor). Queries are the
    ``query_mask`` images with at least one other image of their patient; each is
    searched against its gallery minus itself (P@1 as in :func:`retrieval_metrics`).

    ``gallery_sizes`` must lie between the number of query-patient images and N
    (the full set). Returns a DataFrame with ``gallery_size``,
    ``n_distractor_images``, ``n_distractor_patients`` (partial one included),
    ``n_queries`` and ``precision_at_1``, one row per size in ascending order.
    """
    x = as_embedding_matrix(embeddings)
    n = len(x)
    codes = encode_labels(labels, n)
    mask = np.asarray(query_mask, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"query_mask must be a boolean vector of length {n}, got shape {mask.shape}")
    if not mask.any():
        raise ValueError("query_mask selects no image")
    query_patient = np.zeros(codes.max() + 1, dtype=bool)
    query_patient[codes[mask]] = True
    base = np.flatnonzero(query_patient[codes])
    sizes = sorted({int(s) for s in gallery_sizes})
    if not sizes or sizes[0] < len(base) or sizes[-1] > n:
        raise ValueError(
            f"gallery sizes must lie in [{len(base)}, {n}] (query-patient images … all images), got {list(gallery_sizes)}"
        )
    # Distractor images in (random patient order, image order within patient).
    distractor_patients = np.flatnonzero(~query_patient & (np.bincount(codes, minlength=len(query_patient)) > 0))
    patient_rank = np.full(len(query_patient), -1)
    patient_rank[rng.permutation(distractor_patients)] = np.arange(len(distractor_patients))
    others = np.flatnonzero(~query_patient[codes])
    others = others[np.lexsort((others, patient_rank[codes[others]]))]

    same_count = np.bincount(codes[base], minlength=len(query_patient))
    queries = np.flatnonzero(mask & (same_count[codes] > 1))
    rows = []
    for size in sizes:
        extra = others[: size - len(base)]
        gallery = np.concatenate([base, extra])
        pos_in_gallery = np.full(n, -1)
        pos_in_gallery[gallery] = np.arange(len(gallery))
        p1 = float("nan")
        if len(queries):
            index = _flat_index(x[gallery])
            hits = 0
            for qr, _, nbr in knn_excluding_self(x[queries], index, pos_in_gallery[queries], 1):
                hits += int((codes[gallery[nbr[:, 0]]] == codes[queries[qr]]).sum())
            p1 = hits / len(queries)
        rows.append({
            "gallery_size": size,
            "n_distractor_images": len(extra),
            "n_distractor_patients": len(np.unique(codes[extra])),
            "n_queries": len(queries),
            "precision_at_1": p1,
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# pixel baseline
# ---------------------------------------------------------------------------
def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """n_out × n_in matrix averaging input pixels over each output cell (box/area resampling)."""
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    hi = lo + scale
    pix = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(pix + 1, hi) - np.maximum(pix, lo), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def pixel_baseline_embeddings(
    images: np.ndarray, size: int = 32, n_components: int = 50, chunk_size: int = 512
) -> np.ndarray:
    """The no-learning baseline reported beside every result: downsample → standardise → PCA.

    ``images`` is N×H×W (uint8, or float in any range; a memmap is fine — it is
    read in chunks). Each image is area-averaged to ``size×size``, standardised
    per image (zero mean, unit variance: removes global exposure/contrast), then
    per pixel across the set, and projected on the top ``n_components``
    principal components (clipped to ``min(N, size²)``) fitted on these same
    images — unsupervised, no patient label is used. Component signs are fixed
    (largest loading positive) so the output is deterministic. Returns
    N×n_components float32.
    """
    imgs = images if isinstance(images, np.ndarray) else np.asarray(images)
    if imgs.ndim != 3 or imgs.shape[0] < 2:
        raise ValueError(f"images must be N×H×W with N ≥ 2, got shape {imgs.shape}")
    if size < 1 or n_components < 1:
        raise ValueError("size and n_components must be positive")
    n, h, w = imgs.shape
    a_rows, a_cols = _area_matrix(h, size), _area_matrix(w, size)
    small = np.empty((n, size * size), dtype=np.float32)  # N×size² is the only full-size buffer
    for start in range(0, n, chunk_size):
        block = np.asarray(imgs[start:start + chunk_size], dtype=np.float64)
        block = np.einsum("sh,nhw,tw->nst", a_rows, block, a_cols).reshape(len(block), -1)
        block -= block.mean(axis=1, keepdims=True)
        block /= block.std(axis=1, keepdims=True) + 1e-8
        small[start:start + len(block)] = block
    mean = small.mean(axis=0, dtype=np.float64)
    std = small.std(axis=0, dtype=np.float64) + 1e-8
    cov = np.zeros((size * size, size * size))
    for start in range(0, n, chunk_size):
        z = (small[start:start + chunk_size] - mean) / std
        small[start:start + len(z)] = z
        cov += z.T @ z
    cov /= n - 1
    n_comp = min(n_components, n, size * size)
    _, eigvec = np.linalg.eigh(cov)
    comps = eigvec[:, ::-1][:, :n_comp]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(n_comp)])
    comps *= np.where(signs == 0, 1.0, signs)
    return (small @ comps.astype(np.float32)).astype(np.float32)

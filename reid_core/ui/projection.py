"""2-D / 3-D projections of the embeddings (PCA, UMAP), computed once per workspace.

:func:`project` is the pure computation. :func:`workspace_projection` caches its
result in the workspace as ``projection_<method>_<dims>d.npz`` (coordinates,
the image ids they belong to, the seed, and the ``st_mtime_ns`` of the
``embeddings.npz`` they came from): re-embedding the workspace changes that
mtime and the next call recomputes.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_core.atomic import atomic_path
from reid_core.embed import EmbeddingTable
from reid_core.errors import WorkspaceError
from reid_core.workspace import Workspace

METHODS: tuple[str, ...] = ("pca", "umap")
DIMS: tuple[int, ...] = (2, 3)
UMAP_NEIGHBOURS = 15


def project(embeddings: np.ndarray, method: str = "pca", dims: int = 2, seed: int = 0) -> np.ndarray:
    """N×``dims`` float32 coordinates of N×D ``embeddings`` (PCA or UMAP; deterministic for a seed).

    PCA is an SVD of the centred data with each axis' sign fixed (largest
    loading positive). UMAP uses ``min(15, N-1)`` neighbours; with fewer than
    ``dims + 2`` points it falls back to PCA. Missing axes (D or N too small)
    are zero.
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; choose one of {METHODS}")
    if dims not in DIMS:
        raise ValueError(f"dims must be one of {DIMS}, got {dims}")
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be N×D, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    n = len(x)
    out = np.zeros((n, dims), dtype=np.float32)
    if n == 0:
        return out
    if method == "umap" and n >= dims + 2:
        return _umap(x, dims, seed)
    return _pca(x, dims)


def _pca(x: np.ndarray, dims: int) -> np.ndarray:
    out = np.zeros((len(x), dims), dtype=np.float32)
    centred = x - x.mean(axis=0)
    if len(x) < 2:
        return out
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(dims, len(s))
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    signs[signs == 0] = 1
    out[:, :k] = (centred @ (comps * signs[:, None]).T).astype(np.float32)
    return out


def explained_variance(embeddings: np.ndarray, dims: int) -> np.ndarray:
    """The share of the embeddings' total variance along each of the first ``dims`` principal axes (zeros for
    axes that do not exist, or when there is no variance)."""
    x = np.asarray(embeddings, dtype=np.float64)
    out = np.zeros(dims, dtype=np.float64)
    if len(x) < 2:
        return out
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    total = float(np.sum(s ** 2))
    if total > 0:
        k = min(dims, len(s))
        out[:k] = s[:k] ** 2 / total
    return out


def axis_titles(method: str, dims: int, explained: np.ndarray | None = None) -> tuple[str, ...]:
    """Axis titles of a map: ``PC1 (41.2 % of variance)`` for PCA (when ``explained`` is known), ``UMAP 1`` …"""
    if method == "pca":
        if explained is None:
            return tuple(f"PC{k + 1}" for k in range(dims))
        return tuple(f"PC{k + 1} ({100 * float(v):.1f} % of variance)" for k, v in enumerate(explained[:dims]))
    return tuple(f"{method.upper()} {k + 1}" for k in range(dims))


def _umap(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    import umap  # slow import (numba): only when asked for

    n = len(x)
    reducer = umap.UMAP(n_components=dims, n_neighbors=max(2, min(UMAP_NEIGHBOURS, n - 1)), random_state=seed,
                        init="spectral" if n > 4 * dims + 8 else "random")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # random_state forces one thread
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        coords = reducer.fit_transform(x.astype(np.float32))
    return np.asarray(coords, dtype=np.float32)


@dataclass
class Projection:
    """Coordinates aligned with image ids (row i ↔ ``image_ids[i]``)."""

    coords: np.ndarray  # N×dims float32
    image_ids: np.ndarray  # N, str
    method: str
    dims: int
    from_cache: bool = False
    explained: np.ndarray | None = None  # PCA: share of variance per axis

    @property
    def axis_titles(self) -> tuple[str, ...]:
        return axis_titles(self.method, self.dims, self.explained)


def projection_path(ws: Workspace, method: str, dims: int) -> Path:
    return ws.root / f"projection_{method}_{int(dims)}d.npz"


def workspace_projection(ws: Workspace, method: str = "pca", dims: int = 2, seed: int = 0,
                         table: EmbeddingTable | None = None) -> Projection:
    """The workspace's projection, read from its cache file when that matches the embeddings' mtime and seed.

    Raises :class:`WorkspaceError` (naming the command) when the workspace has no embeddings.
    A cache file that cannot be written (read-only workspace) is skipped silently.
    """
    if not ws.embeddings_path.exists():
        raise WorkspaceError(f"{ws.root} has no embeddings; run `cxr-reid embed --workspace {ws.root}`")
    source_mtime = ws.embeddings_path.stat().st_mtime_ns
    path = projection_path(ws, method, dims)
    cached = _read_cache(path, source_mtime, seed)
    if cached is not None and (method != "pca" or cached[2] is not None):  # older PCA caches lack the variance
        coords, ids, explained = cached
        return Projection(coords, ids, method, dims, from_cache=True, explained=explained)
    table = table if table is not None else EmbeddingTable.load(ws.embeddings_path)
    coords = project(table.embeddings, method, dims, seed)
    explained = explained_variance(table.embeddings, dims) if method == "pca" else None
    extra = {"explained": explained} if explained is not None else {}
    try:
        with atomic_path(path, fsync=False) as tmp:  # a cache: losing it on a crash costs one recomputation
            np.savez(tmp, coords=coords, image_ids=table.image_ids.astype("U"), seed=np.int64(seed),
                     source_mtime_ns=np.int64(source_mtime), method=np.array(method), dims=np.int64(dims), **extra)
    except OSError:
        pass
    return Projection(coords, table.image_ids, method, dims, from_cache=False, explained=explained)


def _read_cache(path: Path, source_mtime: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["source_mtime_ns"]) != source_mtime or int(z["seed"]) != seed:
                return None
            coords, ids = z["coords"].astype(np.float32), z["image_ids"].astype(str)
            explained = z["explained"].astype(np.float64) if "explained" in z.files else None
    except (OSError, KeyError, ValueError):
        return None  # a broken cache file is recomputed, never trusted
    if coords.ndim != 2 or len(coords) != len(ids):
        return None
    if explained is not None and (explained.shape != (coords.shape[1],) or not np.isfinite(explained).all()):
        explained = None
    return coords, ids, explained

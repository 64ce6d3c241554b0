"""Nearest-neighbour search over image embeddings, keyed by ``image_id`` (FAISS).

Kinds of index (all Euclidean/L2; registered in :mod:`reid_core.index_kinds`):

* ``"flat"`` (default) — ``IndexFlatL2``, exact brute force. Right up to a few
  hundred thousand images on one machine.
* ``"ivf"`` — ``IndexIVFFlat``: k-means into ``nlist`` cells, search the
  ``nprobe`` nearest cells. ``nlist ≈ 4√N`` of the first batch added (which
  trains the quantiser), capped at ``N // 39`` so every centroid has the 39
  training points FAISS asks for. Default ``nprobe = min(nlist, max(16, nlist // 16))``
  favours recall; measure with :meth:`Index.recall_at_k_vs_exact` and lower it
  for speed. Vectors added later are assigned to the existing cells, so if the
  gallery's distribution shifts, rebuild.
* ``"hnsw"`` — ``IndexHNSWFlat`` with ``M = 32`` links per node; ``ef_search``
  (default 64, raised to ``k`` when smaller) trades speed for recall.

Conventions:

* Distances returned are **Euclidean** (square root of FAISS's squared L2,
  clipped at 0), so they are on the same scale as the verifier's
  (:mod:`reid_core.verify`).
* Image ids are stored as ``str`` (the manifest's ``image_id``); FAISS's own ids
  are the insertion order 0…N-1, mapped through the id list.
* ``k`` larger than what can be returned is **clipped with a**
  :class:`KClippedWarning` (a UI asking for the top 10 in a 6-image gallery gets
  6 rows); ``k < 1`` raises. When an approximate index returns fewer than ``k``
  hits, the missing slots hold id ``None`` and distance ``inf``.
* Errors: :class:`EmptyIndexError` (search on an empty index),
  :class:`DimensionMismatchError` (wrong vector length), :class:`UnknownImageIdError`
  (``search_id`` of an id not indexed; also a ``KeyError``), ``ValueError`` for
  duplicate ids or non-finite vectors.
* Search parameters (``nprobe``/``ef_search``) travel with each query as FAISS
  ``SearchParameters`` instead of mutating the index, so concurrent searches from
  several threads (e.g. a Streamlit ``st.cache_resource``) are safe. ``add`` is
  not thread-safe.
* Files: :meth:`Index.save` writes ``index.faiss`` (a serialised FAISS index) plus
  ``index.ids.json`` (ids, parameters, the index file's SHA-256). Nothing is pickled.

Sharding across machines. Do not write a distributed search: FAISS has one.
Split the gallery into ``S`` parts (e.g. by a hash of ``image_id``), build and
save one :class:`Index` per part with the same ``kind`` and parameters (for
IVF, train one quantiser on a sample and give every part the same cells). In
one process, ``shards = faiss.IndexShards(dim, True, True)`` (threaded,
successive ids) with ``shards.add_shard(part.faiss_index)`` for each part in
order searches all parts in parallel and merges their top-k lists by distance;
a hit's FAISS id is then its row in the concatenation of the parts'
``image_ids`` lists, in the same order. Across machines, serve each part with
``faiss.contrib.client_server.run_index_server(part.faiss_index, port)`` and
query them all through ``faiss.contrib.client_server.ClientIndex([(host, port),
…])``, which fans the query out and merges the top-k lists with a
``faiss.ResultHeap``. It merges ids as each machine returns them, so the parts
must use disjoint global ids: on each machine wrap the part in
``faiss.IndexIDMap`` and ``add_with_ids(vectors, offset + np.arange(n))``
(``offset`` = images in the parts before it); hits then map back through the
concatenated id lists as above. That RPC layer
serialises with pickle, so use it only inside a trusted network. For
throughput rather than size, ``faiss.IndexReplicas`` holds copies instead of parts.
"""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import faiss
import numpy as np

from reid_core._compat.faiss_tuning import prefer_blas_for, threads_for
from reid_core.atomic import write_bytes_atomic, write_text_atomic
from reid_core.errors import CxrReidError, WorkspaceError
from reid_core.index_kinds import Ivf, get_index_kind
from reid_core.jsonfile import read_json_object

INDEX_FILE = "index.faiss"
_FORMAT = "cxr-reid/index"
_VERSION = 1
HNSW_M = 32
DEFAULT_EF_SEARCH = 64


class EmptyIndexError(CxrReidError, ValueError):
    """A search was asked of an index holding no vector."""


class DimensionMismatchError(CxrReidError, ValueError):
    """Vectors do not have the index's dimension."""


class UnknownImageIdError(CxrReidError, KeyError):
    """An ``image_id`` that is not in the index."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class KClippedWarning(UserWarning):
    """``k`` exceeded the number of results an index can return and was lowered."""


def faiss_search(index: faiss.Index, x: np.ndarray, k: int, params=None) -> tuple[np.ndarray, np.ndarray]:
    """``index.search(x, k, params=params)`` that also works after ``faiss.contrib.torch_utils`` is imported.

    pytorch-metric-learning imports ``faiss.contrib.torch_utils``, which replaces
    every index's ``search`` by a torch-aware version without the ``params``
    argument and keeps FAISS's own NumPy method as ``search_numpy``. Exact
    distances switch to BLAS from a few queries per thread on, and fewer
    queries than threads run on one thread (:mod:`reid_core._compat.faiss_tuning`).
    """
    prefer_blas_for(index.d)
    search = getattr(index, "search_numpy", index.search)
    with threads_for(len(x)):
        return search(x, k) if params is None else search(x, k, params=params)


def default_nlist(n: int) -> int:
    """``round(4√n)`` cells, at most ``n // 39`` (FAISS's minimum training points per centroid), at least 1."""
    return int(max(1, min(round(4 * math.sqrt(n)), n // 39)))


def default_nprobe(nlist: int) -> int:
    return int(min(nlist, max(16, nlist // 16)))


class Index:
    """An L2 nearest-neighbour index of embeddings keyed by image id (see the module docstring)."""

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = HNSW_M,
        ef_search: int = DEFAULT_EF_SEARCH,
    ) -> None:
        self._kind = get_index_kind(kind)
        if int(dim) < 1:
            raise ValueError(f"dim must be ≥ 1, got {dim}")
        self.dim = int(dim)
        self.kind = kind
        self._nlist = nlist
        self._nprobe = nprobe
        self.hnsw_m = int(hnsw_m)
        self.ef_search = int(ef_search)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._faiss: faiss.Index | None = self._kind.create(self)  # None: made from the first batch

    # -- construction ---------------------------------------------------------
    @classmethod
    def build(cls, embeddings: np.ndarray, image_ids: Sequence, kind: str = "flat", **params) -> "Index":
        """Create an index of ``kind`` (extra keyword ``params`` as in ``__init__``) and add the vectors."""
        x = np.asarray(embeddings)
        if x.ndim != 2 or len(x) == 0:
            raise EmptyIndexError(f"build() needs a non-empty N×D matrix, got shape {x.shape}")
        index = cls(x.shape[1], kind, **params)
        index.add(x, image_ids)
        return index

    def _vectors(self, embeddings: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ValueError(f"{what} must be a D-vector or an N×D matrix, got shape {x.shape}")
        if x.shape[1] != self.dim:
            raise DimensionMismatchError(f"{what} have dimension {x.shape[1]}, the index has {self.dim}")
        if not np.isfinite(x).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        return np.ascontiguousarray(x)

    def add(self, embeddings: np.ndarray, image_ids: Iterable) -> None:
        """Append vectors with their (new, unique) image ids. The first batch trains an IVF index."""
        x = self._vectors(embeddings, "embeddings")
        ids = [str(i) for i in image_ids]
        if len(ids) != len(x):
            raise ValueError(f"{len(x)} embeddings but {len(ids)} image ids")
        if len(set(ids)) != len(ids):
            raise ValueError("image ids within the batch are not unique")
        clash = [i for i in ids if i in self._row]
        if clash:
            raise ValueError(f"{len(clash)} image id(s) already indexed, e.g. {clash[0]!r}")
        if len(x) == 0:
            return
        if self._faiss is None:  # a kind trained on its first batch (IVF): it fixes the cell parameters
            self._faiss = self._kind.from_first_batch(self, x)
            self._nlist, self._nprobe = int(self._faiss.nlist), int(self._faiss.nprobe)
        self._faiss.add(x)
        start = len(self._ids)
        self._ids.extend(ids)
        self._row.update({iid: start + k for k, iid in enumerate(ids)})

    # -- properties ---------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        return str(image_id) in self._row

    @property
    def image_ids(self) -> list[str]:
        """Indexed ids in insertion order (a copy)."""
        return list(self._ids)

    @property
    def faiss_index(self) -> faiss.Index | None:
        """The underlying FAISS index (for sharding/inspection; add through :meth:`add` only)."""
        return self._faiss

    @property
    def nlist(self) -> int | None:
        """IVF cells (None for other kinds, and before an IVF index's first batch unless given)."""
        return self._nlist if isinstance(self._kind, Ivf) else None

    @property
    def nprobe(self) -> int | None:
        """IVF cells visited per query (settable); None for other kinds."""
        return self._nprobe if isinstance(self._kind, Ivf) else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if not isinstance(self._kind, Ivf):
            raise ValueError("nprobe applies to kind='ivf' only")
        if int(value) < 1:
            raise ValueError("nprobe must be ≥ 1")
        self._nprobe = int(value)
        if self._faiss is not None:
            self._faiss.nprobe = min(self._nprobe, self._nlist)

    # -- search ---------------------------------------------------------------
    def _clip_k(self, k: int, available: int) -> int:
        if int(k) < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        if k > available:
            warnings.warn(f"k={k} exceeds the {available} results available; returning {available}",
                          KClippedWarning, stacklevel=3)
            return available
        return int(k)

    def _raw_search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return faiss_search(self._faiss, x, k, self._kind.search_params(self, k))

    def _to_output(self, d: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids_arr = self._ids  # a list: index only the hits (an object array of every id cost ~0.1 s per search at 1M)
        found = i >= 0
        out_ids = np.full(i.shape, None, dtype=object)
        out_ids[found] = [ids_arr[j] for j in i[found].tolist()]
        dist = np.where(found, np.sqrt(np.maximum(d, 0.0)), np.inf).astype(np.float32)
        return dist, out_ids

    def _require_nonempty(self) -> None:
        if len(self) == 0:
            raise EmptyIndexError("the index is empty: add() embeddings first")

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest indexed images of each query.

        ``queries`` is Q×D (or one D-vector, treated as Q=1). Returns
        ``(distances, image_ids)``, both Q×k: Euclidean distances (float32,
        ascending) and ids (object array of ``str``). ``k`` is clipped to the
        index size with a :class:`KClippedWarning`.
        """
        self._require_nonempty()
        x = self._vectors(queries, "queries")
        k = self._clip_k(k, len(self))
        return self._to_output(*self._raw_search(x, k))

    def reconstruct(self, image_id: object) -> np.ndarray:
        """The stored vector of ``image_id`` (float32, length ``dim``)."""
        key = str(image_id)
        if key not in self._row:
            raise UnknownImageIdError(f"image id {key!r} is not in the index")
        return self._faiss.reconstruct(self._row[key])

    def search_id(self, image_id: object, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest *other* images of an indexed image (itself excluded by id).

        Returns 1-D ``(distances, image_ids)`` of length ``k`` (clipped to size - 1
        with a :class:`KClippedWarning`). Exact duplicates of the image are
        returned like any other neighbour.
        """
        self._require_nonempty()
        vec = self.reconstruct(image_id)[None, :]
        if len(self) < 2:
            raise EmptyIndexError("the index holds only this image: there is no other to return")
        k = self._clip_k(k, len(self) - 1)
        d, i = self._raw_search(vec, k + 1)
        row = self._row[str(image_id)]
        keep = i[0] != row
        if keep.all():  # itself not among the hits (duplicates or ANN miss): drop the farthest
            keep[-1] = False
        dist, ids = self._to_output(d[:, keep], i[:, keep])
        return dist[0], ids[0]

    def recall_at_k_vs_exact(self, queries: np.ndarray, k: int = 10) -> float:
        """Mean fraction of the exact top-``k`` (brute-force L2) that this index returns.

        1.0 for ``kind="flat"`` up to ties. Use held-out queries (or a sample of
        indexed vectors) to tune ``nprobe``/``ef_search``.
        """
        self._require_nonempty()
        x = self._vectors(queries, "queries")
        k = self._clip_k(k, len(self))
        exact = faiss.IndexFlatL2(self.dim)
        exact.add(self._faiss.reconstruct_n(0, len(self)))
        _, truth = faiss_search(exact, x, k)
        _, approx = self._raw_search(x, k)
        hits = [len(np.intersect1d(t, a[a >= 0])) for t, a in zip(truth, approx)]
        return float(np.mean(hits) / k)

    # -- persistence ------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``index.faiss`` + ``index.ids.json`` into directory ``path`` (or to ``path`` if it ends in ``.faiss``).

        Returns the ``.faiss`` path. Each file is written atomically under a unique
        temp name, and the sidecar records the index file's SHA-256, so a pair torn
        by a crash or by two concurrent writers is refused on load, never paired.
        """
        self._require_nonempty()
        p = Path(path)
        if p.suffix != ".faiss":
            p.mkdir(parents=True, exist_ok=True)
            p = p / INDEX_FILE
        sidecar = _sidecar(p)
        meta = {
            "format": _FORMAT, "version": _VERSION, "kind": self.kind, "dim": self.dim,
            "ntotal": len(self), "nlist": self._nlist, "nprobe": self._nprobe,
            "hnsw_m": self.hnsw_m, "ef_search": self.ef_search, "image_ids": self._ids,
        }
        data = faiss.serialize_index(self._faiss).tobytes()
        meta["index_sha256"] = hashlib.sha256(data).hexdigest()
        write_bytes_atomic(p, data)
        write_text_atomic(sidecar, json.dumps(meta))
        return p

    @classmethod
    def load(cls, path: str | Path) -> "Index":
        """Read an index written by :meth:`save` (directory or ``.faiss`` path)."""
        p = Path(path)
        if p.suffix != ".faiss" or p.is_dir():
            p = p / INDEX_FILE
        sidecar = _sidecar(p)
        for f in (p, sidecar):
            if not f.is_file():
                raise WorkspaceError(f"{f}: index file not found")
        meta = read_json_object(sidecar)
        if not isinstance(meta.get("image_ids") or [], list):
            raise WorkspaceError(f"{sidecar}: image_ids is not a list")
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise WorkspaceError(f"{sidecar}: not a {_FORMAT} v{_VERSION} sidecar")
        ids = [str(i) for i in meta.get("image_ids") or []]
        _check_index_file(p, str(meta.get("kind")), len(ids), meta.get("dim"))
        data = p.read_bytes()
        if "index_sha256" in meta and hashlib.sha256(data).hexdigest() != meta["index_sha256"]:
            raise WorkspaceError(f"{p} is not the index {sidecar.name} was written with (torn by a crash or by two "
                                 "writers at once): re-run `cxr-reid embed --force`")
        try:
            raw = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as exc:
            raise WorkspaceError(f"{p}: not a readable FAISS index ({(str(exc).splitlines() or [''])[0][:120]})") from None
        if raw.ntotal != len(ids) or raw.d != meta["dim"] or len(set(ids)) != len(ids):
            raise WorkspaceError(
                f"{p}: index holds {raw.ntotal} vectors of dim {raw.d}, sidecar lists "
                f"{len(ids)} ids (dim {meta['dim']}); the two files do not belong together"
            )
        index = cls(meta["dim"], meta["kind"], nlist=meta.get("nlist"), nprobe=meta.get("nprobe"),
                    hnsw_m=meta.get("hnsw_m", HNSW_M), ef_search=meta.get("ef_search", DEFAULT_EF_SEARCH))
        index._faiss = raw
        index._ids = ids
        index._row = {iid: k for k, iid in enumerate(ids)}
        return index


def _check_index_file(p: Path, kind: str, n: int, dim: object) -> None:
    """Bound what FAISS will allocate before it reads ``p``: a crafted header can claim gigabytes.

    Each kind knows its plausible sizes (:meth:`~reid_core.index_kinds.IndexKind.file_fits`):
    a flat index is exactly its header plus ``n`` × ``dim`` float32 values.
    """
    if not isinstance(dim, int) or dim <= 0:
        raise WorkspaceError(f"{_sidecar(p)}: invalid dimension {dim!r}")
    try:
        fits = get_index_kind(kind).file_fits(p, n, dim)
    except ValueError as exc:
        raise WorkspaceError(f"{_sidecar(p)}: {exc}") from None
    if not fits:
        raise WorkspaceError(f"{p}: {p.stat().st_size} bytes do not fit {n} ids × {dim} dims of a {kind} index "
                             f"(corrupt, or not the index of these embeddings): re-run `cxr-reid embed --force`")


def _sidecar(index_path: Path) -> Path:
    return index_path.with_name(index_path.stem + ".ids.json")

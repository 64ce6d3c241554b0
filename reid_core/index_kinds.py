"""The registry of index kinds behind :class:`reid_core.retrieval.Index` (``kind="flat" | "ivf" | "hnsw"``).

An :class:`IndexKind` says how its FAISS index is made (at once, or from the
first batch of vectors when it must be trained), which per-query search
parameters it takes, and what size its file may have before FAISS is allowed
to read it. Kinds are stateless; the parameters (``nlist``, ``nprobe``,
``hnsw_m``, ``ef_search``) live on the :class:`~reid_core.retrieval.Index`
and are saved with it. See :mod:`reid_core.retrieval` for what each kind trades.
"""
from __future__ import annotations

from abc import ABC
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import faiss
import numpy as np

if TYPE_CHECKING:
    from reid_core.retrieval import Index


class IndexKind(ABC):
    """Protocol of one kind of index; subclasses override what differs from an exact, untrained index."""

    name: ClassVar[str]

    def create(self, index: Index) -> faiss.Index | None:
        """The empty FAISS index, or None when it is built from the first batch (:meth:`from_first_batch`)."""
        raise NotImplementedError

    def from_first_batch(self, index: Index, x: np.ndarray) -> faiss.Index:
        """The FAISS index trained on the first batch ``x`` (kinds whose :meth:`create` returns None).

        The index it returns carries the cell parameters it settled on (``nlist``, ``nprobe``).
        """
        raise NotImplementedError(f"a {self.name} index is created empty, not from its first batch")

    def search_params(self, index: Index, k: int) -> Any:
        """FAISS ``SearchParameters`` for a query of ``k`` results (None: the index's own)."""
        return None

    def file_fits(self, path: Path, n: int, dim: int) -> bool:
        """Whether ``path``'s size is plausible for ``n`` vectors of ``dim`` (checked before FAISS reads it).

        Default, for layouts that vary: between the raw vectors' size and a generous multiple of it.
        """
        vectors = n * dim * 4
        return vectors <= path.stat().st_size <= 16 * vectors + n * 4096 + (1 << 24)


INDEX_KINDS: dict[str, IndexKind] = {}
"""Every registered kind by name, in registration order."""


def register_index_kind(cls: type[IndexKind]) -> type[IndexKind]:
    """Class decorator adding one instance of ``cls`` to :data:`INDEX_KINDS` (names must be unique)."""
    if cls.name in INDEX_KINDS:
        raise ValueError(f"index kind {cls.name!r} is registered twice")
    INDEX_KINDS[cls.name] = cls()
    return cls


def get_index_kind(name: str) -> IndexKind:
    """The kind called ``name``; ValueError naming the registered ones."""
    try:
        return INDEX_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown index kind {name!r}; choose one of {tuple(INDEX_KINDS)}") from None


_FLAT_HEADER = 45  # fourcc, d, ntotal, 2 dummies, is_trained, metric, then the vector's length


@register_index_kind
class Flat(IndexKind):
    """``IndexFlatL2``: exact brute force."""

    name = "flat"

    def create(self, index: Index) -> faiss.Index:
        return faiss.IndexFlatL2(index.dim)

    def file_fits(self, path: Path, n: int, dim: int) -> bool:
        """Exactly the header plus ``n × dim`` float32 values, the header agreeing on dimension and count."""
        with path.open("rb") as fh:
            head = fh.read(_FLAT_HEADER)
        fields = (head[:4] in (b"IxF2", b"IxFI") and len(head) == _FLAT_HEADER,
                  int.from_bytes(head[4:8], "little", signed=True) == dim,
                  int.from_bytes(head[8:16], "little") == n, int.from_bytes(head[37:45], "little") == n * dim)
        return path.stat().st_size == _FLAT_HEADER + n * dim * 4 and all(fields)


@register_index_kind
class Ivf(IndexKind):
    """``IndexIVFFlat``: k-means cells trained on the first batch; ``nprobe`` cells searched per query."""

    name = "ivf"

    def create(self, index: Index) -> None:
        return None

    def from_first_batch(self, index: Index, x: np.ndarray) -> faiss.Index:
        from reid_core.retrieval import default_nlist, default_nprobe

        nlist = index.nlist or default_nlist(len(x))
        if nlist > len(x):
            raise ValueError(f"nlist={nlist} exceeds the {len(x)} training vectors")
        quantizer = faiss.IndexFlatL2(index.dim)
        ivf = faiss.IndexIVFFlat(quantizer, index.dim, nlist, faiss.METRIC_L2)
        ivf.train(x)
        ivf.set_direct_map_type(faiss.DirectMap.Array)  # reconstruct() for search_id
        ivf.nprobe = index.nprobe or default_nprobe(nlist)
        return ivf

    def search_params(self, index: Index, k: int) -> Any:
        return faiss.SearchParametersIVF(nprobe=int(min(index.nprobe, index.nlist)))


@register_index_kind
class Hnsw(IndexKind):
    """``IndexHNSWFlat`` with ``hnsw_m`` links per node; ``ef_search`` (at least ``k``) per query."""

    name = "hnsw"

    def create(self, index: Index) -> faiss.Index:
        raw = faiss.IndexHNSWFlat(index.dim, index.hnsw_m)
        raw.hnsw.efSearch = index.ef_search
        return raw

    def search_params(self, index: Index, k: int) -> Any:
        return faiss.SearchParametersHNSW(efSearch=int(max(index.ef_search, k)))

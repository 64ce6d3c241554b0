"""Embed a workspace's images: ``embeddings.npz`` (N×D float32 + image ids).

Batches are read from the memory-mapped image store by a background thread
while the model runs, so decoding never waits on the model or vice versa; on
a GPU the outputs stay on the device for ``_COPY_BACK_EVERY`` batches, so the
host does not stall the model with a device→host copy after every batch.
Under ``torchrun`` each rank embeds a contiguous shard, writes it, and rank 0
merges the shards in manifest order.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from reid_core.atomic import atomic_path
from reid_core.data.manifest import load_manifest
from reid_core.data.prefetch import thread_prefetch
from reid_core.data.store import ImageStore
from reid_core.device import autocast_context, resolve_device
from reid_core.errors import WorkspaceError
from reid_core.workspace import Workspace

log = logging.getLogger(__name__)
_COPY_BACK_EVERY = 16  # batches of outputs held on the device between copies to host memory


@dataclass
class EmbeddingTable:
    """Embeddings aligned with image ids (row i ↔ ``image_ids[i]``)."""

    embeddings: np.ndarray  # N×D float32
    image_ids: np.ndarray  # N, str

    def __post_init__(self) -> None:
        self.embeddings = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        self.image_ids = np.asarray(self.image_ids).astype(str)
        if self.embeddings.ndim != 2 or len(self.embeddings) != len(self.image_ids):
            raise ValueError(f"embeddings {self.embeddings.shape} and {len(self.image_ids)} ids do not align")

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def save(self, path: str | Path) -> None:
        """Write ``embeddings.npz`` atomically (plain arrays; loading needs no pickle)."""
        with atomic_path(path) as tmp:
            np.savez(tmp, embeddings=self.embeddings, image_ids=self.image_ids.astype("U"))

    @classmethod
    def load(cls, path: str | Path) -> "EmbeddingTable":
        """Read ``embeddings.npz`` (no pickle); missing or corrupt files raise :class:`WorkspaceError`."""
        path = Path(path)
        if not path.exists():
            raise WorkspaceError(f"no embeddings at {path}; run `cxr-reid embed`")
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["embeddings"], z["image_ids"])
        except Exception as exc:  # noqa: BLE001 - zipfile, numpy and our own shape check raise many types
            raise WorkspaceError(f"{path}: not a readable embeddings table ({type(exc).__name__}); re-run "
                                 "`cxr-reid embed --force`") from None

    def rows_for(self, image_ids: pd.Series | list[str]) -> np.ndarray:
        """Row of each id (KeyError naming the first unknown id)."""
        pos = {iid: i for i, iid in enumerate(self.image_ids)}
        try:
            return np.array([pos[i] for i in image_ids], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"image id {exc.args[0]!r} has no embedding") from None


class _StoreBatches:
    """``store[rows]`` in batches, as a sequence (read ahead by :func:`thread_prefetch`)."""

    def __init__(self, store: ImageStore, rows: np.ndarray, batch_size: int) -> None:
        self.store, self.rows, self.batch_size = store, rows, batch_size

    def __len__(self) -> int:
        return (len(self.rows) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int) -> np.ndarray:
        return self.store[self.rows[i * self.batch_size:(i + 1) * self.batch_size]]


@torch.no_grad()
def embed_array(model: torch.nn.Module, store: ImageStore, rows: np.ndarray, batch_size: int = 64,
                device: str | torch.device = "auto", progress: bool = True, desc: str = "embed",
                size: int | None = None) -> np.ndarray:
    """Embeddings (float32) of ``store[rows]`` in the order given.

    Images are resized (antialiased, as in training) to ``size``, by default the
    model's training size ``model.config.image_size``, when the store differs.
    """
    from reid_core.train.data import to_device_float

    dev = resolve_device(device) if isinstance(device, str) else device
    size = size or getattr(getattr(model, "config", None), "image_size", None) or store.size
    model = model.to(dev).eval().to(memory_format=torch.channels_last)
    out = np.zeros((len(rows), model.embedding_dim), dtype=np.float32)
    pending: list[torch.Tensor] = []  # outputs still on the device: copied back every few batches, not each one
    done = 0

    def copy_back(end: int) -> None:
        """Move the pending outputs, rows ``end - len(block)`` … ``end``, to ``out``."""
        block = torch.cat(pending).float().cpu().numpy()
        pending.clear()
        out[end - len(block):end] = block

    bar = tqdm(total=len(rows), desc=desc, unit="img", disable=not progress)
    t0 = time.perf_counter()
    for batch in thread_prefetch(_StoreBatches(store, np.asarray(rows), batch_size), depth=3):
        x = to_device_float(torch.from_numpy(batch), dev, size, channels_last=True)
        with autocast_context(dev, amp=True):
            pending.append(model(x))
        done += len(batch)
        if len(pending) >= _COPY_BACK_EVERY:
            copy_back(done)
        bar.update(len(batch))
        bar.set_postfix(img_s=f"{done / (time.perf_counter() - t0):.0f}")
    if pending:
        copy_back(done)
    bar.close()
    return out


def _dist() -> tuple[int, int]:
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return rank, world


def embeddings_up_to_date(ws: Workspace) -> bool:
    """Whether ``embeddings.npz`` is at least as new as the embedder's weights and the manifest."""
    inputs = [ws.embedder_weights_path, ws.manifest_path]
    return ws.embeddings_path.exists() and all(
        ws.embeddings_path.stat().st_mtime >= p.stat().st_mtime for p in inputs if p.exists())


def store_size_for(ws: Workspace, image_size: int | None) -> int:
    """The store to embed from: the model's training size when prepared, else the largest store
    (:func:`embed_array` resizes to the training size either way)."""
    return image_size if image_size in ws.image_sizes() else ws.default_image_size()


def embed_workspace(workspace: Workspace | str | Path, batch_size: int = 64, device: str = "auto",
                    size: int | None = None, force: bool = False, progress: bool = True) -> EmbeddingTable:
    """Embed every manifest image with the workspace's embedder; skip if up to date."""
    from reid_core.checkpoint import load_embedder

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    weights = ws.embedder_weights_path
    if not weights.exists():
        raise WorkspaceError(f"{ws.root} has no trained embedder; run `cxr-reid train --workspace {ws.root}`")
    if not force and embeddings_up_to_date(ws):
        log.info("embeddings are up to date: %s", ws.embeddings_path)
        return EmbeddingTable.load(ws.embeddings_path)
    manifest = load_manifest(ws.manifest_path)
    model = load_embedder(ws.embedder_dir)
    size = size or store_size_for(ws, model.config.image_size)
    store = ImageStore(ws.images_path(size), manifest)
    rows = manifest["cache_row"].to_numpy()
    rank, world = _dist()
    if world == 1:
        table = EmbeddingTable(embed_array(model, store, rows, batch_size, device, progress), manifest["image_id"])
        _write_outputs(ws, table)
        return table
    return _embed_sharded(ws, model, store, manifest, rows, rank, world, batch_size, device)


def _embed_sharded(ws: Workspace, model, store: ImageStore, manifest: pd.DataFrame, rows: np.ndarray,
                   rank: int, world: int, batch_size: int, device: str) -> EmbeddingTable:
    """torchrun: each rank embeds ``array_split`` shard ``rank``; rank 0 merges after a barrier."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    shards = np.array_split(np.arange(len(rows)), world)
    mine = shards[rank]
    emb = embed_array(model, store, rows[mine], batch_size, device, progress=rank == 0, desc=f"embed r{rank}")
    shard_path = ws.root / f"embeddings.rank{rank}.npz"
    EmbeddingTable(emb, manifest["image_id"].to_numpy()[mine]).save(shard_path)
    dist.barrier()
    table = None
    if rank == 0:
        parts = [EmbeddingTable.load(ws.root / f"embeddings.rank{r}.npz") for r in range(world)]
        table = EmbeddingTable(np.concatenate([p.embeddings for p in parts]),
                               np.concatenate([p.image_ids for p in parts]))
        _write_outputs(ws, table)
        for r in range(world):
            (ws.root / f"embeddings.rank{r}.npz").unlink(missing_ok=True)
    dist.barrier()
    return table if table is not None else EmbeddingTable.load(ws.embeddings_path)


def _write_outputs(ws: Workspace, table: EmbeddingTable) -> None:
    """``embeddings.npz`` and the exact FAISS index ``index.faiss`` built from it."""
    from reid_core.retrieval import Index

    table.save(ws.embeddings_path)
    Index.build(table.embeddings, table.image_ids).save(ws.root)

"""Real images and their identity conditions for GAN training.

:func:`load_gan_data` picks the workspace's image store at the training
resolution (or the next larger one, resized on the fly on the device), the
manifest rows to train on, and, for a conditional GAN, the ``embeddings.npz``
row of every one of those images. :class:`RealSampler` decides which images
each step shows, as a function of ``(seed, step, rank)`` only: epoch-wise
permutations of the images, the global batch split across ranks, so a resumed
run reads exactly the batches an uninterrupted one would. :class:`RealStream`
reads those batches (uint8) from the memory-mapped store ahead of the training
step, in a background thread or DataLoader workers.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from reid_core.data.manifest import load_manifest
from reid_core.data.prefetch import thread_prefetch
from reid_core.data.store import ImageStore
from reid_core.embed import EmbeddingTable
from reid_core.errors import WorkspaceError
from reid_core.train.data import BatchDataset, _choose_store, _store_rows, iterate_batches, to_device_float
from reid_core.workspace import Workspace

log = logging.getLogger(__name__)

_PERM_SALT = 0x6A4
CHUNK_STEPS = 256  # batches handed to the reader at a time


@dataclass
class GanData:
    """Store rows of the training images and their conditions (row i ↔ ``image_ids[i]``)."""

    store_path: Path
    store_size: int
    resolution: int
    rows: np.ndarray  # (N,) int64 store rows
    conditions: np.ndarray  # (N, c_dim) float32; c_dim 0 when unconditional
    image_ids: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return int(len(self.rows))

    @property
    def c_dim(self) -> int:
        return int(self.conditions.shape[1])


def load_gan_data(workspace: Workspace, resolution: int, *, unconditional: bool = False,
                  splits: str = "all") -> GanData:
    """The images (``splits``: ``all`` or ``train``) and, unless ``unconditional``, their embeddings.

    Raises WorkspaceError when the manifest, a big-enough image store or (for a
    conditional GAN) the embeddings are missing, or the embeddings are stale.
    """
    if not workspace.manifest_path.exists():
        raise WorkspaceError(f"{workspace.root} has no manifest.parquet; build the workspace first with "
                             f"`cxr-reid prepare --workspace {workspace.root} ...`")
    manifest = load_manifest(workspace.manifest_path)
    store_path, store_size, size = _choose_store(workspace, resolution)
    store = ImageStore(store_path, manifest)
    manifest = manifest.assign(_store_row=_store_rows(manifest, len(store), store_path))
    if splits == "train":
        manifest = manifest[manifest["split"] == "train"]
    elif splits != "all":
        raise ValueError(f"splits must be 'all' or 'train', got {splits!r}")
    if manifest.empty:
        raise WorkspaceError(f"{workspace.root}: no images to train the GAN on (splits={splits!r})")
    ids = manifest["image_id"].to_numpy().astype(str)
    if unconditional:
        conditions = np.zeros((len(ids), 0), np.float32)
    else:
        conditions = _conditions_for(workspace, ids)
    log.info("GAN data: %d images from %s (%d px store → %d px), c_dim %d", len(ids), store_path.name,
             store_size, size, conditions.shape[1])
    return GanData(store_path=store_path, store_size=store_size, resolution=size,
                   rows=manifest["_store_row"].to_numpy(np.int64), conditions=conditions, image_ids=ids)


def _conditions_for(workspace: Workspace, ids: np.ndarray) -> np.ndarray:
    path = workspace.embeddings_path
    if not path.exists():
        raise WorkspaceError(
            f"{workspace.root} has no identity embeddings ({path.name}): the conditional GAN is conditioned on "
            f"them. Run `cxr-reid embed --workspace {workspace.root}` first (after `cxr-reid train`), "
            "or pass --unconditional to train without conditions")
    table = EmbeddingTable.load(path)
    known = set(table.image_ids.tolist())
    missing = [i for i in ids if i not in known]
    if missing:
        raise WorkspaceError(
            f"{path} is out of date: {len(missing)} of {len(ids)} images have no embedding (e.g. {missing[0]!r}); "
            f"re-run `cxr-reid embed --workspace {workspace.root} --force`")
    cond = table.embeddings[table.rows_for(list(ids))]
    if not np.isfinite(cond).all():
        raise WorkspaceError(f"{path} holds non-finite embeddings; re-run `cxr-reid embed --force`")
    return np.ascontiguousarray(cond, dtype=np.float32)


class RealSampler:
    """Which images (positions into :class:`GanData`) rank ``rank`` shows at each step.

    The global stream is an endless sequence of permutations of ``range(n)``
    (permutation ``e`` seeded by ``(seed, e)``); step ``s`` takes global batch
    ``[s·B, (s+1)·B)`` of it and rank ``r`` the ``r``-th of its ``world`` slices.
    """

    def __init__(self, n: int, batch: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if n < 1:
            raise ValueError("RealSampler needs at least one image")
        if batch % world_size:
            raise ValueError(f"batch {batch} is not divisible by {world_size} processes")
        self.n, self.batch, self.seed, self.rank, self.world_size = n, batch, seed, rank, world_size
        self.per_rank = batch // world_size
        self._perms: OrderedDict[int, np.ndarray] = OrderedDict()

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms[epoch] = np.random.default_rng([self.seed, _PERM_SALT, epoch]).permutation(self.n)
            while len(self._perms) > 4:
                self._perms.popitem(last=False)
        return self._perms[epoch]

    def positions(self, step: int) -> np.ndarray:
        """This rank's ``batch / world`` positions at ``step``."""
        start = step * self.batch + self.rank * self.per_rank
        g = np.arange(start, start + self.per_rank, dtype=np.int64)
        epochs, offsets = np.divmod(g, self.n)
        return np.array([self._perm(int(e))[o] for e, o in zip(epochs, offsets)], dtype=np.int64)


class RealStream:
    """Endless ``(uint8 B×S×S images, int64 positions)`` for steps ``start_step, start_step + 1, …``.

    ``num_workers`` 0: one reader thread (:func:`reid_core.data.prefetch.thread_prefetch`), ``depth``
    batches ahead; more: DataLoader worker processes, chunks of ``CHUNK_STEPS`` batches at a time.
    :meth:`close` stops and joins the reader (a daemon thread still reading
    while the interpreter exits can abort it), so call it, or use ``with``.
    """

    def __init__(self, data: GanData, sampler: RealSampler, start_step: int, num_workers: int = 0,
                 pin_memory: bool = False, depth: int = 4) -> None:
        self.data, self.sampler, self.num_workers, self.pin_memory = data, sampler, num_workers, pin_memory
        self._labels = np.arange(len(data), dtype=np.int64)  # "labels" = positions, to look up conditions
        self._threaded = num_workers == 0
        self._loader: Iterator[tuple[Tensor, Tensor]] = (
            thread_prefetch(self._steps(start_step), depth) if self._threaded else self._chunks(start_step))

    def _dataset(self, step: int, count: int) -> BatchDataset:
        batches = [self.sampler.positions(s) for s in range(step, step + count)]
        return BatchDataset(self.data.store_path, self.data.rows, self._labels, batches)

    def _steps(self, step: int) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield self._dataset(step, 1)[0]
            step += 1

    def _chunks(self, step: int) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield from iterate_batches(self._dataset(step, CHUNK_STEPS), self.num_workers, self.pin_memory)
            step += CHUNK_STEPS

    def __iter__(self) -> RealStream:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        images, positions = next(self._loader)
        return (images.pin_memory() if self.pin_memory and self._threaded else images), positions

    def close(self) -> None:
        """Stop the reader and wait for it."""
        self._loader.close()  # type: ignore[attr-defined]

    def __enter__(self) -> RealStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def to_model_images(images: Tensor, device: torch.device, resolution: int, channels_last: bool) -> Tensor:
    """uint8 B×S×S → float B×1×R×R in [-1, 1] on ``device`` (antialiased resize when S > R)."""
    x = to_device_float(images, device, resolution, channels_last=False).mul_(2.0).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

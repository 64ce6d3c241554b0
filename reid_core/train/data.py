"""Training data: which store rows train and validate, and batches read from the memory-mapped store.

:func:`load_training_data` checks the manifest first and refuses, with the
reason, to train on data that cannot teach identity (no images, one patient, no
patient with two train images). Batches are read as uint8 (4× less to move than
float) by whole-batch fancy indexing of the memmap, in DataLoader worker
processes (``num_workers`` > 0) or a background thread (``num_workers`` = 0),
so reading overlaps the training step; the conversion to float in [0, 1] and
any resize happen on the training device.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from reid_core.data.manifest import NO_FINDING, load_manifest
from reid_core.data.store import ImageStore
from reid_core.errors import TrainingError, WorkspaceError
from reid_core.workspace import Workspace
from reid_core.data.prefetch import thread_prefetch

log = logging.getLogger(__name__)

FALLBACK_VAL_PATIENTS = 200


@dataclass
class TrainingData:
    """Store rows and integer patient labels of the train and validation sets."""

    store_path: Path
    store_size: int
    image_size: int
    train_rows: np.ndarray
    train_labels: np.ndarray
    val_rows: np.ndarray
    val_labels: np.ndarray
    val_source: str  # "val" or "train_subset"
    n_train_patients: int


def _choose_store(workspace: Workspace, image_size: int | None) -> tuple[Path, int, int]:
    """(store path, store size, training size): the exact size, else the next larger store (resized on device)."""
    sizes = workspace.image_sizes()
    if not sizes:
        raise WorkspaceError(f"{workspace.root} has no prepared images; run "
                             f"`cxr-reid prepare --workspace {workspace.root} ...` first")
    if image_size is None:
        return workspace.images_path(sizes[-1]), sizes[-1], sizes[-1]
    if image_size in sizes:
        return workspace.images_path(image_size), image_size, image_size
    larger = [s for s in sizes if s > image_size]
    if not larger:
        raise WorkspaceError(f"image_size {image_size} px is larger than every prepared store {sizes} of "
                             f"{workspace.root}; run `cxr-reid prepare --size {image_size}` or pick a smaller size")
    log.info("no %d px store; resizing the %d px store on the fly", image_size, larger[0])
    return workspace.images_path(larger[0]), larger[0], image_size


def _store_rows(manifest: pd.DataFrame, n_store: int, path: Path) -> np.ndarray:
    if "cache_row" in manifest.columns:
        return manifest["cache_row"].to_numpy(dtype=np.int64)
    if len(manifest) != n_store:
        raise WorkspaceError(f"manifest has {len(manifest)} rows but {path} has {n_store} and the manifest "
                             "has no cache_row column; re-run `cxr-reid prepare`")
    return np.arange(n_store, dtype=np.int64)


def check_trainable(manifest: pd.DataFrame) -> pd.DataFrame:
    """The train-split rows of patients with ≥ 2 train images; TrainingError saying why if too few."""
    if manifest.empty:
        raise TrainingError("the manifest has no images: nothing to train on")
    n_patients = manifest["patient_id"].nunique()
    if n_patients < 2:
        raise TrainingError(f"the manifest holds a single patient ({len(manifest)} images): an identity "
                            "embedding learns to tell patients apart and needs at least 2 patients with "
                            "at least 2 images each")
    train = manifest[manifest["split"] == "train"]
    counts = train["patient_id"].value_counts()
    eligible = counts[counts >= 2].index
    if len(eligible) == 0:
        raise TrainingError(f"no patient of the train split has 2 or more images ({len(train)} train images "
                            f"of {train['patient_id'].nunique()} patients): metric learning needs at least "
                            "two images of a patient to form a positive pair")
    if len(eligible) < 2:
        raise TrainingError(f"only one train patient has 2 or more images ({eligible[0]!r}): training needs "
                            "at least 2 such patients (a batch needs negatives as well as positives)")
    return train[train["patient_id"].isin(eligible)]


def _labels(patients: pd.Series) -> np.ndarray:
    return pd.factorize(patients, sort=True)[0].astype(np.int64)


def load_training_data(workspace: Workspace, image_size: int | None, seed: int,
                       val_max_patients: int | None = None, normal_only: bool = False) -> TrainingData:
    """Check the workspace's manifest and pick the train and validation rows (see :func:`check_trainable`).

    Validation uses the val split's patients with ≥ 2 images (at most
    ``val_max_patients`` of them, chosen by ``seed``); when it has fewer than 2
    such patients a subset of train patients is used instead, with a warning.
    ``normal_only`` keeps only the train images labelled ``No Finding``.
    """
    if not workspace.manifest_path.exists():
        raise WorkspaceError(f"{workspace.root} has no manifest.parquet; build the workspace first with "
                             f"`cxr-reid prepare --workspace {workspace.root} ...`")
    manifest = load_manifest(workspace.manifest_path)
    if normal_only:
        try:
            train = check_trainable(manifest[(manifest["split"] != "train") | (manifest["findings"] == NO_FINDING)])
        except TrainingError as exc:
            raise TrainingError(f"train_findings=normal counts only the train images labelled {NO_FINDING!r}: "
                                f"{exc}") from exc
    else:
        train = check_trainable(manifest)
    store_path, store_size, size = _choose_store(workspace, image_size)
    store = ImageStore(store_path, manifest)
    rows = _store_rows(manifest, len(store), store_path)
    manifest = manifest.assign(_store_row=rows)
    train = manifest.loc[train.index]
    val = manifest[manifest["split"] == "val"]
    counts = val["patient_id"].value_counts()
    val = val[val["patient_id"].isin(counts[counts >= 2].index)]
    source = "val"
    if val["patient_id"].nunique() < 2:
        log.warning("the val split has fewer than 2 patients with 2+ images; validating on a subset of the "
                    "TRAIN patients instead (optimistic: these identities are trained on)")
        val, source = train, "train_subset"
        val_max_patients = min(val_max_patients or FALLBACK_VAL_PATIENTS, FALLBACK_VAL_PATIENTS)
    if val_max_patients is not None:
        patients = np.sort(val["patient_id"].unique())
        if len(patients) > val_max_patients:
            keep = np.random.default_rng([seed, 0x7A1]).choice(patients, val_max_patients, replace=False)
            val = val[val["patient_id"].isin(keep)]
    return TrainingData(
        store_path=store_path, store_size=store_size, image_size=size,
        train_rows=train["_store_row"].to_numpy(np.int64), train_labels=_labels(train["patient_id"]),
        val_rows=val["_store_row"].to_numpy(np.int64), val_labels=_labels(val["patient_id"]),
        val_source=source, n_train_patients=int(train["patient_id"].nunique()))


# --------------------------------------------------------------------------- batches

class BatchDataset(Dataset):
    """Item ``i`` is batch ``i``: (uint8 B×S×S images, int64 labels). Opens the memmap lazily per process."""

    def __init__(self, store_path: Path, rows: np.ndarray, labels: np.ndarray,
                 batches: Sequence[np.ndarray]) -> None:
        self.store_path, self.rows, self.labels, self.batches = Path(store_path), rows, labels, list(batches)
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if self._array is None:
            self._array = np.load(self.store_path, mmap_mode="r")
        positions = self.batches[i]
        rows = self.rows[positions]
        uniq, inverse = np.unique(rows, return_inverse=True)  # sorted reads are kinder to the page cache
        images = np.asarray(self._array[uniq])[inverse]
        return torch.from_numpy(images), torch.from_numpy(self.labels[positions])

    def __getstate__(self) -> dict:  # never pickle a memmap into a worker
        return {**self.__dict__, "_array": None}


def iterate_batches(dataset: BatchDataset, num_workers: int, pin_memory: bool = False,
                    prefetch: int = 4) -> Iterator[tuple[Tensor, Tensor]]:
    """The dataset's batches in order, read ahead by workers (or a thread when ``num_workers`` is 0)."""
    if num_workers == 0:
        for images, labels in thread_prefetch(dataset, prefetch):
            yield (images.pin_memory(), labels) if pin_memory else (images, labels)
        return
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                        pin_memory=pin_memory, prefetch_factor=max(1, prefetch // num_workers + 1))
    yield from loader


def to_device_float(images: Tensor, device: torch.device, size: int,
                    channels_last: bool) -> Tensor:
    """uint8 B×S×S → float B×1×size×size in [0, 1] on ``device`` (antialiased resize when S ≠ size)."""
    x = images.to(device, non_blocking=True)[:, None].float().div_(255.0)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

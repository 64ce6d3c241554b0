"""Validation: embed a held-out set without augmentation and score leave-one-out retrieval (mAP@R, P@1)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from reid_core.device import autocast_context
from reid_core.metrics import retrieval_metrics
from reid_core.train.data import BatchDataset, iterate_batches, to_device_float


@torch.no_grad()
def embed_rows(model: nn.Module, store_path: Path, rows: np.ndarray, *, size: int, device: torch.device,
               batch_size: int = 128, amp: bool = True, channels_last: bool = True,
               num_workers: int = 0) -> np.ndarray:
    """float32 N×D embeddings of store ``rows`` (in order), in eval mode; the training flag is restored."""
    positions = np.arange(len(rows))
    batches = [positions[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    dataset = BatchDataset(store_path, rows, np.zeros(len(rows), np.int64), batches)
    was_training = model.training
    model.eval()
    out = []
    try:
        for images, _ in iterate_batches(dataset, num_workers, pin_memory=device.type == "cuda"):
            x = to_device_float(images, device, size, channels_last)
            with autocast_context(device, amp):
                out.append(model(x).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def validate(model: nn.Module, store_path: Path, rows: np.ndarray, labels: np.ndarray, *, size: int,
             device: torch.device, batch_size: int = 128, amp: bool = True, channels_last: bool = True,
             num_workers: int = 0) -> dict[str, float]:
    """Retrieval metrics (``map_at_r``, ``precision_at_1``, …) of the embedded rows."""
    emb = embed_rows(model, store_path, rows, size=size, device=device, batch_size=batch_size, amp=amp,
                     channels_last=channels_last, num_workers=num_workers)
    return retrieval_metrics(emb, labels, ks=(1, 5))

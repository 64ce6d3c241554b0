"""A tiny synthetic re-identification workspace for the training tests (no pytest import).

Every patient is three Gaussian blobs at patient-specific places and heights;
each of its images shifts them a little, adds a random distractor blob, a random
gain/offset and pixel noise. An untrained network matches images near chance;
a few dozen steps of metric learning lift P@1 well above it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

import reid_core  # noqa: F401  (before timm)
from reid_core.data.manifest import finalize_manifest, save_manifest
from reid_core.model import EmbedderConfig
from reid_core.train.config import TrainConfig
from reid_core.workspace import Workspace


def blob_image(rng: np.random.Generator, centers: np.ndarray, amps: np.ndarray, size: int,
               noise: float, shift: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    d = rng.uniform(-shift, shift, 2)
    img = sum(a * np.exp(-((xx - c[0] - d[0]) ** 2 + (yy - c[1] - d[1]) ** 2) / 0.006) for c, a in zip(centers, amps))
    x = rng.uniform(0.1, 0.9, 2)
    img = img + rng.uniform(0.3, 0.8) * np.exp(-((xx - x[0]) ** 2 + (yy - x[1]) ** 2) / 0.006)
    img = rng.uniform(0.5, 0.9) * img + rng.uniform(0, 0.2) + rng.normal(0, noise, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_workspace(root: Path, n_patients: int = 48, per_patient: int | list[int] = 4, size: int = 32,
                   seed: int = 0, val_every_nth: int | None = 4, noise: float = 0.08,
                   shift: float = 0.05) -> Workspace:
    """Manifest (every ``val_every_nth`` patient in val, the rest train) + a complete ``images_<size>.npy``."""
    rng = np.random.default_rng(seed)
    counts = per_patient if isinstance(per_patient, list) else [per_patient] * n_patients
    rows, images = [], []
    for p, n in enumerate(counts):
        centers, amps = rng.uniform(0.25, 0.75, (3, 2)), rng.uniform(0.5, 1.0, 3)
        split = "val" if val_every_nth and p % val_every_nth == val_every_nth - 1 else "train"
        for k in range(n):
            images.append(blob_image(rng, centers, amps, size, noise, shift))
            rows.append({"image_id": f"p{p}_{k}", "path": f"p{p}/{k}.png", "patient_id": f"P{p:03d}",
                         "study_order": k, "split": split, "cache_row": len(rows)})
    ws = Workspace(root)
    ws.create(dataset="synthetic")
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["image_id", "path", "patient_id", "split",
                                                                  "cache_row"])
    manifest = finalize_manifest(frame, dataset="synthetic")
    manifest["cache_row"] = manifest["cache_row"].astype("int64")
    save_manifest(manifest, ws.manifest_path)
    stack = np.stack(images) if images else np.zeros((0, size, size), np.uint8)
    np.save(ws.images_path(size), stack)
    ws.images_path(size).with_suffix(".state.json").write_text(json.dumps({"complete": True}))
    return ws


def tiny_config(**overrides) -> TrainConfig:
    """resnet10t, 16-d embedding, 16-image batches, a handful of steps, no worker processes."""
    base = dict(model=EmbedderConfig(backbone="resnet10t", embedding_dim=16), batch_size=16, m_per_patient=4,
                max_steps=4, val_every=1000, warmup_steps=2, lr=2e-3, num_workers=0, log_every=2,
                early_stop_patience=None)
    base.update(overrides)
    return TrainConfig(**base)

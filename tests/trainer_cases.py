"""Tiny workspaces and configs of the generator trainers, and one resume case per trainer (no pytest import).

:data:`RESUME_CASES` drives ``tests/test_run_loop.py``'s exact-resume test: each
case builds a workspace, runs its trainer through the shared run loop (straight,
or sliced and resumed) and names its resume folder and log event.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import reid_core  # noqa: F401  (before timm)
from gan.cae.config import CaeArch, CaeTrainConfig
from gan.train_config import GanTrainConfig
from reid_core.checkpoint import save_embedder
from reid_core.data.manifest import load_manifest
from reid_core.embed import EmbeddingTable
from reid_core.model import Embedder, EmbedderConfig
from reid_core.workspace import Workspace
from train_fixtures import make_workspace, tiny_config

C_DIM = 8
TINY_ARCH = CaeArch(n_dim=4, w_dim=32, g_channel_base=256, g_channel_max=32, e_channel_base=128, e_channel_max=32,
                    d_channel_base=128, d_channel_max=32)


def _save_embeddings(ws: Workspace, dim: int, unit: bool) -> None:
    ids = load_manifest(ws.manifest_path)["image_id"]
    emb = np.random.default_rng(0).normal(size=(len(ids), dim)).astype(np.float32)
    EmbeddingTable(emb / np.linalg.norm(emb, axis=1, keepdims=True) if unit else emb, ids).save(ws.embeddings_path)


def gan_workspace(root: Path, embeddings: bool = True) -> Workspace:
    """12 images (6 patients × 2) in a 32 px store; random 8-d 'identity embeddings' for all of them."""
    ws = make_workspace(root, n_patients=6, per_patient=2, size=32)
    if embeddings:
        _save_embeddings(ws, C_DIM, unit=False)
    return ws


def gan_config(**overrides: Any) -> GanTrainConfig:
    """tiny preset at 16 px (resized from the 32 px store), batch 4 (4 steps = 0.016 kimg), every phase often."""
    base = dict(preset="tiny", res=16, batch=4, kimg=0.024, tick_kimg=0.008, snapshot_kimg=0.016, r1_interval=2,
                pl_weight=1.0, pl_interval=3, ada_interval=2, ada_kimg=0.05, ema_kimg=0.01, cond_ramp_kimg=0.02,
                grid_rows=3, grid_cols=4, device="cpu")
    base.update(overrides)
    return GanTrainConfig(**base)


def cae_workspace(root: Path) -> Workspace:
    """24 images (8 patients × 3) in a 32 px store, a random 16 px embedder and unit 8-d embeddings."""
    ws = make_workspace(root, n_patients=8, per_patient=3, size=32)
    torch.manual_seed(0)
    save_embedder(ws.embedder_dir, Embedder(backbone="resnet10t", embedding_dim=8, image_size=16))
    _save_embeddings(ws, 8, unit=True)
    return ws


def cae_config(**overrides: Any) -> CaeTrainConfig:
    """16 px, batch 8 (3 steps = 0.024 kimg), every loss term switched on within the first steps."""
    base = dict(res=16, batch=8, kimg=0.048, tick_kimg=0.016, snapshot_kimg=0.024, adv_start_kimg=0.016,
                adv_ramp_kimg=0.0, feat_start_kimg=0.008, feat_ramp_kimg=0.016, r1_interval=2, ema_kimg=0.01,
                grid_rows=3, device="cpu", arch=TINY_ARCH)
    base.update(overrides)
    return CaeTrainConfig(**base)


def as_written_before_typed_arch(ws: Workspace) -> None:
    """Rewrite a GAN resume state's config as runs wrote it when ``arch`` was a dict of only the set overrides."""
    state_json = ws.gan_dir / "resume" / "state.json"
    record = json.loads(state_json.read_text())
    config = dict(record["meta"]["state"]["__dict__"])["config"]["__dict__"]
    arch = next(pair for pair in config if pair[0] == "arch")
    assert all(v is None for _, v in arch[1]["__dict__"])  # gan_config() sets no override
    arch[1] = {"__dict__": []}
    state_json.write_text(json.dumps(record))


@dataclass(frozen=True)
class ResumeCase:
    """One trainer on its tiny workspace: ``train(ws, stop_after, resume)`` returns the trainer's result
    (with ``steps``, ``finished``, ``resumed_from``); ``stop_after`` is in the trainer's budget unit."""

    workspace: Callable[[Path], Workspace]
    train: Callable[[Workspace, Any], Any]
    run_dir: Callable[[Workspace], Path]
    stop_after: float
    steps: int
    log_event: str
    logged_steps: list[int]
    between: Callable[[Workspace], None] = field(default=lambda ws: None)


def _embedder_case(**overrides: Any) -> ResumeCase:
    from reid_core.train import train_embedder

    cfg = tiny_config(max_steps=6, **overrides)
    return ResumeCase(lambda root: make_workspace(root, n_patients=16),
                      lambda ws, stop: train_embedder(ws, cfg, progress=False, stop_after_steps=stop),
                      lambda ws: ws.embedder_dir, 3, 6, "train", [2, 3, 4, 6])


def _gan_case() -> ResumeCase:
    from gan.train import train_gan

    cfg = gan_config(kimg=0.028)  # 7 steps: R1 on even steps, path length every 3rd, ADA every 2nd
    return ResumeCase(gan_workspace, lambda ws, stop: train_gan(ws, cfg, progress=False, stop_after_kimg=stop),
                      lambda ws: ws.gan_dir, 0.012, 7, "tick", [2, 3, 4, 6, 7],  # stops after step 3, mid-interval
                      between=as_written_before_typed_arch)  # and an old run's state resumes too


def _cae_case() -> ResumeCase:
    from gan.cae.train import train_cae

    cfg = cae_config()
    return ResumeCase(cae_workspace, lambda ws, stop: train_cae(ws, cfg, progress=False, stop_after_kimg=stop),
                      lambda ws: ws.gan_dir, 0.024, 6, "tick", [2, 3, 4, 6])


def _embedder_with_memory_case() -> ResumeCase:
    """Cross-batch memory, gradient accumulation, dropout and drop-path (global RNG), worker processes."""
    model = EmbedderConfig(backbone="resnet10t", embedding_dim=16, dropout=0.2, drop_path_rate=0.1)
    return _embedder_case(loss="contrastive_xbm", grad_accum=2, model=model, val_every=2, num_workers=2)


def _embedder_with_proxies_case() -> ResumeCase:
    """A proxy loss: its class proxies train in their own optimizer group and travel with the resume state."""
    return _embedder_case(loss="proxy_anchor", val_every=2)


RESUME_CASES: dict[str, Callable[[], ResumeCase]] = {
    "embedder": _embedder_case, "embedder-memory-accum": _embedder_with_memory_case,
    "embedder-proxies": _embedder_with_proxies_case, "gan": _gan_case, "autoencoder": _cae_case}

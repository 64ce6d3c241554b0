"""Embedder training throughput: ``train_embedder`` vs the bare step on preloaded tensors (CPU or CUDA).

A phantom workspace is prepared in a temporary folder; then, side by side:

* ``train_embedder`` with ``max_steps`` (the real loop: sampler, DataLoader
  workers reading the memmap, augmentation, forward/backward, AdamW). Its
  ``train_log.jsonl`` gives ``images_per_sec`` and ``data_wait_frac`` per log
  window; the first window (worker start-up, first-step allocations) is left
  out of the medians.
* the bare step on the same batches preloaded as float tensors: forward, loss
  (+ miner), backward, AdamW — with and without the batched augmentation, steps
  alternating, half before and half after the loop (so both see the same load).

``ratio_loop_vs_step_with_aug`` near 1 and a small ``data_wait_frac`` say data
loading is not the bottleneck. CPU: EfficientNet-B3 at 128 px; ``--device cuda``:
at 256 px, batch 128, bf16 autocast + channels_last as the loop runs it, the
loop's ``data_wait_frac`` being the GPU's idle share waiting for batches.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import prepared_phantom, ratio
from reid_core.device import autocast_context, synchronize
from reid_core.model import EmbedderConfig
from reid_core.train import TrainConfig, train_embedder
from reid_core.train.augment import augment_batch
from reid_core.train.data import load_training_data
from reid_core.train.losses import build_objective
from reid_core.train.optim import build_optimizer
from reid_core.train.runlog import read_jsonl
from reid_core.train.sampler import PatientBatchSampler


class BareStep:
    """Forward + loss + backward + AdamW on preloaded batches (optionally augmented first)."""

    def __init__(self, cfg: TrainConfig, batches: list[tuple[torch.Tensor, torch.Tensor]],
                 device: torch.device) -> None:
        from reid_core.model import Embedder

        torch.manual_seed(cfg.seed)
        self.cfg, self.device = cfg, device
        self.batches = [(x.to(device), y.to(device)) for x, y in batches]
        self.model = Embedder(cfg.model).train().to(device)
        self.model.to_channels_last()
        self.objective = build_objective(cfg)
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay)
        self.gen = torch.Generator(device).manual_seed(cfg.seed)
        self.i = 0

    def __call__(self, augment: bool) -> float:
        """One step on the next batch; returns its wall seconds."""
        x, labels = self.batches[self.i % len(self.batches)]
        self.i += 1
        t0 = time.perf_counter()
        if augment:
            x = augment_batch(x, self.cfg.augment, self.gen)
        x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_context(self.device, self.cfg.amp):
            loss = self.objective(self.model(x), labels)
        loss.backward()
        self.optimizer.step()
        synchronize(self.device)
        return time.perf_counter() - t0


def _preloaded(ws, cfg: TrainConfig, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` batches of epoch 0, as the loop would draw them, as float B×1×S×S tensors."""
    data = load_training_data(ws, cfg.image_size, cfg.seed)
    store = np.load(data.store_path, mmap_mode="r")
    sampler = PatientBatchSampler(data.train_labels, cfg.m_per_patient, cfg.batch_size, cfg.seed)
    out = []
    for pos in sampler.epoch_batches(0)[:n]:
        x = torch.from_numpy(np.asarray(store[data.train_rows[pos]]))[:, None].float().div_(255.0)
        out.append((x, torch.from_numpy(data.train_labels[pos])))
    return out


def _bare_steps(step: BareStep, pairs: int, times: dict[str, list[float]]) -> None:
    for _ in range(pairs):
        times["with_aug"].append(step(True))
        times["no_aug"].append(step(False))


def run(quick: bool = False, device: str = "cpu") -> dict:
    """Loop and bare-step images/s: EfficientNet-B3, 128 px, batch 32, 12 loop steps, 6 bare steps of each kind.

    Sized to stay near 10 minutes on the shared 2-core machine (``quick``:
    resnet10t at 64 px, batch 8, 4 steps; CUDA: 256 px, batch 128, 120 loop
    steps in windows of 20, 20 bare steps of each kind, 4 data workers).
    """
    dev = torch.device(device)
    workers = 2
    if quick:
        backbone, size, patients, batch, steps, log_every, pairs = "resnet10t", 64, 12, 8, 4, 2, 1
    elif dev.type == "cuda":
        backbone, size, patients, batch, steps, log_every, pairs = "efficientnet_b3", 256, 1500, 128, 120, 20, 10
        workers = 4
    else:
        backbone, size, patients, batch, steps, log_every, pairs = "efficientnet_b3", 128, 160, 32, 12, 3, 3
    cfg = TrainConfig(model=EmbedderConfig(backbone=backbone, image_size=size), batch_size=batch,
                      m_per_patient=4, max_steps=steps, warmup_steps=2, val_every=10**6,
                      val_max_patients=4, early_stop_patience=None, log_every=log_every, device=dev.type,
                      image_size=size, num_workers=workers)
    with tempfile.TemporaryDirectory() as tmp:
        ws = prepared_phantom(Path(tmp) / "ws", patients, size, workers=os.cpu_count() or 2)
        step = BareStep(cfg, _preloaded(ws, cfg, 2 * pairs + 1), dev)
        for _ in range(1 if dev.type == "cpu" else 3):  # warm-up (CUDA: cuDNN autotuning too)
            step(True)
        times: dict[str, list[float]] = {"with_aug": [], "no_aug": []}
        _bare_steps(step, pairs, times)
        result = train_embedder(ws, cfg, resume=False, progress=False)
        _bare_steps(step, pairs, times)
        log = [r for r in read_jsonl(ws.embedder_dir / "train_log.jsonl") if r.get("event") == "train"]
    windows = log[1:] or log
    loop = statistics.median(r["images_per_sec"] for r in windows)
    with_aug, no_aug = batch / statistics.median(times["with_aug"]), batch / statistics.median(times["no_aug"])
    return {"backbone": backbone, "size": size, "device": str(dev), "batch_size": batch, "num_workers": cfg.num_workers,
            "loop_steps": result.steps, "log_windows_used": len(windows), "torch_threads": torch.get_num_threads(),
            "loop_img_per_s": round(loop, 2), "loop_img_per_s_overall": result.images_per_sec,
            "data_wait_frac_median": round(statistics.median(r["data_wait_frac"] for r in windows), 4),
            "data_wait_frac_max": round(max(r["data_wait_frac"] for r in windows), 4),
            "bare_step_with_aug_img_per_s": round(with_aug, 2), "bare_step_no_aug_img_per_s": round(no_aug, 2),
            "bare_steps_each": len(times["no_aug"]),
            "ratio_loop_vs_step_with_aug": ratio(loop, with_aug), "ratio_loop_vs_step_no_aug": ratio(loop, no_aug)}

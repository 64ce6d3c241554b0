"""Embedding pipeline: ``embed_workspace`` end to end vs the model alone on preloaded tensors.

A phantom workspace is prepared in a temporary folder (``cxr-reid prepare
--dataset phantom``) and given an untrained embedder (throughput does not
depend on the weights). Side by side, interleaved and repeated (medians):

* ``end_to_end`` — :func:`reid_core.embed.embed_workspace` with ``force=True``,
  what ``cxr-reid embed`` runs: load the checkpoint, read the memory-mapped
  store in a background thread, uint8 → float, model, write ``embeddings.npz``
  and ``index.faiss``;
* ``model_only`` — the same model (eval, channels_last, no_grad; bf16 autocast
  on CUDA, as ``embed_array`` runs it) on the same images already on the device
  as float tensors, in the same batches.

Goals (issue 7): ``end_to_end / model_only`` images/s ≥ 0.9 with EfficientNet-B3
at 256 px on CPU; on a GPU (``--device cuda``: ~11,000 images, batch 256) ≥ 5000
images/s and the same ratio.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from benchmarks.common import interleaved_medians, prepared_phantom, ratio
from reid_core.checkpoint import load_embedder, save_embedder
from reid_core.data.manifest import load_manifest
from reid_core.data.store import ImageStore
from reid_core.device import autocast_context, synchronize
from reid_core.embed import embed_workspace
from reid_core.model import Embedder


def _preloaded_batches(store: ImageStore, rows, batch_size: int, device: torch.device) -> list[torch.Tensor]:
    """The store's images as float B×1×S×S tensors in [0, 1] on ``device``, channels_last (the model's input)."""
    out = []
    for i in range(0, len(rows), batch_size):
        x = torch.from_numpy(store[rows[i:i + batch_size]])[:, None].to(device).float().div_(255.0)
        out.append(x.contiguous(memory_format=torch.channels_last))
    return out


def run(quick: bool = False, backbone: str | None = None, size: int | None = None, device: str = "cpu") -> dict:
    """images/s of both paths and their ratio (``quick``: resnet10t at 64 px on ~20 images, one repeat)."""
    dev = torch.device(device)
    if quick:
        backbone, size, patients, batch, repeats = backbone or "resnet10t", size or 64, 6, 8, 1
    elif dev.type == "cuda":
        backbone, size, patients, batch, repeats = backbone or "efficientnet_b3", size or 256, 3000, 256, 3
    else:
        backbone, size, patients, batch, repeats = backbone or "efficientnet_b3", size or 256, 55, 64, 3
    with tempfile.TemporaryDirectory() as tmp:
        ws = prepared_phantom(Path(tmp) / "ws", patients, size, workers=os.cpu_count() or 2)
        torch.manual_seed(0)
        save_embedder(ws.embedder_dir, Embedder(backbone=backbone, image_size=size))
        manifest = load_manifest(ws.manifest_path)
        store = ImageStore(ws.images_path(size), manifest)
        batches = _preloaded_batches(store, manifest["cache_row"].to_numpy(), batch, dev)
        n = len(manifest)
        model = load_embedder(ws.embedder_dir).eval().to(dev, memory_format=torch.channels_last)

        @torch.no_grad()
        def model_only() -> None:
            with autocast_context(dev, amp=True):
                for x in batches:
                    model(x)
            synchronize(dev)

        def end_to_end() -> None:
            embed_workspace(ws, batch_size=batch, device=str(dev), size=size, force=True, progress=False)

        model_only_warmup = batches[:1] if dev.type == "cpu" else batches[:3]  # CUDA: cuDNN autotuning too
        with torch.no_grad(), autocast_context(dev, amp=True):  # warm-up without a whole extra pass
            for x in model_only_warmup:
                model(x)
        synchronize(dev)
        t = interleaved_medians({"end_to_end": end_to_end, "model_only": model_only}, repeats, warmup=0)
    e2e, only = n / t["end_to_end"], n / t["model_only"]
    return {"backbone": backbone, "size": size, "device": str(dev), "images": n, "batch_size": batch,
            "repeats": repeats, "torch_threads": torch.get_num_threads(), "end_to_end_img_per_s": round(e2e, 2),
            "model_only_img_per_s": round(only, 2), "ratio_end_to_end_vs_model": ratio(e2e, only),
            "goal": "ratio >= 0.9" + (", model_only >= 5000 img/s" if dev.type == "cuda" else "")}

"""Shipping a trained embedder: compact weights + a model card, into ``checkpoints/embedder``.

:func:`ship_embedder` takes an evaluated workspace (``embedder/``,
``report.json``), stores the weights in float16 when that keeps quality
(the written file is reloaded and checked on the workspace's test images:
retrieval P@1 unchanged and the largest embedding difference below
``FP16_MAX_ABS_DIFF``; float32 otherwise),
and writes ``MODEL_CARD.md`` plus ``card.json`` (the same facts, for programs).
"""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reid_core import artefact_names as names
from reid_core.checkpoint import load_embedder, save_embedder
from reid_core.errors import WorkspaceError
from reid_core.workspace import Workspace

FP16_MAX_ABS_DIFF = 5e-3
NOT_A_DEVICE = ("Research use only. Not a medical device: not for diagnosis, treatment or any clinical "
                "decision, and not for identifying real people.")


@dataclass
class ShipResult:
    """Where the checkpoint went, its stored precision and the fp16 check's numbers."""

    out: Path
    dtype: str
    fp16_max_abs_diff: float
    p_at_1_fp32: float
    p_at_1_stored: float


def ship_embedder(workspace: str | Path | Workspace, out: str | Path, *, hardware: str | None = None,
                  notes: str = "") -> ShipResult:
    """Export ``workspace``'s embedder to ``out`` with ``MODEL_CARD.md``; see the module docstring."""
    from reid_core.data.manifest import load_manifest
    from reid_core.data.store import ImageStore
    from reid_core.embed import embed_array, store_size_for
    from reid_core.metrics import retrieval_metrics

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    for need, command in ((ws.embedder_weights_path, "cxr-reid train"),
                          (ws.report_path, "cxr-reid embed, then cxr-reid evaluate")):
        if not need.exists():
            raise WorkspaceError(f"{need} is missing; run `{command} --workspace {ws.root}` first")
    out = Path(out)
    model = load_embedder(ws.embedder_dir)
    manifest = load_manifest(ws.manifest_path)
    test = manifest[manifest["split"] == "test"]
    store = ImageStore(ws.images_path(store_size_for(ws, model.config.image_size)), manifest)
    rows, pids = test["cache_row"].to_numpy(), test["patient_id"].astype(str).to_numpy()
    full = embed_array(model, store, rows, device="cpu", progress=False)
    p1_full = retrieval_metrics(full, pids)["precision_at_1"]
    record = json.loads((ws.embedder_record_path).read_text())["meta"].get("extra", {})
    # write fp16, then check the file itself: reloaded, it must embed the test images as float32 does
    save_embedder(out, model, record, dtype=torch.float16)
    cast = embed_array(load_embedder(out), store, rows, device="cpu", progress=False)
    p1_cast = retrieval_metrics(cast, pids)["precision_at_1"]
    diff = float(np.abs(full - cast).max())
    use_fp16 = diff <= FP16_MAX_ABS_DIFF and p1_cast >= p1_full
    if not use_fp16:
        save_embedder(out, model, record)
    result = ShipResult(out, "float16" if use_fp16 else "float32", diff, p1_full, p1_cast if use_fp16 else p1_full)
    card = embedder_card(ws, model, result, hardware or default_hardware(), notes)
    (out / names.EMBEDDER_CARD).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    (out / "MODEL_CARD.md").write_text(embedder_card_markdown(card))
    return result


def default_hardware() -> str:
    import os

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__.split('+')[0]}"


def embedder_card(ws: Workspace, model: torch.nn.Module, result: ShipResult, hardware: str,
                  notes: str) -> dict[str, Any]:
    """The facts of the model card as plain JSON."""
    report = json.loads(ws.report_path.read_text())
    metrics_path = ws.embedder_metrics_path  # absent where the embedder was installed, not trained
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    info = json.loads(ws.info_path.read_text()) if ws.info_path.exists() else {}
    cfg = json.loads((ws.embedder_record_path).read_text())["meta"]["extra"].get("train_config", {})
    r, v, b = report["retrieval"], report["verification"], report.get("baseline", {})
    return {
        "model": {"backbone": model.config.backbone, "embedding_dim": model.config.embedding_dim,
                  "pooling": model.config.pooling, "image_size": model.config.image_size,
                  "parameters": int(sum(p.numel() for p in model.parameters())),
                  "stored_dtype": result.dtype, "fp16_max_abs_diff": result.fp16_max_abs_diff},
        "data": {"dataset": info.get("dataset"), "options": info.get("options", {}),
                 "n_train_images": metrics.get("n_train_images"), "n_train_patients": metrics.get("n_train_patients"),
                 "n_test_images": report.get("n_test_images"), "n_test_patients": report.get("n_test_patients")},
        "training": {"loss": cfg.get("loss"), "miner": _miner_name(cfg), "lr": cfg.get("lr"),
                     "batch_size": cfg.get("batch_size"), "m_per_patient": cfg.get("m_per_patient"),
                     "epochs": cfg.get("epochs"), "steps": metrics.get("steps"), "best_step": metrics.get("best_step"),
                     "elapsed_s": metrics.get("elapsed_s"), "images_per_sec": metrics.get("images_per_sec"),
                     "hardware": hardware, "train_config": cfg},
        "test": {"precision_at_1": r.get("precision_at_1"), "precision_at_1_ci": [r.get("precision_at_1_ci_low"),
                                                                                  r.get("precision_at_1_ci_high")],
                 "map_at_r": r.get("map_at_r"), "r_precision": r.get("r_precision"),
                 "verification_auc": v.get("auc"), "verification_auc_ci": [v.get("roc_auc_ci_low"),
                                                                           v.get("roc_auc_ci_high")],
                 "f1": v.get("f1"), "sensitivity": v.get("sensitivity"), "specificity": v.get("specificity"),
                 "drift_auc": report.get("longitudinal", {}).get("auc")},
        "baseline": {"method": b.get("method"), "precision_at_1": b.get("retrieval", {}).get("precision_at_1"),
                     "verification_auc": b.get("verification", {}).get("roc_auc")},
        "notes": notes,
    }


def _miner_name(cfg: dict[str, Any]) -> str | None:
    """The miner the run trained with, as its loss kind names it (``miner`` reaches the triplet loss only)."""
    from reid_core.train.config import TrainConfig
    from reid_core.train.loss_kinds import get_loss

    try:
        config = TrainConfig.from_dict(cfg)
    except ValueError:  # a record this version cannot read: report what it says
        return cfg.get("miner")
    kind = get_loss(config.loss)
    return kind.miner_name(kind.params(config))


def _fmt(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def embedder_card_markdown(card: dict[str, Any]) -> str:
    """``MODEL_CARD.md`` text from :func:`embedder_card`'s dict."""
    m, d, t, s, b = card["model"], card["data"], card["training"], card["test"], card["baseline"]
    opts = d.get("options") or {}

    def ci(pair: list) -> str:
        return f"[{_fmt(pair[0])}, {_fmt(pair[1])}]"

    lines = [
        f"# Model card: cxr-reid identity embedder ({m['backbone']}, {m['embedding_dim']}-d, {m['image_size']} px)",
        "", f"**{NOT_A_DEVICE}**", "",
        "## What it is",
        f"A {m['backbone']} backbone (1 input channel, {m['pooling']} pooling) with a linear projection to an "
        f"L2-normalised {m['embedding_dim']}-d identity embedding: radiographs of one person lie close together. "
        f"{m['parameters']:,} parameters, weights stored as {m['stored_dtype']} safetensors "
        f"(largest embedding change from float32 on the test images: {m['fp16_max_abs_diff']:.1e}).", "",
        "## Data",
        f"Phantom chest radiographs generated by `reid_core.data.phantom` (dataset `{d['dataset']}`, "
        f"seed {opts.get('seed')}, {opts.get('patients')} patients): synthetic people with ground-truth identity, "
        f"anatomy, devices and longitudinal findings; no real patient data. Training: {d['n_train_images']} images of "
        f"{d['n_train_patients']} patients; held-out test: {d['n_test_images']} images of {d['n_test_patients']} "
        "patients never seen in training.", "",
        "## Training",
        f"Loss `{t['loss']}` (miner `{t['miner']}`), AdamW lr {t['lr']}, batches of {t['batch_size']} images "
        f"({t['m_per_patient']} per patient), {t['steps']} steps (best validation mAP@R at step {t['best_step']}), "
        f"{_fmt((t['elapsed_s'] or 0) / 60, 1)} min at {_fmt(t['images_per_sec'], 1)} images/s on {t['hardware']}. "
        "The full configuration is in `config.json` (`meta.extra.train_config`) and `card.json`.", "",
        "## Metrics (held-out test patients, Packhäuser et al. protocol)",
        "| metric | this model | pixel baseline |", "|---|---|---|",
        f"| precision@1 | {_fmt(s['precision_at_1'])} (95% CI {ci(s['precision_at_1_ci'])}) | "
        f"{_fmt(b['precision_at_1'])} |",
        f"| mAP@R | {_fmt(s['map_at_r'])} | |",
        f"| R-precision | {_fmt(s['r_precision'])} | |",
        f"| verification ROC AUC | {_fmt(s['verification_auc'])} (95% CI {ci(s['verification_auc_ci'])}) | "
        f"{_fmt(b['verification_auc'])} |",
        f"| verification F1 / sensitivity / specificity at p = 0.5 | {_fmt(s['f1'])} / {_fmt(s['sensitivity'])} / "
        f"{_fmt(s['specificity'])} | |",
        f"| longitudinal drift AUC (abnormal vs still-normal follow-up) | {_fmt(s['drift_auc'])} | |", "",
        f"Baseline: {b['method']}.", "",
        "## Intended use",
        "Exploring what an identity embedding of chest radiographs learns, in the cxr-reid app and library: "
        "retrieval, pair verification, ID audits and longitudinal drift on the phantom; a starting point for "
        "fine-tuning on a real dataset (ChestX-ray14, CheXpert, MIMIC-CXR) under that dataset's licence.", "",
        "## Limits",
        "- Trained on synthetic images only: its numbers on the phantom say nothing about real radiographs; "
        "re-train or fine-tune and re-evaluate before drawing any conclusion on real data.",
        "- Re-identification of radiographs is a privacy risk in itself (Packhäuser et al. 2022): use it to audit "
        "and protect data sets, never to re-identify people.",
        "- Frontal (PA/AP) views only; lateral views, paediatric films and other modalities are out of scope.",
    ]
    if card.get("notes"):
        lines += ["", "## Notes", card["notes"]]
    return "\n".join(lines) + "\n"

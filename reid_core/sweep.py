"""Embedding-dimension sweep: train and evaluate one embedder per dimension, one table.

Each dimension gets a sub-workspace ``<ws>/sweeps/dim<D>/`` whose manifest and
image stores are symbolic links to the parent's (nothing is copied), so each run
is an ordinary, resumable ``train`` → ``embed`` → evaluation. The table lands in
``<ws>/dim_sweep.csv`` and under ``dimension_sweep`` in ``report.json``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from reid_core.atomic import write_text_atomic
from reid_core.data.manifest import load_manifest
from reid_core.embed import EmbeddingTable, embed_workspace
from reid_core.evaluate import evaluate_embeddings
from reid_core.train.config import TrainConfig
from reid_core.workspace import Workspace

log = logging.getLogger(__name__)


def sub_workspace(ws: Workspace, dim: int) -> Workspace:
    """``<ws>/sweeps/dim<D>`` with links to the parent's manifest and image stores."""
    sub = Workspace(ws.root / "sweeps" / f"dim{dim}")
    sub.create(dataset=ws.info().get("dataset"), parent=str(ws.root.resolve()), embedding_dim=dim)
    shared = [ws.manifest_path] + [p for p in ws.root.glob("images_*") if p.is_file()]
    for src in shared:
        link = sub.root / src.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(src.resolve())
    return sub


def dimension_sweep(workspace: Workspace | str | Path, dims: Sequence[int], config: TrainConfig,
                    n_boot: int = 200, progress: bool = True) -> pd.DataFrame:
    """Train + embed + evaluate at each dimension; returns (and saves) the table."""
    from reid_core.train.loop import train_embedder

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    manifest = load_manifest(ws.manifest_path)
    rows = []
    for dim in dims:
        cfg = dataclasses.replace(config, model=dataclasses.replace(config.model, embedding_dim=int(dim)))
        sub = sub_workspace(ws, int(dim))
        log.info("dimension sweep: %d-d embedder in %s", dim, sub.root)
        train_embedder(sub, cfg, resume=True, progress=progress)
        table: EmbeddingTable = embed_workspace(sub, progress=progress)
        emb = table.embeddings[table.rows_for(manifest["image_id"])]
        report, _ = evaluate_embeddings(manifest, emb, n_boot=n_boot)
        r, v = report["retrieval"], report["verification"]
        rows.append({"embedding_dim": int(dim), "precision_at_1": r["precision_at_1"], "map_at_r": r["map_at_r"],
                     "r_precision": r["r_precision"], "verification_auc": v["auc"], "verification_f1": v["f1"]})
    out = pd.DataFrame(rows)
    out.to_csv(ws.root / "dim_sweep.csv", index=False)
    if ws.report_path.exists():
        report = json.loads(ws.report_path.read_text())
        report["dimension_sweep"] = out.to_dict("records")
        write_text_atomic(ws.report_path, json.dumps(report, indent=2, sort_keys=True))
    return out

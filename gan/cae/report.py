"""Evaluate a workspace's autoencoder-trained generator on held-out patients and write ``gan/metrics.json``.

:func:`evaluate_workspace_generator` loads the generator and its encoder, the
conditioning embedder (``embedder/``) and an independent judge (a checkpoint
folder), picks held-out patients of one split, and runs
:func:`gan.cae.evaluate.evaluate_cae` and, on phantom workspaces,
:func:`gan.cae.evaluate.pc_meaning_agreement`. The result goes into
``gan/metrics.json`` under ``autoencoder`` (the app's counterfactual page and
the model card read it).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from gan.cae.evaluate import HeldOut, Judge, evaluate_cae, pc_meaning_agreement, pick_patients
from reid_core.errors import WorkspaceError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
CONDITIONING = "conditioning embedder"


def load_films(workspace: Path, image_ids: list[str], resolution: int) -> tuple[np.ndarray, "pd.DataFrame"]:
    """``(films (N, R, R) in [0, 1], manifest rows)`` of workspace images at ``resolution``."""
    import torch

    from gan.io import resize
    from reid_core.data.manifest import load_manifest
    from reid_core.data.store import ImageStore
    from reid_core.workspace import Workspace

    ws = Workspace(workspace)
    manifest = load_manifest(ws.manifest_path).set_index("image_id", drop=False)
    missing = [i for i in image_ids if i not in manifest.index]
    if missing:
        raise WorkspaceError(f"unknown image id(s) {missing[:5]} in {ws.root}")
    store = ImageStore(ws.images_path(ws.default_image_size()), manifest.reset_index(drop=True))
    rows = manifest.loc[image_ids]
    arr = np.stack([np.asarray(store.array[int(r)]) for r in rows["cache_row"]]).astype(np.float32) / 255.0
    films = resize(torch.from_numpy(arr)[:, None], resolution)[:, 0].clamp(0, 1).numpy()
    return films, rows


def held_out(workspace: Path, split: str, n_patients: int, resolution: int, seed: int = 0) -> HeldOut:
    """Films of up to ``n_patients`` patients (two or more films each) of ``split``, with their embeddings."""
    from reid_core.data.manifest import load_manifest
    from reid_core.embed import EmbeddingTable
    from reid_core.workspace import Workspace

    ws = Workspace(workspace)
    m = load_manifest(ws.manifest_path)
    m = m[m["split"] == split]
    if m.empty:
        raise WorkspaceError(f"{ws.root} has no {split!r} images to evaluate the generator on")
    chosen = pick_patients(m["patient_id"].astype(str).to_numpy(), n_patients, seed)
    m = m[m["patient_id"].astype(str).isin(chosen)]
    ids = m["image_id"].astype(str).tolist()
    films, _ = load_films(ws.root, ids, resolution)
    table = EmbeddingTable.load(ws.embeddings_path)
    cond = table.embeddings[table.rows_for(ids)].astype(np.float32)
    return HeldOut(films, m["patient_id"].astype(str).to_numpy(), cond, np.asarray(ids))


def refuse_judge_in_losses(judge_dir: Path, ensemble: Sequence[str]) -> None:
    """ValueError when the judge's weights are among the recognisers the generator was trained against."""
    from reid_core.checkpoint import weights_sha256

    judge = weights_sha256(judge_dir)
    for member in ensemble:
        if weights_sha256(member) == judge:
            raise ValueError(f"{judge_dir} is the recogniser {member} in this generator's identity loss "
                             "(id_ensemble): it cannot judge it independently; pass another --judge")


def evaluate_workspace_generator(workspace: Path, judge_dir: Path, n_patients: int = 100, split: str = "test",
                                 seed: int = 0) -> tuple[dict[str, Any], Path]:
    """Every figure of :mod:`gan.cae.evaluate` for the workspace's generator; returns ``(metrics, path)``."""
    from gan.cae.io import load_encoder
    from gan.io import load_generator
    from gan.metrics import write_metrics
    from gan.pca import PCA_FILE, load_or_fit_pca
    from reid_core.checkpoint import load_embedder, read_checkpoint_meta
    from reid_core.data.manifest import load_manifest
    from reid_core.embed import EmbeddingTable
    from gan.views import workspace_factors
    from reid_core.workspace import Workspace

    t0 = time.perf_counter()
    ws = Workspace(workspace)
    G, E = load_generator(ws.gan_dir), load_encoder(ws.gan_dir)
    refuse_judge_in_losses(judge_dir, read_checkpoint_meta(ws.gan_dir).get("train", {}).get("id_ensemble", ()))
    judges = [Judge(CONDITIONING, load_embedder(ws.embedder_dir)),
              Judge("independent judge", load_embedder(judge_dir))]
    data = held_out(ws.root, split, n_patients, G.img_resolution, seed)
    other_split = "val" if split != "val" else "test"
    m_other = load_manifest(ws.manifest_path)
    other_rows = m_other[m_other["split"] == other_split]
    if other_rows.empty:
        raise WorkspaceError(f"{ws.root} has no {other_split!r} images for the real-vs-real baseline")
    real_other, _ = load_films(ws.root, other_rows["image_id"].astype(str).tolist(), G.img_resolution)
    metrics = evaluate_cae(G, E, judges, data, real_other, other_rows["patient_id"].astype(str).to_numpy(), seed)
    judge_meta = read_checkpoint_meta(judge_dir).get("embedder", {})
    metrics.update(split=split, seed=seed, judge_checkpoint=str(judge_dir),
                   judge_backbone=judge_meta.get("backbone"), judge_image_size=judge_meta.get("image_size"))
    factors = workspace_factors(ws, load_manifest(ws.manifest_path))
    if factors.table is not None:
        pca = load_or_fit_pca(EmbeddingTable.load(ws.embeddings_path).embeddings, ws.gan_dir / PCA_FILE, 16)
        try:
            table = pc_meaning_agreement(G, E, judges[-1], pca, data, factors.table, seed=seed)
            metrics["pc_meaning"] = {"judge": judges[-1].name, "agree": int(table["agree"].sum()),
                                     "table": table.to_dict(orient="records")}
        except ValueError as exc:  # too few films, or no factor the judge can read
            metrics["pc_meaning"] = {"judge": judges[-1].name, "skipped": str(exc)}
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    path = write_metrics(ws.gan_dir, {"autoencoder": metrics})
    return metrics, path

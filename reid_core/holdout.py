"""Which images an evaluation may use: the held-out test split, or every image the embedder never saw.

An embedder trained in a workspace has seen that workspace's train (and, for
early stopping, val) patients, so its numbers count on the test split only.
An embedder trained elsewhere (the demo: the shipped model, trained on phantom
seed 0, applied to phantom seed 1; any external dataset) has seen none of the
workspace's patients: then every patient is held out, and evaluating on the
15 % test split only would throw away 85 % of the evidence.

How "never seen" is known (:func:`embedder_saw_workspace`), in this order:

1. an explicit choice (``cxr-reid evaluate --images all|test``) wins;
2. the embedder's training record ``embedder/card.json`` (``data.dataset`` and
   ``data.options``, written by ``cxr-reid ship``) against the workspace's
   ``workspace.json``: another dataset name, or the phantom with another seed
   (another seed draws other people), means unseen;
3. anything else (no record: the embedder was trained here; the same dataset;
   a record that cannot be compared) counts as seen, and the test split is used.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from reid_core.errors import WorkspaceError

ImagesChoice = Literal["auto", "all", "test"]
IMAGES_CHOICES: tuple[str, ...] = ("auto", "all", "test")


@dataclass(frozen=True)
class EvaluationSet:
    """The images one evaluation uses and why (what report.json's ``evaluation_set`` records)."""

    mode: str  # "all" (every image is held out) or "test" (the test split)
    reason: str
    images: np.ndarray  # bool mask over the manifest's rows

    def record(self, manifest: pd.DataFrame) -> dict[str, Any]:
        """``{"mode", "reason", "n_images", "n_patients", "splits"}`` for report.json."""
        pids = manifest["patient_id"].astype(str).to_numpy()[self.images]
        splits = manifest.loc[self.images, "split"].astype(str).value_counts().sort_index()
        return {"mode": self.mode, "reason": self.reason, "n_images": int(self.images.sum()),
                "n_patients": int(len(set(pids))), "splits": {k: int(v) for k, v in splits.items()}}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def embedder_saw_workspace(workspace_info: dict[str, Any] | None,
                           training_data: dict[str, Any] | None) -> tuple[bool, str]:
    """``(saw, reason)``: could the embedder have seen the workspace's patients? (rules 2–3 above).

    ``workspace_info`` is ``workspace.json``; ``training_data`` is ``card.json``'s ``data`` block.
    """
    if not training_data:
        return True, "the embedder has no training record (card.json): taken as trained on this workspace"
    if not workspace_info:
        return True, "the workspace has no workspace.json to compare with the embedder's training data"
    trained_on, here = training_data.get("dataset"), workspace_info.get("dataset")
    if not trained_on or not here:
        return True, "the dataset of the embedder or of the workspace is unknown"
    if trained_on != here:
        return False, f"the embedder was trained on dataset '{trained_on}', this workspace holds '{here}'"
    if here == "phantom":
        s_train = (training_data.get("options") or {}).get("seed")
        s_here = (workspace_info.get("options") or {}).get("seed")
        if s_train is not None and s_here is not None and int(s_train) != int(s_here):
            return False, (f"the embedder was trained on phantom seed {s_train}, this workspace is phantom seed "
                           f"{s_here}: other people")
    return True, f"the embedder was trained on this dataset ('{here}')"


def choose_evaluation_set(manifest: pd.DataFrame, images: ImagesChoice = "auto",
                          workspace_info: dict[str, Any] | None = None,
                          training_data: dict[str, Any] | None = None) -> EvaluationSet:
    """The rows to evaluate: every row when the embedder never saw them, else the test split."""
    if images not in IMAGES_CHOICES:
        raise ValueError(f"images must be one of {IMAGES_CHOICES}, got {images!r}")
    n = len(manifest)
    if images == "all":
        return EvaluationSet("all", "requested: every image (--images all)", np.ones(n, bool))
    test = (manifest["split"] == "test").to_numpy()
    if images == "test":
        return EvaluationSet("test", "requested: the test split (--images test)", test)
    saw, why = embedder_saw_workspace(workspace_info, training_data)
    if not saw:
        return EvaluationSet("all", f"every patient is held out: {why}", np.ones(n, bool))
    return EvaluationSet("test", f"the held-out test split: {why}", test)


def workspace_evaluation_set(ws: Any, manifest: pd.DataFrame, images: ImagesChoice = "auto") -> EvaluationSet:
    """:func:`choose_evaluation_set` with the records of workspace ``ws`` (workspace.json, embedder/card.json)."""
    info = _read_json(ws.info_path)
    card = _read_json(ws.embedder_card_path)
    chosen = choose_evaluation_set(manifest, images, info, (card or {}).get("data"))
    if chosen.images.sum() < 2:
        raise WorkspaceError(f"evaluation needs at least 2 images; {chosen.reason} selects {chosen.images.sum()}")
    return chosen

"""``cxr-reid evaluate``: the workspace's report.json (Packhäuser protocol + Macpherson verification).

Retrieval on the held-out test patients (every test image queried against all
other test images, single-image patients kept as distractors), verification by
a logistic regression on embedding distance fitted on validation pairs and
reported on test pairs with patient-bootstrap CIs, the database-size curve,
longitudinal drift, neighbour-vote diagnosis, and the pixel-PCA baseline under
the same protocol beside every headline number.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reid_core.bootstrap import bootstrap_mean_ci
from reid_core.data.manifest import load_manifest
from reid_core.data.store import ImageStore
from reid_core.diagnosis import diagnosis_auc
from reid_core.embed import EmbeddingTable
from reid_core.errors import WorkspaceError
from reid_core.longitudinal import drift_table, matched_drift_auc
from reid_core.metrics import database_size_curve, per_query_metrics, pixel_baseline_embeddings, retrieval_metrics
from reid_core.verify import PairVerifier, verification_metrics
from reid_core.workspace import Workspace

log = logging.getLogger(__name__)


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN → None, numpy scalars → Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def retrieval_with_ci(emb: np.ndarray, pids: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict:
    """retrieval_metrics plus patient-bootstrap CIs of P@1 and mAP@R."""
    out = retrieval_metrics(emb, pids)
    per = per_query_metrics(emb, pids, ks=(1,))
    q = per["is_query"].to_numpy()
    for col, key in (("precision_at_1", "precision_at_1"), ("average_precision_at_r", "map_at_r")):
        ci = bootstrap_mean_ci(per.loc[q, col].to_numpy(), pids[q], n_boot=n_boot, rng=rng)
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = ci["ci_low"], ci["ci_high"]
    return out


def _require_pairs(pids: np.ndarray, split: str, purpose: str) -> None:
    """A split needs a patient with 2+ images and 2+ patients (both pair kinds) to ``purpose``."""
    _, counts = np.unique(pids, return_counts=True)
    if len(counts) < 2 or counts.max() < 2:
        raise WorkspaceError(
            f"the {split} split has {len(counts)} patient(s), {int((counts >= 2).sum())} with 2+ images; "
            f"{purpose} needs same-patient and different-patient pairs: prepare more patients "
            "(splits are a deterministic hash of patient_id, 80/10/10)")


def evaluate_embeddings(manifest: pd.DataFrame, emb: np.ndarray, n_boot: int = 1000, seed: int = 0,
                        gallery_points: int = 8) -> tuple[dict, PairVerifier]:
    """Every metric of the report for one set of embeddings aligned with ``manifest``."""
    rng = np.random.default_rng(seed)
    pids = manifest["patient_id"].astype(str).to_numpy()
    split = manifest["split"].to_numpy()
    test, val = split == "test", split == "val"
    if test.sum() < 2 or val.sum() < 2:
        raise WorkspaceError(f"evaluation needs val and test images; have {val.sum()} val, {test.sum()} test")
    _require_pairs(pids[val], "val", "fitting the verifier")
    _require_pairs(pids[test], "test", "measuring verification")
    report: dict[str, Any] = {"n_test_images": int(test.sum()), "n_test_patients": int(len(set(pids[test])))}
    report["retrieval"] = retrieval_with_ci(emb[test], pids[test], n_boot, rng)
    verifier = PairVerifier().fit(emb[val], pids[val], rng)
    report["verification"] = verification_metrics(verifier, emb[test], pids[test], rng=rng, n_boot=n_boot)
    report["verification"]["auc"] = report["verification"]["roc_auc"]
    n_query_imgs = int(test.sum())
    sizes = np.unique(np.linspace(n_query_imgs, len(emb), gallery_points).astype(int))
    curve = database_size_curve(emb, pids, test, sizes, rng)
    report["database_size_curve"] = curve.to_dict("records")
    drift = drift_table(manifest, emb)
    report["longitudinal"] = matched_drift_auc(drift)
    report["diagnosis"] = diagnosis_auc(emb[test], manifest.loc[test, "findings"], pids[test])
    return report, verifier


def evaluate_workspace(workspace: Workspace | str | Path, n_boot: int = 1000, seed: int = 0,
                       baseline: bool = True, out: str | Path | None = None) -> dict:
    """Write ``verifier.json`` and ``report.json`` (or ``out``) for the workspace; return the report."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    manifest = load_manifest(ws.manifest_path)
    table = EmbeddingTable.load(ws.embeddings_path)
    emb = table.embeddings[table.rows_for(manifest["image_id"])]
    report, verifier = evaluate_embeddings(manifest, emb, n_boot=n_boot, seed=seed)
    verifier.save(ws.verifier_path)
    if baseline:
        store = ImageStore(ws.images_path(ws.default_image_size()), manifest)
        pix = pixel_baseline_embeddings(store[manifest["cache_row"].to_numpy()])
        rng = np.random.default_rng(seed)
        test = (manifest["split"] == "test").to_numpy()
        val = (manifest["split"] == "val").to_numpy()
        pids = manifest["patient_id"].astype(str).to_numpy()
        bver = PairVerifier().fit(pix[val], pids[val], rng)
        report["baseline"] = {
            "method": "pixel 32x32 -> standardise -> PCA(50) -> nearest neighbour",
            "retrieval": retrieval_metrics(pix[test], pids[test]),
            "verification": verification_metrics(bver, pix[test], pids[test], rng=rng, n_boot=min(n_boot, 200)),
        }
    meta_path = ws.embedder_dir / "config.json"
    if meta_path.exists():
        report["embedder"] = json.loads(meta_path.read_text()).get("meta", {})
    report = _clean(report)
    path = Path(out) if out else ws.report_path
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True))
    tmp.replace(path)
    return report

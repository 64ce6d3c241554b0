"""``cxr-reid evaluate``: the workspace's report.json (Packhäuser protocol + Macpherson verification).

Which images count (:mod:`reid_core.holdout`): the held-out test split when the embedder was trained on
this workspace, every image when it never saw any of them (the demo; an external dataset); report.json's
``evaluation_set`` says which and why. On those images: retrieval (every image queried against all
others, single-image patients kept as distractors), verification and calibration of the same-patient
probability on random, nearest-neighbour and hardest-negative pairs (:mod:`reid_core.pair_eval`: the
verifier is fitted on other patients than it is judged on), 1:N identification at gallery sizes 100,
1,000 and 10,000 (:mod:`reid_core.identification`) as far as the patients allow, the database-size curve,
longitudinal drift, neighbour-vote diagnosis, and the pixel-PCA baseline under the same protocol. Every
metric carries its n and a patient-bootstrap 95 % CI.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reid_core.atomic import write_text_atomic
from reid_core.bootstrap import bootstrap_mean_ci
from reid_core.data.manifest import load_manifest
from reid_core.data.store import ImageStore
from reid_core.diagnosis import diagnosis_auc
from reid_core.embed import EmbeddingTable
from reid_core.errors import WorkspaceError
from reid_core.jsonfile import json_safe
from reid_core.longitudinal import drift_table, matched_drift_auc_ci
from reid_core.holdout import EvaluationSet, ImagesChoice, choose_evaluation_set, workspace_evaluation_set
from reid_core.identification import GALLERY_SIZES, gallery_identification
from reid_core.metrics import database_size_curve, per_query_metrics, pixel_baseline_embeddings, retrieval_metrics
from reid_core.pair_eval import evaluate_pairs
from reid_core.verify import PairVerifier
from reid_core.workspace import Workspace

log = logging.getLogger(__name__)
DEFAULT_VERIFIER_PAIRS = "neighbours"  # calibrated on what a search shows (reid_core.hard_pairs)


def retrieval_with_ci(emb: np.ndarray, pids: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict:
    """retrieval_metrics plus patient-bootstrap CIs of every score, and the n it stands on."""
    out = retrieval_metrics(emb, pids)
    per = per_query_metrics(emb, pids)
    q = per["is_query"].to_numpy()
    cols = {"precision_at_1": "precision_at_1", "precision_at_5": "precision_at_5",
            "precision_at_10": "precision_at_10", "r_precision": "r_precision", "average_precision_at_r": "map_at_r"}
    for col, key in cols.items():
        ci = bootstrap_mean_ci(per.loc[q, col].to_numpy(), pids[q], n_boot=n_boot, rng=rng)
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = ci["ci_low"], ci["ci_high"]
    out.update({"n_images": int(len(pids)), "n_patients": int(len(set(pids))),
                "n_query_patients": int(len(set(pids[q]))), "n_boot": int(n_boot)})
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
                        gallery_points: int = 8, evaluation: EvaluationSet | None = None,
                        verifier_pairs: str = DEFAULT_VERIFIER_PAIRS,
                        gallery_sizes: tuple[int, ...] = GALLERY_SIZES) -> tuple[dict, PairVerifier]:
    """Every metric of the report for one set of embeddings aligned with ``manifest``.

    ``evaluation``: the images to evaluate (default: the test split, :func:`choose_evaluation_set` with
    ``images="test"``). In test mode the verifier is fitted on the validation split; in all mode it is
    cross-fitted (:func:`reid_core.pair_eval.evaluate_pairs`). ``verifier_pairs``: ``"neighbours"`` or ``"random"``.
    """
    rng = np.random.default_rng(seed)
    pids = manifest["patient_id"].astype(str).to_numpy()
    split = manifest["split"].to_numpy()
    evaluation = evaluation or choose_evaluation_set(manifest, "test")
    ev, val = evaluation.images, split == "val"
    fit_mask = val if evaluation.mode == "test" else None
    if ev.sum() < 2 or (fit_mask is not None and fit_mask.sum() < 2):
        raise WorkspaceError(f"evaluation needs val and test images; have {val.sum()} val, {ev.sum()} test")
    if fit_mask is not None:
        _require_pairs(pids[fit_mask], "val", "fitting the verifier")
    _require_pairs(pids[ev], "test" if evaluation.mode == "test" else "evaluated", "measuring verification")
    report: dict[str, Any] = {"evaluation_set": evaluation.record(manifest),
                              "n_test_images": int(ev.sum()), "n_test_patients": int(len(set(pids[ev])))}
    report["retrieval"] = retrieval_with_ci(emb[ev], pids[ev], n_boot, rng)
    verification, calibration, verifier = evaluate_pairs(emb, pids, ev, fit_mask, rng, n_boot=n_boot,
                                                         pairs=verifier_pairs)
    report["verification"], report["calibration"] = verification, calibration
    order = manifest["study_order"].to_numpy()
    report["identification"] = {
        "protocol": "NIST FRVT 1:N: one enrolment film (the earliest) per gallery patient; mated probes = the "
                    "other films of gallery patients, non-mated probes = every film of the other patients; "
                    "rank-1 thresholded search on embedding distance",
        # its own stream: the same galleries whichever verifier was fitted before
        "galleries": gallery_identification(emb[ev], pids[ev], order[ev], gallery_sizes,
                                            np.random.default_rng([seed, 1]), n_boot=n_boot, verifier=verifier),
    }
    test = split == "test"
    if test.sum() >= 2:  # distractors from every other image, as before (Packhäuser's database-size curve)
        sizes = np.unique(np.linspace(int(np.isin(pids, pids[test]).sum()), len(emb), gallery_points).astype(int))
        report["database_size_curve"] = database_size_curve(emb, pids, test, sizes, rng).to_dict("records")
    sub = manifest[ev].reset_index(drop=True)
    slow_boot = min(n_boot, 200)  # statistics recomputed per replicate (stratified / per-finding AUCs)
    report["longitudinal"] = matched_drift_auc_ci(drift_table(sub, emb[ev]), slow_boot, rng)
    report["diagnosis"] = diagnosis_auc(emb[ev], sub["findings"], pids[ev], n_boot=slow_boot, rng=rng)
    return report, verifier


def evaluate_workspace(workspace: Workspace | str | Path, n_boot: int = 1000, seed: int = 0,
                       baseline: bool = True, out: str | Path | None = None, images: ImagesChoice = "auto",
                       verifier_pairs: str = DEFAULT_VERIFIER_PAIRS,
                       gallery_sizes: tuple[int, ...] = GALLERY_SIZES) -> dict:
    """Write ``verifier.json`` and ``report.json`` (or ``out``) for the workspace; return the report.

    ``images``: ``"auto"`` (every image when the embedder never saw the workspace, else the test split;
    see :mod:`reid_core.holdout`), ``"all"`` or ``"test"``.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    manifest = load_manifest(ws.manifest_path)
    table = EmbeddingTable.load(ws.embeddings_path)
    emb = table.embeddings[table.rows_for(manifest["image_id"])]
    evaluation = workspace_evaluation_set(ws, manifest, images)
    report, verifier = evaluate_embeddings(manifest, emb, n_boot=n_boot, seed=seed, evaluation=evaluation,
                                           verifier_pairs=verifier_pairs, gallery_sizes=gallery_sizes)
    verifier.save(ws.verifier_path)
    if baseline:
        store = ImageStore(ws.images_path(ws.default_image_size()), manifest)
        pix = pixel_baseline_embeddings(store[manifest["cache_row"].to_numpy()])
        rng = np.random.default_rng(seed)
        ev = evaluation.images
        fit_mask = (manifest["split"] == "val").to_numpy() if evaluation.mode == "test" else None
        pids = manifest["patient_id"].astype(str).to_numpy()
        bver, _, _ = evaluate_pairs(pix, pids, ev, fit_mask, rng, n_boot=min(n_boot, 200), pairs="random")
        report["baseline"] = {
            "method": "pixel 32x32 -> standardise -> PCA(50) -> nearest neighbour",
            "retrieval": retrieval_metrics(pix[ev], pids[ev]),
            "verification": bver,
        }
    meta_path = ws.embedder_record_path
    if meta_path.exists():
        report["embedder"] = json.loads(meta_path.read_text()).get("meta", {})
    report = json_safe(report)
    path = Path(out) if out else ws.report_path
    write_text_atomic(path, json.dumps(report, indent=2, sort_keys=True))
    return report

"""Retrieval-based diagnosis (after Zhong et al. 2021): what do the neighbours have?

For a query, the k nearest gallery images (other patients only, so a patient's
own earlier films cannot leak its labels) each vote for their findings with a
weight that falls with distance, ``w = exp(-d / τ)`` (τ = the median neighbour
distance unless given). The score of a finding is the weighted share of
neighbours that carry it. Evaluated as a per-finding ROC AUC.
"""
from __future__ import annotations

import faiss
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from reid_core.bootstrap import row_bootstrap_ci
from reid_core.data.manifest import NO_FINDING
from reid_core.retrieval import faiss_search


def finding_matrix(findings: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Binary N×F matrix of findings (``No Finding`` is no column) and the finding names."""
    sets = [set(f.split("|")) - {NO_FINDING} for f in findings.astype(str)]
    vocab = sorted(set().union(*sets)) if sets else []
    mat = np.zeros((len(sets), len(vocab)), dtype=bool)
    col = {v: j for j, v in enumerate(vocab)}
    for i, s in enumerate(sets):
        mat[i, [col[v] for v in s]] = True
    return mat, vocab


def neighbour_votes(query: np.ndarray, query_patients: np.ndarray, gallery: np.ndarray,
                    gallery_patients: np.ndarray, gallery_findings: np.ndarray, k: int = 10,
                    temperature: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q×F vote scores, Q×k neighbour rows, Q×k distances); neighbours from other patients only."""
    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    # over-fetch so that k neighbours remain after dropping the query's own patient
    max_same = int(pd.Series(gallery_patients).value_counts().max()) if len(gallery_patients) else 0
    fetch = min(len(gallery), k + max_same)
    sq, idx = faiss_search(index, np.ascontiguousarray(query, dtype=np.float32), fetch)
    dist = np.sqrt(np.maximum(sq, 0))
    other = gallery_patients[idx] != np.asarray(query_patients)[:, None]
    order = np.argsort(~other, axis=1, kind="stable")[:, :k]  # other-patient neighbours first, by distance
    nb = np.take_along_axis(idx, order, 1)
    nd = np.take_along_axis(dist, order, 1)
    tau = float(np.median(nd)) if temperature is None else float(temperature)
    w = np.exp(-nd / max(tau, 1e-12))
    votes = np.einsum("qk,qkf->qf", w, gallery_findings[nb].astype(np.float64)) / w.sum(1, keepdims=True)
    return votes, nb, nd


def diagnosis_auc(embeddings: np.ndarray, findings: pd.Series, patient_ids: np.ndarray,
                  k: int = 10, min_positives: int = 5, n_boot: int = 0,
                  rng: np.random.Generator | int | None = None) -> dict:
    """Leave-patient-out neighbour vote on a set; per-finding ROC AUC (findings with enough cases).

    With ``n_boot > 0`` also ``mean_auc_ci_low``/``_high``: the votes stay fixed, the films are resampled
    by patient (:func:`reid_core.bootstrap.row_bootstrap_ci`).
    """
    mat, vocab = finding_matrix(findings)
    pids = np.asarray(patient_ids).astype(str)
    votes, _, _ = neighbour_votes(embeddings, pids, embeddings, pids, mat, k=k)
    scored = [j for j in range(len(vocab))
              if mat[:, j].sum() >= min_positives and (~mat[:, j]).sum() >= min_positives]
    per = {vocab[j]: float(roc_auc_score(mat[:, j], votes[:, j])) for j in scored}
    out = {"k": k, "per_finding_auc": per, "n_images": int(len(pids)), "n_patients": int(len(set(pids))),
           "mean_auc": float(np.mean(list(per.values()))) if per else float("nan")}
    if n_boot > 0 and scored:
        def mean_auc(rows: np.ndarray) -> float:
            aucs = [roc_auc_score(mat[rows, j], votes[rows, j]) for j in scored
                    if 0 < mat[rows, j].sum() < len(rows)]
            return float(np.mean(aucs)) if aucs else float("nan")

        out["mean_auc_ci_low"], out["mean_auc_ci_high"] = row_bootstrap_ci(mean_auc, pids, n_boot, rng)
    return out

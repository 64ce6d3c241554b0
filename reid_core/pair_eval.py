"""Verification and calibration of the same-patient probability on held-out patients, fitted apart.

A verifier is never judged on the patients it was fitted on:

* **test mode** (the embedder saw the workspace's train/val patients): fitted on the validation split,
  judged on the test split;
* **all mode** (every patient is held out, :mod:`reid_core.holdout`): 2-fold cross-fitting by patient —
  the patients are split at random in two halves, each half's pairs are scored by a verifier fitted on the
  other half, and the scored pairs of both halves are pooled. The verifier saved for the app is then
  fitted on every patient.

Four pair sets are scored (each within one half in all mode, so neighbours come from half the gallery):
``random`` (:func:`reid_core.verify.make_pairs`, balanced), ``search_results`` (each film with its 10
nearest films, what the retrieval page lists), ``nearest_neighbour`` (each query's rank-1 neighbour) and
``hardest_negative`` (each film's nearest other-patient film: chosen by its outcome, so its ECE is simply
the mean p, and ``called_same`` is the share of those wrong pairs the decision calls "same").
Verification metrics (ROC AUC, accuracy, …) come from the random pairs; calibration (ECE, reliability,
share called "same") from all four.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reid_core.bootstrap import as_rng
from reid_core.calibration import calibration_summary
from reid_core.hard_pairs import nearest_neighbour, nearest_other_patient, top_k_neighbours
from reid_core.metrics import encode_labels
from reid_core.verify import PairVerifier, make_pairs, pair_distances, scored_pair_metrics

PAIR_SETS: tuple[str, ...] = ("random", "search_results", "nearest_neighbour", "hardest_negative")


@dataclass
class ScoredPairs:
    """Pairs scored by a verifier: logits, outcomes and the two patients of each pair."""

    logit: np.ndarray
    same: np.ndarray
    patient_a: np.ndarray
    patient_b: np.ndarray

    @staticmethod
    def concat(parts: list["ScoredPairs"]) -> "ScoredPairs":
        return ScoredPairs(*(np.concatenate([getattr(p, f) for p in parts])
                             for f in ("logit", "same", "patient_a", "patient_b")))

    @property
    def probability(self) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(0.5 * self.logit))


def score_pair_sets(verifier: PairVerifier, emb: np.ndarray, pids: np.ndarray,
                    rng: np.random.Generator) -> dict[str, ScoredPairs]:
    """The three pair sets of ``emb`` (one patient label per row), scored by ``verifier``."""
    sets = {"random": make_pairs(pids, rng), "search_results": top_k_neighbours(emb, pids)}
    i, j, same = nearest_neighbour(emb, pids)
    sets["nearest_neighbour"] = (i, j, same)
    if len(np.unique(pids)) > 1:
        i, j = nearest_other_patient(emb, pids)
        sets["hardest_negative"] = (i, j, np.zeros(len(i), bool))
    out = {}
    for name, (i, j, same) in sets.items():
        out[name] = ScoredPairs(verifier.decision_function(pair_distances(emb, i, j)), np.asarray(same, bool),
                                pids[i], pids[j])
    return out


def patient_folds(pids: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number per row: patients dealt at random into ``n_folds`` groups of (nearly) equal size."""
    codes = encode_labels(pids, len(pids))
    fold_of_patient = np.empty(codes.max() + 1, np.int64)
    fold_of_patient[rng.permutation(codes.max() + 1)] = np.arange(codes.max() + 1) % n_folds
    return fold_of_patient[codes]


def evaluate_pairs(emb: np.ndarray, pids: np.ndarray, eval_mask: np.ndarray, fit_mask: np.ndarray | None,
                   rng: np.random.Generator | int | None, n_boot: int = 1000, pairs: str = "neighbours",
                   n_folds: int = 2) -> tuple[dict[str, Any], dict[str, Any], PairVerifier]:
    """``(verification, calibration, verifier)`` for the images in ``eval_mask``.

    ``fit_mask`` given: test mode, the verifier is fitted on those rows (disjoint patients). ``fit_mask``
    None: all mode, ``n_folds``-fold cross-fitting within ``eval_mask`` (see the module docstring); the
    returned verifier is fitted on every ``eval_mask`` row. ``pairs``: ``"random"`` or ``"neighbours"``
    (:meth:`PairVerifier.fit`).
    """
    rng = as_rng(rng)
    pids = np.asarray(pids).astype(str)
    e_emb, e_pid = emb[eval_mask], pids[eval_mask]
    parts: list[dict[str, ScoredPairs]] = []
    if fit_mask is not None:
        verifier = PairVerifier().fit(emb[fit_mask], pids[fit_mask], rng, pairs=pairs)
        parts.append(score_pair_sets(verifier, e_emb, e_pid, rng))
        protocol = "fitted on the validation split, scored on the evaluated (test) images"
    else:
        folds = patient_folds(e_pid, n_folds, rng)
        for f in range(n_folds):
            v_f = PairVerifier().fit(e_emb[folds != f], e_pid[folds != f], rng, pairs=pairs)
            parts.append(score_pair_sets(v_f, e_emb[folds == f], e_pid[folds == f], rng))
        verifier = PairVerifier().fit(e_emb, e_pid, rng, pairs=pairs)
        protocol = (f"{n_folds}-fold cross-fitting by patient: each half's pairs scored by a verifier fitted on "
                    "the other half (hard pairs searched within the half); the saved verifier is fitted on all")
    pooled = {name: ScoredPairs.concat([p[name] for p in parts if name in p]) for name in PAIR_SETS
              if any(name in p for p in parts)}
    r = pooled["random"]
    verification = scored_pair_metrics(r.logit, r.same, r.patient_a, r.patient_b, verifier, rng=rng, n_boot=n_boot,
                                       all_patients=np.unique(e_pid))
    verification["auc"] = verification["roc_auc"]
    verification["protocol"] = protocol
    verification["fit_pairs"] = pairs
    calibration: dict[str, Any] = {"fit_pairs": pairs, "protocol": protocol}
    for name, sp in pooled.items():
        calibration[name] = calibration_summary(sp.probability, sp.same, sp.patient_a, sp.patient_b,
                                                verifier.threshold, n_boot=n_boot, rng=rng)
    return verification, calibration, verifier

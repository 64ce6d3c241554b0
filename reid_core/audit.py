"""ID audit: find images whose embedding contradicts their recorded patient ID.

Two kinds of flags, from embeddings and a fitted :class:`PairVerifier`:

* ``likely_mislabelled`` — an image that the verifier decisively rejects against *every*
  other image recorded under its patient ID (probability < ``max_same_prob``), while
  the ID of its nearest other-ID neighbour accepts it with at least half of
  its images (one chance look-alike is not evidence; a person's other films
  agree). When *every* image of an ID is flagged, the one with the weakest
  match elsewhere is presumed the ID's owner and not flagged (an ID holding a
  lone film plus a stray one flags only the stray). Patients with a single
  image cannot be checked and are never flagged.
* ``same_person_pairs`` — pairs of different patient IDs whose images match
  (mutual nearest neighbours across IDs with probability ≥ ``pair_threshold``),
  i.e. one person registered under two IDs.
"""
from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import pandas as pd

from reid_core.metrics import knn_excluding_self
from reid_core.verify import PairVerifier


@dataclass
class AuditResult:
    """Flagged images and ID pairs, each with the evidence."""

    mislabelled: pd.DataFrame  # image_id, patient_id, best_same_prob, best_other_id, best_other_patient, best_other_prob
    same_person_pairs: pd.DataFrame  # patient_a, patient_b, image_a, image_b, probability


def audit_ids(embeddings: np.ndarray, image_ids: np.ndarray, patient_ids: np.ndarray, verifier: PairVerifier,
              k: int = 20, pair_threshold: float = 0.9, max_same_prob: float = 0.35) -> AuditResult:
    """Run both checks; ``k`` neighbours per image are searched (exact FAISS).

    ``max_same_prob``: an image is only flagged when even its best match under its
    own ID is below this same-person probability (a decisive rejection; images
    near the verifier's threshold are hard films, not evidence of a wrong ID).
    """
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    image_ids, patient_ids = np.asarray(image_ids).astype(str), np.asarray(patient_ids).astype(str)
    n = len(emb)
    codes, uniq = pd.factorize(patient_ids)
    # best match among the image's own recorded patient (all of them, not only the k nearest)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(uniq)))
    ends = np.searchsorted(codes[order], np.arange(len(uniq)), side="right")
    best_same = np.full(n, np.nan)
    for c in range(len(uniq)):
        members = order[starts[c]:ends[c]]
        if len(members) < 2:
            continue
        x = emb[members]
        d = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0))
        np.fill_diagonal(d, np.inf)
        best_same[members] = d.min(axis=1)
    index = faiss.IndexFlatL2(emb.shape[1])
    index.add(emb)
    chunks = list(knn_excluding_self(emb, index, np.arange(n), min(k, n - 1)))
    dist = np.sqrt(np.maximum(np.concatenate([c[1] for c in chunks]), 0))
    idx = np.concatenate([c[2] for c in chunks])
    other = codes[idx] != codes[:, None]
    first_other = np.where(other.any(axis=1), other.argmax(axis=1), -1)
    has_other = first_other >= 0
    rows = np.arange(n)
    o_idx = np.where(has_other, idx[rows, np.maximum(first_other, 0)], -1)
    o_dist = np.where(has_other, dist[rows, np.maximum(first_other, 0)], np.inf)
    p_same = np.where(np.isfinite(best_same), verifier.predict_proba(np.nan_to_num(best_same, nan=1e9)), np.nan)
    p_other = np.where(has_other, verifier.predict_proba(np.minimum(o_dist, 1e9)), 0.0)
    thr = verifier.threshold
    flag = np.isfinite(best_same) & (p_same < min(thr, max_same_prob)) & (p_other >= thr)
    flag &= _accepted_by_majority(emb, codes, order, starts, ends, o_idx, flag, verifier, thr)
    flag &= ~_presumed_owners(order, starts, ends, codes, flag, p_other)
    mis = pd.DataFrame({
        "image_id": image_ids[flag], "patient_id": patient_ids[flag], "best_same_prob": p_same[flag],
        "best_other_id": image_ids[o_idx[flag]], "best_other_patient": patient_ids[o_idx[flag]],
        "best_other_prob": p_other[flag],
    }).sort_values("best_same_prob").reset_index(drop=True)
    # mutual nearest neighbours across IDs, strongly matching
    nn_other = np.where(has_other, o_idx, -1)
    mutual = has_other & (nn_other[np.maximum(nn_other, 0)] == rows) & (rows < nn_other)
    strong = mutual & (p_other >= pair_threshold)
    a, b = rows[strong], nn_other[strong]
    pairs = pd.DataFrame({"patient_a": patient_ids[a], "patient_b": patient_ids[b], "image_a": image_ids[a],
                          "image_b": image_ids[b], "probability": p_other[strong]})
    pairs = pairs.sort_values("probability", ascending=False).drop_duplicates(["patient_a", "patient_b"])
    return AuditResult(mis, pairs.reset_index(drop=True))


def _accepted_by_majority(emb: np.ndarray, codes: np.ndarray, order: np.ndarray, starts: np.ndarray,
                          ends: np.ndarray, o_idx: np.ndarray, candidates: np.ndarray, verifier: PairVerifier,
                          thr: float) -> np.ndarray:
    """For each candidate, whether ≥ half the images of its nearest other-ID neighbour's ID accept it."""
    ok = np.zeros(len(emb), dtype=bool)
    for i in np.flatnonzero(candidates):
        c = codes[o_idx[i]]
        members = order[starts[c]:ends[c]]
        d = np.linalg.norm(emb[members] - emb[i], axis=1)
        ok[i] = np.mean(verifier.predict_proba(d) >= thr) >= 0.5
    return ok


def _presumed_owners(order: np.ndarray, starts: np.ndarray, ends: np.ndarray, codes: np.ndarray, flag: np.ndarray,
                     p_other: np.ndarray) -> np.ndarray:
    """In IDs whose every image is flagged, the image with the weakest match elsewhere (kept as the owner)."""
    owners = np.zeros(len(codes), dtype=bool)
    for c in np.unique(codes[flag]):
        members = order[starts[c]:ends[c]]
        if flag[members].all():
            owners[members[np.argmin(p_other[members])]] = True
    return owners

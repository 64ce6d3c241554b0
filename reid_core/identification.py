"""Identification at gallery scale (1:N), reported as NIST's FRVT 1:N evaluations do.

**Gallery.** ``N`` enrolled patients, drawn at random; each is enrolled with one film, its earliest
(lowest ``study_order``, then lowest row). **Probes.** *Mated*: every other film of an enrolled patient.
*Non-mated*: every film of a patient who is not enrolled. A search returns the gallery film nearest to
the probe (Euclidean distance ``d`` between embeddings; smaller = more alike).

For a distance threshold ``D`` (a candidate is returned when ``d < D``):

* ``FPIR(D)`` = share of non-mated searches whose nearest gallery film has ``d < D`` (a false alarm);
* ``FNIR(D)`` = share of mated searches whose nearest gallery film is *not* the mate, or is but has
  ``d ≥ D`` (rank-1 thresholded identification);
* ``rank1`` = share of mated searches whose nearest gallery film is the mate (``FNIR(∞)``).

``FNIR at FPIR = α`` uses the largest threshold with ``FPIR ≤ α``: with the non-mated nearest distances
sorted ascending ``d_(0) ≤ d_(1) ≤ …`` and ``k = ⌊α·M⌋`` (``M`` non-mated searches), ``D = d_(k)``. It is
reported only when ``M ≥ 1/α`` (fewer searches cannot resolve that rate). The DET curve is
(FPIR, FNIR) over thresholds. CIs: patient bootstrap (every probe of a drawn patient counts with its
multiplicity; the gallery is fixed; the threshold is re-chosen in each replicate).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from reid_core.bootstrap import _iter_count_blocks, as_rng, bootstrap_mean_ci, percentile_ci
from reid_core.metrics import _flat_index, as_embedding_matrix, encode_labels
from reid_core.retrieval import faiss_search

GALLERY_SIZES: tuple[int, ...] = (100, 1_000, 10_000)
FPIR_TARGETS: tuple[float, ...] = (0.1, 0.01, 0.001)
DET_MAX_POINTS = 120


@dataclass
class Searches:
    """Outcome of every probe's search: nearest gallery distance, and for mated probes whether it is the mate."""

    mated_distance: np.ndarray  # distance to the nearest gallery film
    mated_hit: np.ndarray  # nearest gallery film is the probe's own patient
    mated_patient: np.ndarray
    nonmated_distance: np.ndarray
    nonmated_patient: np.ndarray
    n_gallery: int


def enrolment_rows(codes: np.ndarray, study_order: np.ndarray, enrolled: np.ndarray) -> np.ndarray:
    """Row of each enrolled patient's earliest film (lowest study_order, then lowest row), in patient order."""
    rows = np.flatnonzero(enrolled[codes])
    order = rows[np.lexsort((rows, study_order[rows], codes[rows]))]
    first = np.r_[True, codes[order][1:] != codes[order][:-1]]
    return order[first]


def run_searches(embeddings: np.ndarray, labels: Sequence, study_order: Sequence[int],
                 enrolled_patients: Sequence) -> Searches:
    """Enrol ``enrolled_patients`` (labels) with their earliest film and search every other film once."""
    x = as_embedding_matrix(embeddings)
    lab = np.asarray(labels).astype(str)
    codes = encode_labels(lab, len(x))
    order = np.asarray(study_order, dtype=np.int64)
    enrolled = np.zeros(codes.max() + 1, bool)
    enrolled[np.unique(codes[np.isin(lab, np.asarray(enrolled_patients).astype(str))])] = True
    if not enrolled.any():
        raise ValueError("no enrolled patient occurs in labels")
    g_rows = enrolment_rows(codes, order, enrolled)
    probe = np.ones(len(x), bool)
    probe[g_rows] = False
    mated = probe & enrolled[codes]
    nonmated = probe & ~enrolled[codes]
    d2, nn = faiss_search(_flat_index(x[g_rows]), x[probe], 1)
    dist = np.sqrt(np.maximum(d2[:, 0].astype(np.float64), 0.0))
    top_code = codes[g_rows][nn[:, 0]]
    pr = np.flatnonzero(probe)
    is_m = mated[pr]
    return Searches(dist[is_m], top_code[is_m] == codes[pr][is_m], lab[pr][is_m], dist[~is_m], lab[pr][~is_m],
                    len(g_rows))


def threshold_at_fpir(nonmated_distance: np.ndarray, fpir: float) -> float:
    """The largest ``D`` with FPIR(D) ≤ ``fpir`` (``d_(⌊fpir·M⌋)``; +inf when that index is past the end)."""
    d = np.sort(np.asarray(nonmated_distance, dtype=np.float64))
    k = int(np.floor(fpir * len(d) + 1e-9))
    return float(d[k]) if k < len(d) else float("inf")


def rates(s: Searches, threshold: float) -> tuple[float, float]:
    """``(FPIR, FNIR)`` of the rule ``d < threshold``."""
    fpir = float(np.mean(s.nonmated_distance < threshold)) if len(s.nonmated_distance) else float("nan")
    fnir = float(1.0 - np.mean(s.mated_hit & (s.mated_distance < threshold))) if len(s.mated_hit) else float("nan")
    return fpir, fnir


def det_curve(s: Searches, max_points: int = DET_MAX_POINTS) -> dict[str, list[float]]:
    """(FPIR, FNIR) at up to ``max_points`` thresholds spread over the observed distances, FPIR increasing."""
    cand = np.unique(np.r_[s.nonmated_distance, s.mated_distance])
    if len(cand) > max_points - 1:
        cand = cand[np.unique(np.linspace(0, len(cand) - 1, max_points - 1).round().astype(int))]
    thresholds = np.r_[cand, np.inf]
    pts = [rates(s, t) for t in thresholds]
    return {"distance_threshold": [float(t) if np.isfinite(t) else None for t in thresholds],
            "fpir": [p[0] for p in pts], "fnir": [p[1] for p in pts]}


def _bootstrap_fnir(s: Searches, fpir: float, n_boot: int, rng: np.random.Generator, level: float) -> tuple[float, float]:
    """Percentile CI of FNIR at FPIR ``fpir``, the threshold re-chosen in each patient-bootstrap replicate."""
    pats, inv = np.unique(np.r_[s.mated_patient, s.nonmated_patient], return_inverse=True)
    pm, pn = inv[:len(s.mated_patient)], inv[len(s.mated_patient):]
    order = np.argsort(s.nonmated_distance, kind="stable")
    dn, pn = s.nonmated_distance[order], pn[order]
    reps = []
    for c in _iter_count_blocks(len(pats), n_boot, len(dn) + len(pm), rng):
        wn, wm = c[:, pn].astype(np.float64), c[:, pm].astype(np.float64)
        cum = np.cumsum(wn, axis=1)
        allowed = fpir * cum[:, -1:] + 1e-9
        past = cum > allowed
        k = np.where(past.any(axis=1), past.argmax(axis=1), len(dn))
        d_thr = np.where(k < len(dn), dn[np.minimum(k, len(dn) - 1)], np.inf)
        accepted = s.mated_hit[None, :] & (s.mated_distance[None, :] < d_thr[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            reps.append(1.0 - (wm * accepted).sum(axis=1) / wm.sum(axis=1))
    return percentile_ci(np.concatenate(reps) if reps else np.array([]), level)


def identification_report(s: Searches, fpirs: Sequence[float] = FPIR_TARGETS, n_boot: int = 1000,
                          rng: np.random.Generator | int | None = None, level: float = 0.95,
                          verifier: Any | None = None) -> dict[str, Any]:
    """rank-1, FNIR at each FPIR (with its distance threshold, and the verifier's p there) and the DET curve."""
    rng = as_rng(rng)
    m, n = len(s.mated_hit), len(s.nonmated_distance)
    out: dict[str, Any] = {"gallery_size": s.n_gallery, "n_mated_probes": m, "n_nonmated_probes": n,
                           "n_mated_patients": int(len(np.unique(s.mated_patient))),
                           "n_nonmated_patients": int(len(np.unique(s.nonmated_patient))),
                           "n_boot": int(n_boot), "ci_level": float(level)}
    r1 = bootstrap_mean_ci(s.mated_hit.astype(float), s.mated_patient, n_boot=n_boot, rng=rng, level=level)
    out.update({"rank1": r1["value"], "rank1_ci_low": r1["ci_low"], "rank1_ci_high": r1["ci_high"]})
    points = []
    for a in fpirs:
        row: dict[str, Any] = {"fpir_target": float(a)}
        if n == 0 or m == 0 or n * a < 1 - 1e-9:
            row["note"] = f"not estimable: needs at least {int(np.ceil(1 / a))} non-mated searches, has {n}"
        else:
            d = threshold_at_fpir(s.nonmated_distance, a)
            fpir, fnir = rates(s, d)
            lo, hi = _bootstrap_fnir(s, a, n_boot, rng, level) if n_boot > 0 else (float("nan"),) * 2
            row.update({"distance_threshold": d if np.isfinite(d) else None, "fpir": fpir, "fnir": fnir,
                        "fnir_ci_low": lo, "fnir_ci_high": hi})
            if verifier is not None and np.isfinite(d):
                row["p_same_at_threshold"] = float(verifier.predict_proba(d))
        points.append(row)
    out["fnir_at_fpir"] = points
    if verifier is not None and getattr(verifier, "is_fitted", False):
        fpir, fnir = rates(s, verifier.distance_threshold)
        out["at_verifier_threshold"] = {"p_threshold": verifier.threshold, "distance_threshold":
                                        verifier.distance_threshold, "fpir": fpir, "fnir": fnir}
    out["det"] = det_curve(s)
    return out


def gallery_identification(embeddings: np.ndarray, labels: Sequence, study_order: Sequence[int],
                           sizes: Sequence[int] = GALLERY_SIZES, rng: np.random.Generator | int | None = None,
                           fpirs: Sequence[float] = FPIR_TARGETS, n_boot: int = 1000,
                           verifier: Any | None = None) -> list[dict[str, Any]]:
    """:func:`identification_report` for each gallery size (nested galleries from one random patient order).

    A size needs more patients than it enrols (at least one non-mated patient); larger sizes get
    ``{"gallery_size", "skipped"}``.
    """
    rng = as_rng(rng)
    lab = np.asarray(labels).astype(str)
    patients = rng.permutation(np.unique(lab))
    out = []
    for size in sorted(int(s) for s in sizes):
        if size >= len(patients):
            out.append({"gallery_size": size, "skipped": f"needs more than {size} patients; the evaluated images "
                                                         f"hold {len(patients)}"})
            continue
        s = run_searches(embeddings, lab, study_order, patients[:size])
        out.append(identification_report(s, fpirs, n_boot=n_boot, rng=rng, verifier=verifier))
    return out

"""Is a same-patient probability what it says? Reliability diagrams and expected calibration error.

For pairs with predicted probabilities ``p`` and outcomes ``y`` (1 = same patient), the probabilities
are cut into ``n_bins`` equal-width bins ``[0, 0.1), …, [0.9, 1.0]``. For each bin ``b`` with ``n_b``
pairs: ``confidence_b`` = mean p, ``frequency_b`` = mean y. The expected calibration error is

    ECE = Σ_b (n_b / N) · |confidence_b − frequency_b|

(Guo et al. 2017). 0 is perfect; on a set of negatives only (each film's nearest other-patient film)
it is the mean p, the probability mass the verifier puts on a wrong "same".

CIs resample patients (:mod:`reid_core.bootstrap`): a pair of patients ``a``, ``b`` gets weight
``c_a · c_b`` (``c_a`` for a same-patient pair) in each replicate, and the ECE is recomputed with
those weights (bins fixed by p, so only the weights change).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from reid_core.bootstrap import _iter_count_blocks, _patient_codes, as_rng, pair_weights, percentile_ci

N_BINS = 10


def _bins(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)


def _check(p: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    pp = np.asarray(p, dtype=np.float64).ravel()
    yy = np.asarray(y, dtype=bool).ravel()
    if pp.shape != yy.shape:
        raise ValueError(f"{len(pp)} probabilities for {len(yy)} outcomes")
    if len(pp) and (not np.isfinite(pp).all() or pp.min() < 0 or pp.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    return pp, yy


def weighted_ece(p: np.ndarray, y: np.ndarray, weights: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """ECE for each row of ``weights`` (``B × n``, or ``n``); NaN for a row of zero weight."""
    pp, yy = _check(p, y)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    onehot = np.zeros((len(pp), n_bins))
    onehot[np.arange(len(pp)), _bins(pp, n_bins)] = 1.0
    sum_p = w @ (onehot * pp[:, None])
    sum_y = w @ (onehot * yy[:, None])
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(sum_p - sum_y).sum(axis=1) / total


def expected_calibration_error(p: Sequence[float], y: Sequence[bool], n_bins: int = N_BINS) -> float:
    """ECE of probabilities ``p`` against outcomes ``y`` (see the module docstring); NaN when empty."""
    pp, yy = _check(p, y)
    if len(pp) == 0:
        return float("nan")
    return float(weighted_ece(pp, yy, np.ones(len(pp)), n_bins)[0])


def reliability_table(p: Sequence[float], y: Sequence[bool], n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """One row per non-empty bin: ``bin_low``, ``bin_high``, ``n``, ``confidence`` (mean p), ``frequency``."""
    pp, yy = _check(p, y)
    b = _bins(pp, n_bins)
    rows = []
    for k in range(n_bins):
        sel = b == k
        if sel.any():
            rows.append({"bin_low": k / n_bins, "bin_high": (k + 1) / n_bins, "n": int(sel.sum()),
                         "confidence": float(pp[sel].mean()), "frequency": float(yy[sel].mean())})
    return rows


def calibration_summary(p: np.ndarray, y: np.ndarray, patient_a: np.ndarray, patient_b: np.ndarray,
                        threshold: float, n_boot: int = 1000, rng: np.random.Generator | int | None = None,
                        level: float = 0.95, n_bins: int = N_BINS) -> dict[str, Any]:
    """ECE, mean p, the share called "same" (``p ≥ threshold``) and the reliability table of one pair set.

    Returns ``ece``, ``mean_p``, ``frequency`` (share of same-patient pairs), ``called_same`` (share with
    ``p ≥ threshold``), each with ``_ci_low``/``_ci_high`` (patient bootstrap), plus ``n_pairs``,
    ``n_positive_pairs``, ``n_patients``, ``threshold``, ``n_boot``, ``ci_level`` and ``reliability``.
    """
    pp, yy = _check(p, y)
    out: dict[str, Any] = {"n_pairs": int(len(pp)), "n_positive_pairs": int(yy.sum()), "threshold": float(threshold),
                           "n_boot": int(n_boot), "ci_level": float(level)}
    if len(pp) == 0:
        return out | {"ece": None, "mean_p": None, "frequency": None, "called_same": None, "reliability": []}
    called = (pp >= threshold).astype(np.float64)
    n_pat, (pa, pb) = _patient_codes(np.asarray(patient_a), np.asarray(patient_b))
    out["n_patients"] = n_pat
    stats = {"ece": lambda w: weighted_ece(pp, yy, w, n_bins),
             "mean_p": lambda w: (w @ pp) / w.sum(axis=1),
             "frequency": lambda w: (w @ yy.astype(np.float64)) / w.sum(axis=1),
             "called_same": lambda w: (w @ called) / w.sum(axis=1)}
    reps: dict[str, list[np.ndarray]] = {k: [] for k in stats}
    if n_boot > 0:
        for c in _iter_count_blocks(n_pat, n_boot, len(pp), as_rng(rng)):
            w = pair_weights(c, pa, pb)
            with np.errstate(invalid="ignore", divide="ignore"):
                for k, f in stats.items():
                    reps[k].append(f(w))
    ones = np.ones((1, len(pp)))
    for k, f in stats.items():
        out[k] = float(f(ones)[0])
        lo, hi = percentile_ci(np.concatenate(reps[k]) if reps[k] else np.array([]), level)
        out[f"{k}_ci_low"], out[f"{k}_ci_high"] = lo, hi
    out["reliability"] = reliability_table(pp, yy, n_bins)
    return out

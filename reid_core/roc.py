"""ROC curves of a pair verifier, small enough to store in report.json, and operating points read off them.

The decision rule is the verifier's: a pair is called "same patient" when its
probability ``p ≥ t``. :func:`roc_points` evaluates that rule exactly (no
interpolation) at

* every probability threshold on the 0.01 grid ``0.00, 0.01, …, 1.00`` — so the
  app's threshold slider (step 0.01) always lands on a stored, exact point;
* evenly spaced distinct pair probabilities, which keep the curve's shape where
  the probabilities crowd together (a well-separated verifier puts most pairs
  near 0 or 1);
* one threshold just above 1, the (0, 0) corner; ``t = 0`` is the (1, 1) corner.

Thresholds are stored in decreasing order, so ``fpr`` and ``tpr`` never decrease.
:func:`operating_point` returns the stored point of a threshold: exact when the
threshold is stored, else the nearest stricter stored one.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

ROC_MAX_POINTS = 200
GRID_STEP = 0.01
ABOVE_ONE = math.nextafter(1.0, 2.0)
"""A threshold no probability reaches: the (0, 0) corner of the curve."""


def rates_at(probabilities: np.ndarray, same: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of the rule ``p ≥ t`` for each threshold ``t`` (exact counts, any order of thresholds)."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(same, dtype=bool).ravel()
    if p.shape != y.shape:
        raise ValueError(f"{len(p)} probabilities for {len(y)} labels")
    if y.all() or not y.any():
        raise ValueError("an ROC needs both same-patient and different-patient pairs")
    t = np.asarray(thresholds, dtype=np.float64)
    pos, neg = np.sort(p[y]), np.sort(p[~y])
    tpr = (len(pos) - np.searchsorted(pos, t, side="left")) / len(pos)
    fpr = (len(neg) - np.searchsorted(neg, t, side="left")) / len(neg)
    return fpr, tpr


def roc_points(probabilities: np.ndarray, same: np.ndarray, max_points: int = ROC_MAX_POINTS,
               grid_step: float = GRID_STEP) -> dict[str, Any]:
    """The ROC of ``p ≥ t`` on labelled pairs as plain lists (see module docstring).

    Returns ``{"thresholds", "fpr", "tpr", "n_positive", "n_negative"}`` with at most
    ``max_points`` points, from (0, 0) to (1, 1), thresholds decreasing.
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(same, dtype=bool).ravel()
    if not np.isfinite(p).all():
        raise ValueError("probabilities must be finite")
    grid = np.round(np.arange(0.0, 1.0 + grid_step / 2, grid_step), 10)
    n_curve = max_points - len(grid) - 1
    if n_curve < 0:
        raise ValueError(f"max_points={max_points} is too few for a {grid_step} grid ({len(grid) + 1} points)")
    distinct = np.unique(p)[::-1]
    if len(distinct) > n_curve:
        distinct = distinct[np.unique(np.linspace(0, len(distinct) - 1, n_curve).round().astype(int))]
    thresholds = np.unique(np.r_[grid, distinct, ABOVE_ONE])[::-1]
    fpr, tpr = rates_at(p, y, thresholds)
    return {"thresholds": thresholds.tolist(), "fpr": fpr.tolist(), "tpr": tpr.tolist(),
            "n_positive": int(y.sum()), "n_negative": int((~y).sum())}


@dataclass(frozen=True)
class OperatingPoint:
    """Where a probability threshold puts the verifier on its ROC (``exact``: the threshold itself is stored)."""

    threshold: float
    stored_threshold: float
    fpr: float
    tpr: float
    exact: bool

    @property
    def sensitivity(self) -> float:
        return self.tpr

    @property
    def specificity(self) -> float:
        return 1.0 - self.fpr


def operating_point(roc: Mapping[str, Any], threshold: float, tol: float = 1e-9) -> OperatingPoint:
    """The stored ROC point of the rule ``p ≥ threshold``: the smallest stored threshold ≥ ``threshold``."""
    t = np.asarray(roc["thresholds"], dtype=np.float64)
    fpr, tpr = np.asarray(roc["fpr"], dtype=np.float64), np.asarray(roc["tpr"], dtype=np.float64)
    if not (len(t) == len(fpr) == len(tpr)) or len(t) == 0:
        raise ValueError("an ROC needs equally long, non-empty thresholds, fpr and tpr")
    at_or_above = np.flatnonzero(t >= threshold - tol)
    k = int(at_or_above[np.argmin(t[at_or_above])]) if len(at_or_above) else int(np.argmax(t))
    return OperatingPoint(threshold=float(threshold), stored_threshold=float(t[k]), fpr=float(fpr[k]),
                          tpr=float(tpr[k]), exact=bool(abs(t[k] - threshold) <= tol))

"""Stored ROC points of the verifier (report.json's ``verification.roc``) and operating points read off them."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from reid_core.roc import ABOVE_ONE, operating_point, rates_at, roc_points
from reid_core.ui.verification import report_roc, threshold_operating_point
from reid_core.verify import PairVerifier, verification_metrics


def _pairs(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.4
    logit = np.where(same, 1.5, -1.5) + rng.normal(size=n) * 1.7
    return 1.0 / (1.0 + np.exp(-logit)), same


def _brute(p: np.ndarray, same: np.ndarray, t: float) -> tuple[float, float]:
    called = p >= t
    return float(called[~same].mean()), float(called[same].mean())


def test_roc_points_are_exact_monotone_and_bounded():
    p, same = _pairs()
    roc = roc_points(p, same)
    t, fpr, tpr = (np.asarray(roc[k]) for k in ("thresholds", "fpr", "tpr"))
    assert len(t) <= 200 and len(t) == len(fpr) == len(tpr)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert t[0] == ABOVE_ONE and t[-1] == 0.0 and np.all(np.diff(t) < 0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    for k in range(0, len(t), 7):  # every stored point is the rule p ≥ t counted exactly
        assert (fpr[k], tpr[k]) == pytest.approx(_brute(p, same, t[k]), abs=1e-12)
    grid = np.round(np.arange(0, 101) / 100, 10)
    assert set(grid) <= set(np.round(t, 10))  # the slider's 0.01 grid is stored exactly
    assert roc["n_positive"] == same.sum() and roc["n_negative"] == (~same).sum()
    # the downsampled curve keeps the area: trapezoid AUC within 0.005 of the exact one
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(same, p), abs=5e-3)


def test_small_sets_keep_every_sklearn_point():
    p, same = _pairs(60, seed=2)
    roc = roc_points(p, same)
    fpr_ref, tpr_ref, _ = roc_curve(same, p, drop_intermediate=False)
    ours = {(round(a, 12), round(b, 12)) for a, b in zip(roc["fpr"], roc["tpr"])}
    assert {(round(a, 12), round(b, 12)) for a, b in zip(fpr_ref, tpr_ref)} <= ours
    with pytest.raises(ValueError, match="both"):
        roc_points(p, np.ones_like(same))
    with pytest.raises(ValueError, match="too few"):
        roc_points(p, same, max_points=50)


def test_operating_point_matches_the_rule_and_moves_with_the_threshold():
    p, same = _pairs()
    roc = roc_points(p, same)
    report = {"verification": {"roc": roc}}
    points = [threshold_operating_point(report, t) for t in (0.1, 0.3, 0.5, 0.7, 0.9)]
    for op, t in zip(points, (0.1, 0.3, 0.5, 0.7, 0.9)):
        assert op.exact and op.stored_threshold == pytest.approx(t)
        assert (op.fpr, op.tpr) == pytest.approx(_brute(p, same, t), abs=1e-12)
        assert op.sensitivity == op.tpr and op.specificity == pytest.approx(1 - op.fpr)
    sens = [op.sensitivity for op in points]
    spec = [op.specificity for op in points]
    assert sens == sorted(sens, reverse=True) and sens[0] > sens[-1]  # stricter threshold: fewer matches
    assert spec == sorted(spec) and spec[0] < spec[-1]
    off_grid = operating_point(roc, 0.4321)  # between stored thresholds: the nearest stricter stored one
    assert not off_grid.exact and off_grid.stored_threshold >= 0.4321
    assert off_grid.stored_threshold == min(x for x in roc["thresholds"] if x >= 0.4321)
    assert threshold_operating_point({"verification": {}}, 0.5) is None and report_roc(None) is None
    assert report_roc({"verification": {"roc": {"thresholds": [1.0], "fpr": [], "tpr": [0.0]}}}) is None


def test_rates_at_counts_ties_as_called():
    fpr, tpr = rates_at(np.array([0.2, 0.5, 0.5, 0.9]), np.array([False, True, False, True]), [0.5])
    assert (fpr[0], tpr[0]) == (0.5, 1.0)


def test_verification_metrics_store_the_roc_of_their_pairs():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(40), 3)
    x = (rng.normal(size=(40, 8))[labels] * 3 + rng.normal(size=(120, 8))).astype(np.float32)
    ver = PairVerifier().fit(x[:60], labels[:60], rng)
    out = verification_metrics(ver, x[60:], labels[60:], rng=np.random.default_rng(1), n_boot=20)
    roc = out["roc"]
    assert roc["n_positive"] == out["n_positive_pairs"] and roc["n_negative"] == out["n_negative_pairs"]
    area = np.trapezoid(roc["tpr"], roc["fpr"])
    assert area == pytest.approx(out["roc_auc"], abs=0.01)  # the same pairs, ranked by the same score
    at_half = operating_point(roc, ver.threshold)
    assert at_half.sensitivity == pytest.approx(out["sensitivity"], abs=1e-9)
    assert at_half.specificity == pytest.approx(out["specificity"], abs=1e-9)
    assert "roc" not in verification_metrics(ver, x[60:], labels[60:], rng=1, n_boot=10, roc_max_points=0)

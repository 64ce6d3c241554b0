"""Pair verifier, pair sampling and the patient bootstrap."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from reid_core import bootstrap, verify
from reid_core.errors import WorkspaceError
from reid_core.verify import (
    PairVerifier,
    VerificationResult,
    make_pairs,
    pair_distances,
    verification_metrics,
)


def _clusters(n_patients, per=3, dim=8, spread=10.0, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_patients), per)
    centres = rng.normal(size=(n_patients, dim)) * spread
    x = (centres[labels] + noise * rng.normal(size=(len(labels), dim))).astype(np.float32)
    return x, labels


# -- pairs --------------------------------------------------------------------
def test_make_pairs_all_positives_and_balanced_negatives():
    labels = np.array(["p1", "p2", "p1", "p3", "p2", "p1", "p4"])
    i, j, same = make_pairs(labels, np.random.default_rng(0))
    pos = {(a, b) for a, b in zip(i[same], j[same])}
    assert pos == {(0, 2), (0, 5), (2, 5), (1, 4)}
    assert (~same).sum() == same.sum()
    assert np.all(i < j)
    assert np.all(labels[i[~same]] != labels[j[~same]])
    assert len({(a, b) for a, b in zip(i, j)}) == len(i)  # no pair twice


def test_make_pairs_cap_and_large_set_sampling():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(800), 3)  # 2,400 images: rejection-sampled negatives
    i, j, same = make_pairs(labels, rng, max_negatives_per_positive=2, max_pairs=900)
    assert same.sum() == 300 and (~same).sum() == 600
    assert np.all(labels[i[same]] == labels[j[same]]) and np.all(labels[i[~same]] != labels[j[~same]])
    assert len(np.unique(i * 10_000 + j)) == len(i) and np.all(i < j)
    a, b = make_pairs(labels, np.random.default_rng(5))[:2], make_pairs(labels, np.random.default_rng(5))[:2]
    np.testing.assert_array_equal(a[0], b[0])  # deterministic given the rng


def test_lower_triangle_decoding_exact():
    u = np.r_[np.arange(5000), 2**40 + np.arange(1000), 2**48 - 1]
    a, b = verify._decode_lower_triangle(u)
    assert np.all((0 <= a) & (a < b))
    np.testing.assert_array_equal(b * (b - 1) // 2 + a, u)


# -- verifier -------------------------------------------------------------------
def test_separated_clusters_auc_one_and_threshold_between_distances():
    x, labels = _clusters(40)
    rng = np.random.default_rng(0)
    v = PairVerifier().fit(x, labels, rng)
    i, j, same = make_pairs(labels, np.random.default_rng(1))
    d = pair_distances(x, i, j)
    assert v.coef < 0
    assert d[same].max() < v.distance_threshold < d[~same].min()
    assert v.predict_proba(v.distance_threshold) == pytest.approx(0.5)
    assert roc_auc_score(same, v.predict_proba(d)) == pytest.approx(1.0)
    np.testing.assert_array_equal(v.predict(d), same)
    r = v.verify(x[0], x[1])
    assert isinstance(r, VerificationResult) and r.same_patient
    assert r.distance == pytest.approx(np.linalg.norm(x[0].astype(float) - x[1]), rel=1e-6)
    assert not v.verify(x[0], x[3]).same_patient


def test_fit_on_val_report_on_test_with_ci():
    x, labels = _clusters(60, seed=1)
    val, test = labels < 30, labels >= 30
    v = PairVerifier().fit(x[val], labels[val], np.random.default_rng(0))
    m = verification_metrics(v, x[test], labels[test], rng=np.random.default_rng(1), n_boot=200)
    for key in ("roc_auc", "accuracy", "sensitivity", "specificity", "f1"):
        assert m[key] == pytest.approx(1.0)
        assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"]
    assert m["threshold"] == pytest.approx(v.distance_threshold)
    assert m["n_patients"] == 30 and m["n_positive_pairs"] == 30 * 3 and m["n_negative_pairs"] == 90


def test_point_estimates_match_sklearn_and_ci_narrows_with_more_patients():
    x, labels = _clusters(300, per=3, dim=4, spread=1.0, noise=0.8, seed=2)  # overlapping
    v = PairVerifier().fit(x[labels < 100], labels[labels < 100], np.random.default_rng(0))
    widths = []
    for n_pat in (20, 200):
        sel = (labels >= 100) & (labels < 100 + n_pat)
        m = verification_metrics(v, x[sel], labels[sel], rng=np.random.default_rng(3), n_boot=300)
        i, j, same = make_pairs(labels[sel], np.random.default_rng(3))  # same rng stream => same pairs
        d = pair_distances(x[sel], i, j)
        pred = v.predict(d)
        assert m["roc_auc"] == pytest.approx(roc_auc_score(same, -d))
        assert m["accuracy"] == pytest.approx(accuracy_score(same, pred))
        assert m["f1"] == pytest.approx(f1_score(same, pred))
        assert 0.5 < m["roc_auc"] < 1.0
        for key in ("roc_auc", "accuracy", "f1"):
            assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"]
        widths.append(m["roc_auc_ci_high"] - m["roc_auc_ci_low"])
    assert widths[1] < widths[0] / 1.5


def test_json_round_trip_exact(tmp_path):
    x, labels = _clusters(20)
    v = PairVerifier(threshold=0.7).fit(x, labels, np.random.default_rng(0))
    w = PairVerifier.from_json(v.to_json())
    assert (w.coef, w.intercept, w.threshold) == (v.coef, v.intercept, v.threshold)
    assert w.fit_stats == v.fit_stats
    path = v.save(tmp_path)
    assert path.name == "verifier.json"
    data = json.loads(path.read_text())
    assert {"coef", "intercept", "threshold", "fit_stats"} <= set(data)
    u = PairVerifier.load(tmp_path)
    d = np.linspace(0, 40, 9)
    np.testing.assert_array_equal(u.predict_proba(d), v.predict_proba(d))
    assert u.distance_threshold == v.distance_threshold


def test_verifier_errors(tmp_path):
    with pytest.raises(RuntimeError):
        PairVerifier().predict_proba(1.0)
    with pytest.raises(ValueError):
        PairVerifier(threshold=1.0)
    with pytest.raises(ValueError):
        PairVerifier().fit(np.zeros((4, 2)), [0, 1, 2, 3])  # no positive pair
    with pytest.raises(ValueError):
        PairVerifier().fit_distances([1.0, 2.0], [True, True])
    with pytest.raises(ValueError):
        PairVerifier.from_json('{"format": "something-else"}')
    with pytest.raises(WorkspaceError):
        PairVerifier.load(tmp_path / "missing.json")
    (tmp_path / "verifier.json").write_text("{not json")
    with pytest.raises(WorkspaceError):
        PairVerifier.load(tmp_path)
    x, labels = _clusters(10)
    v = PairVerifier().fit(x, labels, 0)
    with pytest.raises(ValueError):
        v.verify(x[0], x[1][:4])
    with pytest.raises(ValueError):
        v.verify(np.zeros(5), np.zeros(5))  # dimension differs from the fit's 8


# -- bootstrap ------------------------------------------------------------------
def test_weighted_metrics_equal_sklearn_sample_weight():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 6, size=80).astype(float)  # many ties
    t = rng.random(80) < 0.4
    p = s >= 3
    w = rng.integers(0, 4, size=(3, 80)).astype(float)
    out = bootstrap.weighted_binary_metrics(s, t, p, w)
    for b in range(3):
        assert out["roc_auc"][b] == pytest.approx(roc_auc_score(t, s, sample_weight=w[b]))
        assert out["accuracy"][b] == pytest.approx(accuracy_score(t, p, sample_weight=w[b]))
        assert out["f1"][b] == pytest.approx(f1_score(t, p, sample_weight=w[b]))


def test_pair_weights_follow_patient_multiplicity():
    counts = np.array([[2, 0, 3]])
    pa, pb = np.array([0, 0, 0, 2]), np.array([0, 1, 2, 2])
    np.testing.assert_array_equal(bootstrap.pair_weights(counts, pa, pb), [[2, 0, 6, 3]])


def test_bootstrap_mean_ci():
    rng = np.random.default_rng(0)
    pid = np.repeat(np.arange(50), 2)
    v = rng.random(100)
    v[::7] = np.nan
    r = bootstrap.bootstrap_mean_ci(v, pid, n_boot=300, rng=1)
    assert r["value"] == pytest.approx(np.nanmean(v))
    assert r["ci_low"] < r["value"] < r["ci_high"]

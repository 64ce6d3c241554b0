"""Calibration of the same-patient probability: ECE on constructed cases, and a verifier fitted where it is used."""
from __future__ import annotations

import numpy as np
import pytest

from reid_core.calibration import calibration_summary, expected_calibration_error, reliability_table, weighted_ece
from reid_core.hard_pairs import nearest_neighbour, nearest_other_patient, top_k_neighbours
from reid_core.verify import PairVerifier, pair_distances


def test_ece_is_zero_when_frequencies_match_and_known_when_shifted():
    p = np.r_[np.full(8, 0.25), np.full(20, 0.85)]
    y = np.r_[[1, 1] + [0] * 6, [1] * 17 + [0] * 3].astype(bool)  # 2/8 = 0.25 and 17/20 = 0.85
    assert expected_calibration_error(p, y) == pytest.approx(0.0, abs=1e-12)
    p2 = np.r_[np.full(8, 0.35), np.full(20, 0.85)]  # first bin now 0.10 too confident
    assert expected_calibration_error(p2, y) == pytest.approx(0.10 * 8 / 28)
    rows = reliability_table(p2, y)
    assert [(r["n"], r["frequency"]) for r in rows] == [(8, 0.25), (20, 0.85)]


def test_integer_weights_equal_duplicated_pairs():
    rng = np.random.default_rng(0)
    p, y = rng.random(50), rng.random(50) < 0.4
    w = rng.integers(0, 4, 50)
    dup = np.repeat(np.arange(50), w)
    assert weighted_ece(p, y, w)[0] == pytest.approx(expected_calibration_error(p[dup], y[dup]))


def test_summary_on_negatives_only_is_mean_p_and_share_called_same():
    p = np.array([0.1, 0.6, 0.2, 0.9])
    s = calibration_summary(p, np.zeros(4, bool), np.array(["a", "b", "c", "d"]), np.array(["e", "f", "g", "h"]),
                            threshold=0.5, n_boot=200, rng=0)
    assert s["ece"] == pytest.approx(p.mean()) and s["called_same"] == pytest.approx(0.5)
    assert s["ece_ci_low"] <= s["ece"] <= s["ece_ci_high"] and s["n_pairs"] == 4 and s["n_patients"] == 8


def _clusters(n_pat=150, per=3, noise=0.35, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_pat, 6))
    emb = np.repeat(centres, per, axis=0) + noise * rng.normal(size=(n_pat * per, 6))
    return emb.astype(np.float32), np.repeat(np.arange(n_pat), per)


def test_neighbour_fit_is_calibrated_on_search_results_where_the_random_fit_is_not():
    emb, lab = _clusters()
    test_emb, test_lab = _clusters(seed=1)
    i, j, same = top_k_neighbours(test_emb, test_lab)
    d = pair_distances(test_emb, i, j)
    ece = {}
    for kind in ("random", "neighbours"):
        v = PairVerifier().fit(emb, lab, rng=0, pairs=kind)
        ece[kind] = expected_calibration_error(v.predict_proba(d), same)
    assert ece["neighbours"] < 0.05 < ece["random"]


def test_hard_pair_sets_are_what_they_claim():
    emb, lab = _clusters(n_pat=40)
    full = np.linalg.norm(emb[:, None].astype(np.float64) - emb[None], axis=-1)
    i, j = nearest_other_patient(emb, lab)
    other = np.where(lab[:, None] != lab[None], full, np.inf)
    np.testing.assert_array_equal(j, other.argmin(axis=1))
    q, nn, same = nearest_neighbour(emb, lab)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_array_equal(nn, full[q].argmin(axis=1))
    np.testing.assert_array_equal(same, lab[q] == lab[nn])
    ti, tj, _ = top_k_neighbours(emb, lab, k=3)
    np.testing.assert_array_equal(tj.reshape(-1, 3), np.argsort(full, axis=1)[:, :3])

"""1:N identification at gallery scale against a brute-force computation and hand-made known answers."""
from __future__ import annotations

import numpy as np
import pytest

from reid_core.identification import (Searches, det_curve, gallery_identification, identification_report,
                                      run_searches, threshold_at_fpir)


def _cohort(n_pat=80, seed=0, noise=0.6):
    rng = np.random.default_rng(seed)
    labels, orders, emb = [], [], []
    for p in range(n_pat):
        c = rng.normal(size=8)
        n = int(rng.integers(1, 5))
        for s in rng.permutation(n):  # rows not in study order: enrolment must pick the earliest study
            labels.append(f"P{p:03d}")
            orders.append(int(s))
            emb.append(c + noise * rng.normal(size=8))
    return np.asarray(emb, np.float32), np.asarray(labels), np.asarray(orders)


def _brute(emb, labels, orders, enrolled):
    """Independent: python loops over the full distance matrix."""
    gallery = {}
    for r, (lab, o) in enumerate(zip(labels, orders)):
        if lab in enrolled and (lab not in gallery or (o, r) < (orders[gallery[lab]], gallery[lab])):
            gallery[lab] = r
    g_rows = list(gallery.values())
    mated, nonmated = [], []
    for r in range(len(labels)):
        if r in g_rows:
            continue
        d = [float(np.linalg.norm(emb[r].astype(np.float64) - emb[g])) for g in g_rows]
        best = int(np.argmin(d))
        if labels[r] in enrolled:
            mated.append((d[best], labels[g_rows[best]] == labels[r]))
        else:
            nonmated.append(d[best])
    return mated, nonmated


def _brute_fnir_at_fpir(mated, nonmated, alpha):
    cands = sorted(set(nonmated)) + [np.inf]
    ok = [t for t in cands if np.mean([d < t for d in nonmated]) <= alpha]
    t = max(ok)
    fnir = 1 - np.mean([hit and d < t for d, hit in mated])
    return t, fnir


def test_searches_and_rates_match_brute_force():
    emb, labels, orders = _cohort()
    enrolled = sorted(set(labels))[:40]
    s = run_searches(emb, labels, orders, enrolled)
    mated, nonmated = _brute(emb, labels, orders, set(enrolled))
    assert s.n_gallery == 40 and len(s.mated_hit) == len(mated) and len(s.nonmated_distance) == len(nonmated)
    np.testing.assert_allclose(np.sort(s.nonmated_distance), np.sort(nonmated), rtol=1e-4, atol=1e-5)
    assert s.mated_hit.mean() == pytest.approx(np.mean([h for _, h in mated]))
    rep = identification_report(s, fpirs=(0.1, 0.02), n_boot=50, rng=0)
    assert rep["rank1"] == pytest.approx(np.mean([h for _, h in mated]))
    for row, alpha in zip(rep["fnir_at_fpir"], (0.1, 0.02)):
        t, fnir = _brute_fnir_at_fpir(mated, nonmated, alpha)
        assert row["distance_threshold"] == pytest.approx(t, rel=1e-4)
        assert row["fnir"] == pytest.approx(fnir, abs=1e-9) and row["fpir"] <= alpha
        assert row["fnir_ci_low"] <= row["fnir"] <= row["fnir_ci_high"]


def test_known_answer_threshold_fnir_and_unresolvable_rate():
    s = Searches(mated_distance=np.array([0.005, 0.02, 0.025, 0.5]), mated_hit=np.array([True, True, False, True]),
                 mated_patient=np.array(["a", "b", "c", "d"]), nonmated_distance=0.01 * np.arange(1, 201),
                 nonmated_patient=np.array([f"n{i}" for i in range(200)]), n_gallery=4)
    assert threshold_at_fpir(s.nonmated_distance, 0.01) == pytest.approx(0.03)  # d_(2): two below it, 2/200
    rep = identification_report(s, fpirs=(0.01, 0.001), n_boot=0)
    at1, at01 = rep["fnir_at_fpir"]
    assert at1["fpir"] == pytest.approx(0.01) and at1["fnir"] == pytest.approx(0.5)  # only 0.005 and 0.02 accepted
    assert "fnir" not in at01 and "1000" in at01["note"]  # 200 non-mated searches cannot resolve 0.1 %
    assert rep["rank1"] == pytest.approx(0.75)


def test_det_curve_is_monotone_and_spans_the_corners():
    emb, labels, orders = _cohort(seed=3)
    det = det_curve(run_searches(emb, labels, orders, sorted(set(labels))[:30]))
    fpir, fnir = np.array(det["fpir"]), np.array(det["fnir"])
    assert (np.diff(fpir) >= 0).all() and (np.diff(fnir) <= 0).all()
    assert fpir[-1] == 1.0 and det["distance_threshold"][-1] is None  # threshold +inf: every search answers
    assert fpir[0] <= 1 / 50


def test_gallery_sizes_are_nested_and_skip_when_patients_run_out():
    emb, labels, orders = _cohort(n_pat=80)
    out = gallery_identification(emb, labels, orders, sizes=(10, 40, 100), rng=1, n_boot=20, fpirs=(0.1,))
    assert [o["gallery_size"] for o in out] == [10, 40, 100]
    assert "skipped" in out[2] and "80" in out[2]["skipped"]
    assert out[0]["n_nonmated_patients"] == 70 and out[1]["n_nonmated_patients"] == 40
    assert out[0]["n_mated_patients"] <= 10 and out[1]["n_mated_patients"] <= 40

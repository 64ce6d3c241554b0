"""report.json content on embeddings with known structure, and the neighbour-vote diagnosis."""
from __future__ import annotations

import numpy as np
import pandas as pd

from reid_core.data.manifest import finalize_manifest
from reid_core.diagnosis import diagnosis_auc, finding_matrix
from reid_core.evaluate import evaluate_embeddings


def _data(n_pat=150, per=4, noise=0.2, seed=0):
    rng = np.random.default_rng(seed)
    rows, emb = [], []
    for p in range(n_pat):
        c = rng.normal(size=16)
        for s in range(per):
            sick = p % 4 == 0 and s >= 2
            rows.append({"image_id": f"{p}_{s}", "path": f"{p}_{s}.png", "patient_id": f"P{p}", "study_order": s,
                         "study_date": pd.Timestamp("2015-01-01") + pd.Timedelta(days=365 * s),
                         "findings": "Cardiomegaly" if sick else "No Finding"})
            emb.append(c + rng.normal(size=16) * noise + (1.5 * np.eye(16)[3] if sick else 0))
    m = finalize_manifest(pd.DataFrame(rows), dataset="toy")
    order = m["image_id"].map({r["image_id"]: i for i, r in enumerate(rows)}).to_numpy()
    return m, np.asarray(emb, np.float32)[order]


def test_report_has_required_keys_and_sane_values():
    m, e = _data()
    report, verifier = evaluate_embeddings(m, e, n_boot=50)
    r, v = report["retrieval"], report["verification"]
    assert r["precision_at_1"] > 0.95 and r["precision_at_1_ci_low"] <= r["precision_at_1"] <= r["precision_at_1_ci_high"]
    assert 0 < r["map_at_r"] <= 1 and 0 < r["r_precision"] <= 1
    assert v["auc"] > 0.99 and v["f1"] > 0.9 and v["threshold"] > 0
    assert verifier.distance_threshold == v["threshold"]
    lon, diag = report["longitudinal"], report["diagnosis"]
    assert lon["auc"] > 0.8 and lon["auc_ci_low"] <= lon["auc"] <= lon["auc_ci_high"] and lon["n_patients"] > 0
    assert diag["mean_auc_ci_low"] <= diag["mean_auc"] <= diag["mean_auc_ci_high"] and diag["n_images"] > 0
    curve = pd.DataFrame(report["database_size_curve"])
    assert curve["gallery_size"].is_monotonic_increasing and curve["precision_at_1"].iloc[-1] <= curve["precision_at_1"].iloc[0] + 1e-9


def test_noisier_embeddings_score_lower():
    m, good = _data(noise=0.2)
    _, bad = _data(noise=1.5)
    g, _ = evaluate_embeddings(m, good, n_boot=20)
    b, _ = evaluate_embeddings(m, bad, n_boot=20)
    assert b["retrieval"]["precision_at_1"] < g["retrieval"]["precision_at_1"]
    assert b["verification"]["auc"] < g["verification"]["auc"]


def test_finding_vote_uses_other_patients_only():
    m, e = _data()
    mat, vocab = finding_matrix(m["findings"])
    assert vocab == ["Cardiomegaly"] and mat.sum() == (m["findings"] == "Cardiomegaly").sum()
    res = diagnosis_auc(e, m["findings"], m["patient_id"].to_numpy(), k=10)
    # identity dominates the embedding, the finding is a small shift: the vote is informative but not perfect
    assert 0.5 < res["per_finding_auc"]["Cardiomegaly"] < 1.0


def test_all_mode_uses_every_patient_cross_fits_and_reports_identification():
    from reid_core.holdout import choose_evaluation_set

    m, e = _data(n_pat=150)
    ev = choose_evaluation_set(m, "all")
    report, verifier = evaluate_embeddings(m, e, n_boot=30, evaluation=ev, gallery_sizes=(100, 1000))
    assert report["evaluation_set"]["mode"] == "all" and report["evaluation_set"]["n_patients"] == 150
    assert report["retrieval"]["n_patients"] == 150 and report["verification"]["n_patients"] == 150
    assert "cross-fitting" in report["verification"]["protocol"]
    g100, g1000 = report["identification"]["galleries"]
    assert g100["gallery_size"] == 100 and g100["n_nonmated_patients"] == 50 and "skipped" in g1000
    assert g100["rank1_ci_low"] <= g100["rank1"] <= g100["rank1_ci_high"]
    cal = report["calibration"]
    assert set(cal) >= {"random", "search_results", "nearest_neighbour", "hardest_negative"}
    assert cal["hardest_negative"]["frequency"] == 0 and cal["search_results"]["ece"] < 0.1
    assert verifier.fit_stats["pairs"] == "neighbours" and verifier.fit_stats["n_patients"] == 150

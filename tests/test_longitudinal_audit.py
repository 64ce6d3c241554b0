"""Drift and ID audit on embeddings with known structure (so a wrong definition fails)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from reid_core.audit import audit_ids
from reid_core.longitudinal import drift_table, matched_drift_auc
from reid_core.ui import workspaces
from reid_core.verify import PairVerifier
from reid_core.workspace import Workspace


def _longitudinal(n_pat: int = 60, n_st: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows, emb = [], []
    for p in range(n_pat):
        centre = rng.normal(size=16) * 3
        onset = rng.integers(1, n_st) if p % 3 == 0 else n_st  # a third develop a finding
        for s in range(n_st):
            abnormal = s >= onset
            rows.append({"image_id": f"{p}_{s}", "patient_id": str(p), "study_order": s,
                         "study_date": pd.Timestamp("2010-01-01") + pd.Timedelta(days=400 * s),
                         "findings": "Effusion" if abnormal else "No Finding"})
            emb.append(centre + rng.normal(size=16) * 0.3 + (2.0 if abnormal else 0.0) * np.eye(16)[0])
    return pd.DataFrame(rows), np.array(emb, dtype=np.float32)


def test_drift_table_baseline_and_time():
    m, e = _longitudinal()
    t = drift_table(m, e)
    assert set(t["baseline_id"].str.endswith("_0")) == {True}
    assert (t["study_order"] > 0).all() and len(t) == 60 * 4
    row = t[t["image_id"] == "5_3"].iloc[0]
    assert abs(row["years_since_baseline"] - 1200 / 365.25) < 1e-9
    assert abs(row["drift"] - np.linalg.norm(e[5 * 5 + 3] - e[5 * 5])) < 1e-5


def test_baseline_is_first_normal_study():
    m, e = _longitudinal(3, 4)
    m.loc[m["image_id"] == "1_0", "findings"] = "Nodule"
    t = drift_table(m, e)
    assert set(t.loc[t["patient_id"] == "1", "baseline_id"]) == {"1_1"}
    assert t.loc[t["patient_id"] == "1", "study_order"].min() == 2


def test_matched_auc_detects_shift_and_ignores_time_confound():
    m, e = _longitudinal()
    res = matched_drift_auc(drift_table(m, e))
    assert res["auc"] > 0.95 and res["n_abnormal"] > 0 and res["n_normal"] > 0
    # a pure time confound: drift = years, abnormal studies are later → unmatched AUC high, matched ≈ 0.5
    rng = np.random.default_rng(1)
    years = rng.uniform(0, 8, 4000)
    t = pd.DataFrame({"years_since_baseline": years, "drift": np.floor(years),  # constant within each bin
                      "abnormal": rng.random(4000) < years / 10})
    unmatched = matched_drift_auc(t, bins_years=(0.0, np.inf))
    assert unmatched["auc"] > 0.6
    matched = matched_drift_auc(t, bins_years=tuple(range(9)) + (np.inf,))
    assert abs(matched["auc"] - 0.5) < 1e-9


def test_audit_finds_swapped_ids():
    rng = np.random.default_rng(0)
    n_pat, per = 100, 4
    centres = rng.normal(size=(n_pat, 32)) * 2
    true = np.repeat(np.arange(n_pat), per)
    emb = (centres[true] + rng.normal(size=(len(true), 32)) * 0.2).astype(np.float32)
    recorded = true.copy()
    swapped = rng.choice(len(true), size=8, replace=False)  # 2%
    for i in swapped:
        recorded[i] = (true[i] + 1 + rng.integers(n_pat - 1)) % n_pat
    ids = np.array([f"im{i}" for i in range(len(true))])
    verifier = PairVerifier().fit(emb, true.astype(str), rng)
    res = audit_ids(emb, ids, recorded.astype(str), verifier)
    flagged = set(res.mislabelled["image_id"])
    truth = set(ids[swapped])
    precision = len(flagged & truth) / max(len(flagged), 1)
    recall = len(flagged & truth) / len(truth)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    # one person under two IDs: rename half of patient 7's images to a new ID
    dup = recorded.astype(str).copy()
    dup[np.flatnonzero(true == 7)[:2]] = "NEW"
    pairs = audit_ids(emb, ids, dup, verifier).same_person_pairs
    assert {"7", "NEW"} in [{a, b} for a, b in zip(pairs["patient_a"], pairs["patient_b"])]


def test_embedder_summary_says_what_the_embedder_was_trained_on(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.embedder_dir.mkdir(parents=True)
    (ws.embedder_weights_path).write_bytes(b"")
    meta = {"meta": {"embedder": {"backbone": "resnet18", "embedding_dim": 8, "image_size": 32},
                     "extra": {"train_config": {"train_findings": "normal"}}}}
    (ws.embedder_record_path).write_text(json.dumps(meta))
    assert workspaces.embedder_summary(ws).train_findings == "normal"
    meta["meta"]["extra"] = {}  # a checkpoint from before the option: trained on every film
    (ws.embedder_record_path).write_text(json.dumps(meta))
    assert workspaces.embedder_summary(ws).train_findings == "all"

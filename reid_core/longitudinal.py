"""Longitudinal drift: how far a patient's later studies move from a normal baseline.

For each patient the baseline is the earliest study labelled ``No Finding``;
the drift of every later study is the Euclidean distance of its embedding from
the baseline's. An identity embedding is trained to be invariant to
acquisition, so drift that exceeds a patient's usual scatter is a signal that
something in the chest changed.

Evaluation: ROC AUC of drift for "abnormal follow-up" versus "still-normal
follow-up", *matched on time since baseline*: positives are only compared
with negatives of the same time bin (a stratified AUC, i.e. the Mann–Whitney
statistic restricted to within-bin pairs), so drift that merely grows with
elapsed time cannot score.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from reid_core.data.manifest import NO_FINDING

DEFAULT_TIME_BINS_YEARS = (0.0, 1.0, 2.0, 4.0, 7.0, np.inf)


def drift_table(manifest: pd.DataFrame, embeddings: np.ndarray) -> pd.DataFrame:
    """One row per follow-up image after its patient's normal baseline.

    ``embeddings`` row i belongs to ``manifest`` row i. Columns: image_id,
    patient_id, baseline_id, study_order, years_since_baseline (from dates, or
    study-order steps when dates are missing), drift, abnormal, findings.
    """
    if len(manifest) != len(embeddings):
        raise ValueError(f"{len(manifest)} manifest rows but {len(embeddings)} embeddings")
    m = manifest.reset_index(drop=True).assign(_row=np.arange(len(manifest)))
    normal = m[m["findings"] == NO_FINDING].sort_values(["patient_id", "study_order", "image_id"])
    base = normal.groupby("patient_id", sort=False).head(1).set_index("patient_id")
    later = m[m["patient_id"].isin(base.index)].copy()
    b = base.loc[later["patient_id"]]
    later["baseline_id"] = b["image_id"].to_numpy()
    keep = later["study_order"].to_numpy() > b["study_order"].to_numpy()
    later, b = later[keep], b[keep]
    days = (later["study_date"].to_numpy() - b["study_date"].to_numpy()) / np.timedelta64(1, "D")
    steps = (later["study_order"].to_numpy() - b["study_order"].to_numpy()).astype(float)
    years = np.where(np.isfinite(days), days / 365.25, steps)
    diff = embeddings[later["_row"].to_numpy()] - embeddings[b["_row"].to_numpy()]
    return pd.DataFrame({
        "image_id": later["image_id"].to_numpy(),
        "patient_id": later["patient_id"].to_numpy(),
        "baseline_id": later["baseline_id"].to_numpy(),
        "study_order": later["study_order"].to_numpy(),
        "years_since_baseline": years,
        "drift": np.linalg.norm(diff, axis=1),
        "abnormal": (later["findings"] != NO_FINDING).to_numpy(),
        "findings": later["findings"].to_numpy(),
    })


def _auc_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """(Mann–Whitney U with ties as 1/2, number of positive×negative pairs)."""
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.0, 0
    ranks = rankdata(scores)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u), n_pos * n_neg


def matched_drift_auc(table: pd.DataFrame, bins_years: tuple[float, ...] = DEFAULT_TIME_BINS_YEARS) -> dict:
    """Stratified ROC AUC of drift (abnormal vs still-normal), within time-since-baseline bins."""
    if table.empty:
        return {"auc": float("nan"), "n_pairs": 0, "n_abnormal": 0, "n_normal": 0, "per_bin": []}
    bin_idx = np.digitize(table["years_since_baseline"].to_numpy(), bins_years[1:-1])
    u_total, pairs_total, per_bin = 0.0, 0, []
    for k in np.unique(bin_idx):
        sel = bin_idx == k
        u, pairs = _auc_counts(table["drift"].to_numpy()[sel], table["abnormal"].to_numpy()[sel])
        per_bin.append({"years_from": bins_years[k], "years_to": bins_years[k + 1],
                        "n": int(sel.sum()), "auc": u / pairs if pairs else float("nan")})
        u_total += u
        pairs_total += pairs
    return {
        "auc": u_total / pairs_total if pairs_total else float("nan"),
        "n_pairs": pairs_total,
        "n_abnormal": int(table["abnormal"].sum()),
        "n_normal": int((~table["abnormal"]).sum()),
        "per_bin": per_bin,
    }


def matched_drift_auc_ci(table: pd.DataFrame, n_boot: int = 200, rng: np.random.Generator | int | None = 0,
                         level: float = 0.95) -> dict:
    """:func:`matched_drift_auc` plus ``auc_ci_low``/``auc_ci_high`` (follow-ups resampled by patient),
    ``n_boot`` and ``n_patients``."""
    from reid_core.bootstrap import row_bootstrap_ci

    out = matched_drift_auc(table)
    pids = table["patient_id"].to_numpy() if len(table) else np.empty(0)
    lo, hi = row_bootstrap_ci(lambda rows: matched_drift_auc(table.iloc[rows])["auc"], pids, n_boot, rng, level)
    out.update({"auc_ci_low": lo, "auc_ci_high": hi, "n_boot": int(n_boot), "n_patients": int(len(set(pids)))})
    return out

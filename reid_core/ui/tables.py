"""Tables the pages show: dataset summary, colour-by values, neighbours, report metrics, training log.

Only the manifest columns of :data:`DISPLAY_COLUMNS` reach the screen, and the
identifiers among them are pseudonyms for DICOM folders (``prepare`` replaces
PatientIDs and SOP UIDs by keyed pseudonyms: :mod:`reid_core.pseudonyms`); for
public datasets they are the datasets' own de-identified ids. Dates appear as
``study_day``, days from the patient's first study, and as calendar dates only
where the user opted in (:mod:`reid_core.ui.dates`). Uploaded files contribute
pixels only.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reid_core.data.manifest import NO_FINDING
from reid_core.jsonfile import read_json_object
from reid_core.ui.dates import day_text, study_days, with_study_days
from reid_core.ui.formatting import for_display, format_age

DISPLAY_COLUMNS: tuple[str, ...] = ("image_id", "patient_id", "study_order", "study_day", "calendar_date", "view",
                                    "sex", "age", "findings", "dataset", "split")
COLOR_OPTIONS: tuple[str, ...] = ("patient", "sex", "age", "finding", "view", "split", "dataset")
MULTIPLE_FINDINGS = "several findings"


# ---------------------------------------------------------------------------- dataset summary
@dataclass
class DatasetSummary:
    """Counts of one manifest for the overview page."""

    n_images: int
    n_patients: int
    studies_per_patient: pd.Series  # index: number of images, value: number of patients
    views: pd.Series
    sexes: pd.Series
    splits: pd.Series
    datasets: pd.Series
    findings: pd.Series  # one count per finding label (an image with two findings counts twice)
    follow_up_days: int | None  # the longest span from a patient's first to last dated study
    age_median: float | None


def finding_counts(findings: pd.Series) -> pd.Series:
    """Images per finding label (``No Finding`` included), most frequent first."""
    if findings.empty:
        return pd.Series(dtype="int64", name="images")
    exploded = findings.astype(str).str.split("|").explode().str.strip()
    counts = exploded[exploded != ""].value_counts()
    counts.name = "images"
    counts.index.name = "finding"
    return counts


def dataset_summary(manifest: pd.DataFrame) -> DatasetSummary:
    per_patient = manifest.groupby("patient_id").size()
    spp = per_patient.value_counts().sort_index()
    spp.index.name, spp.name = "images per patient", "patients"
    days = study_days(manifest["patient_id"], manifest["study_date"]).dropna() if "study_date" in manifest \
        else pd.Series(dtype="Int64")
    ages = manifest["age"].dropna() if "age" in manifest else pd.Series(dtype=float)

    def counts(col: str) -> pd.Series:
        return manifest[col].astype(str).value_counts() if col in manifest else pd.Series(dtype="int64")

    return DatasetSummary(
        n_images=len(manifest), n_patients=int(per_patient.size), studies_per_patient=spp,
        views=counts("view"), sexes=counts("sex"), splits=counts("split"), datasets=counts("dataset"),
        findings=finding_counts(manifest["findings"]) if "findings" in manifest else pd.Series(dtype="int64"),
        follow_up_days=int(days.max()) if len(days) else None,
        age_median=float(ages.median()) if len(ages) else None,
    )


# ---------------------------------------------------------------------------- colour-by values
def finding_label(findings: str) -> str:
    """One label per image for colouring: ``No Finding``, the single finding, or ``several findings``."""
    parts = [p for p in str(findings).split("|") if p and p != NO_FINDING]
    if not parts:
        return NO_FINDING
    return parts[0] if len(parts) == 1 else MULTIPLE_FINDINGS


def color_values(frame: pd.DataFrame, by: str) -> tuple[np.ndarray, bool]:
    """``(values, is_numeric)`` to colour ``frame``'s points by one of :data:`COLOR_OPTIONS`."""
    if by not in COLOR_OPTIONS:
        raise ValueError(f"cannot colour by {by!r}; choose one of {COLOR_OPTIONS}")
    if by == "age":
        return pd.to_numeric(frame["age"], errors="coerce").to_numpy(dtype=float), True
    if by == "finding":
        return frame["findings"].map(finding_label).to_numpy(dtype=object), False
    column = "patient_id" if by == "patient" else by
    return frame[column].astype(str).to_numpy(dtype=object), False


def display_frame(manifest: pd.DataFrame, image_ids: list[str] | np.ndarray | None = None,
                  formatted: bool = True) -> pd.DataFrame:
    """The display columns of ``manifest`` (rows of ``image_ids`` in that order, when given).

    Dates are ``study_day`` (added here when the manifest lacks it); ``study_date`` is never shown.
    ``formatted``: dates and ages as every page shows them (:func:`reid_core.ui.formatting.for_display`);
    False keeps the stored values (exports).
    """
    if "study_day" not in manifest.columns:
        manifest = with_study_days(manifest)
    cols = [c for c in DISPLAY_COLUMNS if c in manifest.columns]
    if image_ids is None:
        out = manifest[cols].reset_index(drop=True)
    else:
        by_id = manifest.set_index("image_id", drop=False)
        out = by_id.loc[list(image_ids), cols].reset_index(drop=True)
    return for_display(out) if formatted else out


def selection_table(manifest: pd.DataFrame, image_ids: list[str], coords: np.ndarray | None = None,
                    axis_names: tuple[str, ...] = ("x", "y", "z"), embeddings: np.ndarray | None = None
                    ) -> pd.DataFrame:
    """The selected images' stored metadata, then their map coordinates and (optionally) embeddings.

    ``coords`` (N×2 or N×3) and ``embeddings`` (N×D) are aligned with ``image_ids``; coordinates take the
    names in ``axis_names`` (e.g. ``PC1``), embedding dimensions ``emb_0`` … ``emb_{D-1}``.
    """
    out = display_frame(manifest, image_ids, formatted=False)
    if coords is not None:
        coords = np.asarray(coords, dtype=float)
        if coords.shape[0] != len(out):
            raise ValueError(f"{coords.shape[0]} coordinate rows for {len(out)} images")
        for k in range(coords.shape[1]):
            out[axis_names[k]] = coords[:, k]
    if embeddings is not None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.shape[0] != len(out):
            raise ValueError(f"{embeddings.shape[0]} embedding rows for {len(out)} images")
        emb = pd.DataFrame(embeddings, columns=[f"emb_{k}" for k in range(embeddings.shape[1])])
        out = pd.concat([out, emb], axis=1)
    return out


def selection_csv(manifest: pd.DataFrame, image_ids: list[str], coords: np.ndarray | None = None,
                  axis_names: tuple[str, ...] = ("x", "y", "z"), embeddings: np.ndarray | None = None) -> str:
    """CSV text of :func:`selection_table` (for the export button); dates as ``YYYY-MM-DD``."""
    return selection_table(manifest, image_ids, coords, axis_names, embeddings).to_csv(
        index=False, date_format="%Y-%m-%d")


def caption(row: pd.Series | dict) -> str:
    """A one-line caption: ``id · patient · day N · age · sex · view · findings`` (see :func:`day_text`)."""
    get = row.get
    parts = [str(get("image_id", "")), str(get("patient_id", "")), day_text(row)]
    parts.append(format_age(get("age")))
    for key in ("sex", "view"):
        value = get(key)
        if value is not None and not pd.isna(value) and str(value) not in ("U", "UNKNOWN"):
            parts.append(str(value))
    parts.append(str(get("findings", NO_FINDING)).replace("|", ", "))
    return " · ".join(p for p in parts if p)


# ---------------------------------------------------------------------------- neighbours
def neighbour_table(manifest: pd.DataFrame, image_ids: np.ndarray | list[str], distances: np.ndarray,
                    probabilities: np.ndarray | None = None, query_patient: str | None = None) -> pd.DataFrame:
    """Ranked neighbours with distance, same-patient probability, display metadata and a true-patient flag.

    ``image_ids`` may hold ``None`` for slots an approximate index could not fill; those rows are dropped.
    """
    ids = [str(i) for i in image_ids if i is not None]
    keep = [i is not None for i in image_ids]
    d = np.asarray(distances, dtype=float)[keep]
    out = display_frame(manifest, ids)
    out.insert(0, "rank", np.arange(1, len(ids) + 1))
    out.insert(2, "distance", d)
    if probabilities is not None:
        out.insert(3, "p_same", np.asarray(probabilities, dtype=float)[keep])
    if query_patient is not None:
        out["true_patient"] = out["patient_id"].astype(str) == str(query_patient)
    return out


def patient_studies(manifest: pd.DataFrame, patient_id: str) -> pd.DataFrame:
    """A patient's images in time order (study order, then date, then id)."""
    rows = manifest[manifest["patient_id"].astype(str) == str(patient_id)]
    return rows.sort_values(["study_order", "study_date", "image_id"], kind="stable").reset_index(drop=True)


def longitudinal_patients(manifest: pd.DataFrame, drift: pd.DataFrame) -> list[str]:
    """Patients worth showing over time: those with drift rows first, then other multi-image patients."""
    with_drift = list(dict.fromkeys(drift["patient_id"].astype(str))) if len(drift) else []
    counts = manifest.groupby("patient_id").size()
    multi = [str(p) for p in counts[counts >= 2].index if str(p) not in set(with_drift)]
    return with_drift + multi


# ---------------------------------------------------------------------------- report.json
def load_report(path: str | Path) -> dict[str, Any]:
    """``report.json`` as a dict; a missing or corrupt file raises :class:`WorkspaceError`."""
    return read_json_object(path)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


_REPORT_ROWS: tuple[tuple[str, str, str, str], ...] = (
    # (section, label, report key, CI key prefix)
    ("retrieval", "P@1", "precision_at_1", "precision_at_1"),
    ("retrieval", "P@5", "precision_at_5", "precision_at_5"),
    ("retrieval", "P@10", "precision_at_10", "precision_at_10"),
    ("retrieval", "R-precision", "r_precision", "r_precision"),
    ("retrieval", "mAP@R", "map_at_r", "map_at_r"),
    ("verification", "ROC AUC", "roc_auc", "roc_auc"),
    ("verification", "accuracy", "accuracy", "accuracy"),
    ("verification", "sensitivity", "sensitivity", "sensitivity"),
    ("verification", "specificity", "specificity", "specificity"),
    ("verification", "F1", "f1", "f1"),
    ("verification", "distance threshold", "threshold", ""),
)


def _n_text(section: str, node: dict[str, Any]) -> str:
    """The n a section's numbers stand on: images and patients for retrieval, pairs and patients for pairs."""
    if section == "retrieval" and "n_images" in node:
        return f"{node['n_images']} images, {node.get('n_patients')} patients ({node.get('n_queries')} queries)"
    if section == "verification" and "n_pairs" in node:
        return f"{node['n_pairs']} pairs, {node.get('n_patients')} patients"
    if section == "longitudinal" and "n_abnormal" in node:
        return f"{node.get('n_abnormal')} abnormal vs {node.get('n_normal')} normal follow-ups"
    if "n_queries" in node:
        return f"{node['n_queries']} queries"
    return ""


def metrics_table(report: dict[str, Any]) -> pd.DataFrame:
    """Headline metrics with their bootstrap CIs, n, the pixel baseline and a one-line meaning (NaN where absent)."""
    from reid_core.ui.explain import metric_help

    base = report.get("baseline", {}) or {}
    rows = []
    for section, label, key, ci in _REPORT_ROWS:
        node = report.get(section, {}) or {}
        if key not in node:
            continue
        rows.append({
            "section": section, "metric": label, "value": _num(node.get(key)),
            "ci_low": _num(node.get(f"{ci}_ci_low")) if ci else math.nan,
            "ci_high": _num(node.get(f"{ci}_ci_high")) if ci else math.nan,
            "n": _n_text(section, node),
            "pixel baseline": _num((base.get(section, {}) or {}).get(key)),
        })
    lon = report.get("longitudinal") or {}
    if "auc" in lon:
        rows.append({"section": "longitudinal", "metric": "matched drift AUC", "value": _num(lon.get("auc")),
                     "ci_low": _num(lon.get("auc_ci_low")), "ci_high": _num(lon.get("auc_ci_high")),
                     "n": _n_text("longitudinal", lon), "pixel baseline": math.nan})
    diag = report.get("diagnosis") or {}
    if "mean_auc" in diag:
        rows.append({"section": "diagnosis", "metric": f"neighbour-vote mean AUC (k={diag.get('k')})",
                     "value": _num(diag.get("mean_auc")), "ci_low": math.nan, "ci_high": math.nan,
                     "n": _n_text("diagnosis", diag), "pixel baseline": math.nan})
    out = pd.DataFrame(rows, columns=["section", "metric", "value", "ci_low", "ci_high", "n", "pixel baseline"])
    out["meaning"] = [metric_help(m) for m in out["metric"]]
    return out


def headline(report: dict[str, Any]) -> dict[str, float]:
    """The few numbers the overview shows: P@1, mAP@R, verification AUC, baseline P@1, drift AUC."""
    r, v = report.get("retrieval", {}) or {}, report.get("verification", {}) or {}
    b = (report.get("baseline", {}) or {}).get("retrieval", {}) or {}
    return {"P@1": _num(r.get("precision_at_1")), "mAP@R": _num(r.get("map_at_r")),
            "verification AUC": _num(v.get("roc_auc", v.get("auc"))),
            "pixel baseline P@1": _num(b.get("precision_at_1")),
            "drift AUC": _num((report.get("longitudinal") or {}).get("auc"))}


def format_ci(value: float, low: float, high: float, digits: int = 3) -> str:
    """``0.812 [0.790, 0.834]``; ``—`` for a missing value; no bracket when the CI is missing."""
    if value is None or not math.isfinite(value):
        return "—"
    text = f"{value:.{digits}f}"
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


# ---------------------------------------------------------------------------- training log
def read_train_log(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``train_log.jsonl`` as (training rows, validation rows); unreadable lines are skipped."""
    train, val = [], []
    p = Path(path)
    if p.exists():
        for line in p.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by an interrupted run
            if not isinstance(rec, dict):
                continue
            (val if rec.get("event") == "val" else train if rec.get("event") == "train" else []).append(rec)
    return pd.DataFrame(train), pd.DataFrame(val)

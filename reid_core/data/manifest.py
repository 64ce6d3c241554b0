"""The canonical manifest: one row per image, the same columns for every dataset.

Columns (see shared/ARCHITECTURE.md): ``image_id`` (unique, stable), ``path``
(relative to the dataset root), ``patient_id``, ``study_order`` (chronological
within a patient, 0-based), ``study_date`` (nullable), ``view`` (PA/AP/LL/UNKNOWN),
``sex`` (M/F/U), ``age`` (nullable float, years), ``findings`` (pipe-separated,
``No Finding`` when normal), ``dataset``, ``split`` (train/val/test).
Follow-up images are always kept: re-identification needs them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from reid_core.atomic import atomic_path
from reid_core.errors import ManifestError
from reid_core.data.splits import SPLITS, assign_splits

COLUMNS: tuple[str, ...] = (
    "image_id", "path", "patient_id", "study_order", "study_date", "view",
    "sex", "age", "findings", "dataset", "split",
)
REQUIRED: tuple[str, ...] = ("image_id", "path", "patient_id")
VIEWS: tuple[str, ...] = ("PA", "AP", "LL", "UNKNOWN")
FRONTAL_VIEWS: tuple[str, ...] = ("PA", "AP")
NO_FINDING = "No Finding"

_VIEW_ALIASES = {
    "PA": "PA", "POSTERO_ANTERIOR": "PA", "POSTEROANTERIOR": "PA",
    "AP": "AP", "AP AXIAL": "AP", "ANTERO_POSTERIOR": "AP", "ANTEROPOSTERIOR": "AP",
    "AP SUPINE": "AP", "SUPINE AP": "AP", "FRONTAL": "UNKNOWN",
    "LL": "LL", "LATERAL": "LL", "LAT": "LL", "RL": "LL", "LATERAL LEFT": "LL", "LAO": "UNKNOWN",
}


def normalize_view(value: object) -> str:
    """Map a dataset's view label (``PA``, ``Frontal``, ``LATERAL``, ``ll``…) to PA/AP/LL/UNKNOWN."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "UNKNOWN"
    key = str(value).strip().upper()
    return _VIEW_ALIASES.get(key, "UNKNOWN")


def normalize_sex(value: object) -> str:
    """Map ``M``/``Male``/``F``/``Female``/anything else to M/F/U."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "U"
    key = str(value).strip().upper()
    if key in ("M", "MALE"):
        return "M"
    if key in ("F", "FEMALE"):
        return "F"
    return "U"


def normalize_findings(labels: list[str] | str | None) -> str:
    """Join finding labels with ``|``; empty means ``No Finding``."""
    if labels is None or (isinstance(labels, float) and np.isnan(labels)):
        return NO_FINDING
    if isinstance(labels, str):
        labels = [s for s in labels.split("|")]
    cleaned = sorted({s.strip() for s in labels if s and s.strip() and s.strip() != NO_FINDING})
    return "|".join(cleaned) if cleaned else NO_FINDING


def empty_manifest() -> pd.DataFrame:
    """A manifest with no rows and the canonical columns and dtypes."""
    return finalize_manifest(pd.DataFrame({c: [] for c in ("image_id", "path", "patient_id")}), dataset="empty")


def finalize_manifest(
    df: pd.DataFrame,
    dataset: str | None = None,
    frontal_only: bool = False,
    split_salt: str = "cxr-reid",
    recompute_order: bool = False,
) -> pd.DataFrame:
    """Coerce ``df`` to the canonical schema and check its invariants.

    Fills missing optional columns with defaults, normalises views, sexes and
    findings, derives ``study_order`` from ``study_date`` when absent (or when
    ``recompute_order``), assigns patient-disjoint splits when ``split`` is
    missing, optionally keeps frontal (PA/AP) views only, and sorts by patient
    and study order. Raises :class:`ManifestError` on a broken invariant.
    """
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ManifestError(f"manifest lacks required column(s) {missing}; has {list(df.columns)}")
    out = df.copy()
    out["image_id"] = out["image_id"].astype(str)
    out["path"] = out["path"].astype(str)
    out["patient_id"] = out["patient_id"].astype(str)
    if out["image_id"].duplicated().any():
        dups = out.loc[out["image_id"].duplicated(), "image_id"].head(5).tolist()
        raise ManifestError(f"image_id must be unique; duplicated: {dups}")
    if "dataset" not in out.columns:
        out["dataset"] = dataset or "unknown"
    elif dataset is not None:
        out["dataset"] = out["dataset"].fillna(dataset)
    out["dataset"] = out["dataset"].astype(str)
    out["view"] = _map_unique(out["view"], normalize_view) if "view" in out.columns else "UNKNOWN"
    out["sex"] = _map_unique(out["sex"], normalize_sex) if "sex" in out.columns else "U"
    out["age"] = pd.to_numeric(out["age"], errors="coerce").astype("float64") if "age" in out.columns else np.nan
    out["findings"] = _map_unique(out["findings"], normalize_findings) if "findings" in out.columns else NO_FINDING
    if "study_date" in out.columns:
        out["study_date"] = pd.to_datetime(out["study_date"], errors="coerce")
    else:
        out["study_date"] = pd.NaT
    out["study_date"] = out["study_date"].astype("datetime64[ns]")
    if "study_order" not in out.columns or recompute_order:
        out = _derive_study_order(out)
    out["study_order"] = pd.to_numeric(out["study_order"], errors="coerce").fillna(0).astype("int64")
    if "split" not in out.columns or out["split"].isna().any():
        out = assign_splits(out, salt=split_salt)
    bad_split = set(out["split"].astype(str).unique()) - set(SPLITS)
    if bad_split:
        raise ManifestError(f"split must be one of {SPLITS}; found {sorted(bad_split)}")
    leaked = out.groupby("patient_id")["split"].nunique()
    if (leaked > 1).any():
        raise ManifestError(f"splits must be patient-disjoint; patients in several splits: {leaked[leaked > 1].index[:5].tolist()}")
    if frontal_only:
        out = out[out["view"].isin(FRONTAL_VIEWS)]
    extra = [c for c in out.columns if c not in COLUMNS]
    out = out[list(COLUMNS) + extra]
    out = out.sort_values(["patient_id", "study_order", "image_id"], kind="stable").reset_index(drop=True)
    return out


def _map_unique(values: pd.Series, func) -> pd.Series:
    """Apply ``func`` once per distinct value (labels repeat across 10^5 rows)."""
    if values.empty:
        return values.astype(str)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = np.array([func(u) for u in uniques] + [func(None)], dtype=object)
    return pd.Series(mapped[codes], index=values.index, dtype=str)


def _derive_study_order(df: pd.DataFrame) -> pd.DataFrame:
    """Rank images per patient by study date (then by path) into 0-based dense study indices."""
    out = df.copy()
    key = out["study_date"].fillna(pd.Timestamp.min) if len(out) else out["study_date"]
    out["_k"] = key
    out["study_order"] = (
        out.sort_values(["_k", "path"]).groupby("patient_id")["_k"].rank(method="dense").sub(1).astype("int64")
        if len(out) else pd.Series(dtype="int64")
    )
    return out.drop(columns="_k")


def save_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Write a manifest as parquet atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def load_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest written by :func:`save_manifest` and re-check its schema.

    A missing, unreadable or corrupt file (not Parquet, truncated, wrong column
    types) raises :class:`ManifestError`.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"no manifest at {path}")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ValueError, ... on bad files
        raise ManifestError(f"{path}: not a readable manifest ({type(exc).__name__}); rebuild it with "
                            "`cxr-reid prepare`") from None
    try:
        return finalize_manifest(df)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ManifestError(f"{path}: columns of the wrong type ({type(exc).__name__}); rebuild it with "
                            "`cxr-reid prepare`") from None


def problems_table(rows: list[dict] | None = None) -> pd.DataFrame:
    """The table of files that were skipped: columns ``path``, ``reason``."""
    return pd.DataFrame(rows or [], columns=["path", "reason"])

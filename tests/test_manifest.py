"""Canonical manifest schema and patient-disjoint deterministic splits."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reid_core.data.manifest import (COLUMNS, empty_manifest, finalize_manifest, load_manifest,
                                     normalize_findings, normalize_sex, normalize_view, save_manifest)
from reid_core.data.splits import assign_splits, split_of
from reid_core.errors import ManifestError


def _toy(n_patients: int = 50, per: int = 3) -> pd.DataFrame:
    rows = []
    for p in range(n_patients):
        for s in range(per):
            rows.append({"image_id": f"{p}_{s}", "path": f"img/{p}_{s}.png", "patient_id": f"pat{p}",
                         "study_date": f"20{10 + s}-01-0{1 + p % 9}", "view": ["PA", "AP", "LATERAL"][s % 3]})
    return pd.DataFrame(rows)


def test_columns_dtypes_and_order():
    m = finalize_manifest(_toy(), dataset="toy")
    assert tuple(m.columns) == COLUMNS
    assert m["study_order"].dtype == np.int64
    assert set(m["view"]) == {"PA", "AP", "LL"}
    assert (m["findings"] == "No Finding").all() and (m["sex"] == "U").all()
    # study order follows dates within each patient, 0-based
    first = m[m["patient_id"] == "pat3"]
    assert first["study_order"].tolist() == [0, 1, 2]
    assert first["study_date"].is_monotonic_increasing
    assert tuple(empty_manifest().columns) == COLUMNS


def test_frontal_filter_keeps_all_followups():
    m = finalize_manifest(_toy(), frontal_only=True)
    assert set(m["view"]) == {"PA", "AP"}
    assert len(m) == 100  # 2 frontal of 3 per patient, no follow-up dropped
    assert m.groupby("patient_id").size().eq(2).all()


def test_splits_are_deterministic_patient_disjoint_and_subset_invariant():
    m = finalize_manifest(_toy(400, 2))
    assert m.groupby("patient_id")["split"].nunique().max() == 1
    frac = m.drop_duplicates("patient_id")["split"].value_counts(normalize=True)
    assert 0.72 < frac["train"] < 0.88 and 0.05 < frac["test"] < 0.16
    subset = finalize_manifest(_toy(400, 2).iloc[::7])
    joined = subset.merge(m[["image_id", "split"]], on="image_id", suffixes=("", "_full"))
    assert (joined["split"] == joined["split_full"]).all()
    assert split_of("pat1") == split_of("pat1")
    assert split_of("pat1", salt="other") in ("train", "val", "test")
    with pytest.raises(ValueError):
        split_of("x", fractions=(0.5, 0.5, 0.5))


def test_invariants_raise_typed_errors():
    with pytest.raises(ManifestError, match="required"):
        finalize_manifest(pd.DataFrame({"image_id": ["a"], "path": ["x"]}))
    dup = pd.DataFrame({"image_id": ["a", "a"], "path": ["x", "y"], "patient_id": ["1", "2"]})
    with pytest.raises(ManifestError, match="unique"):
        finalize_manifest(dup)
    leak = assign_splits(_toy(2, 2))
    leak.loc[0, "split"] = "train"
    leak.loc[1, "split"] = "test"
    with pytest.raises(ManifestError, match="disjoint"):
        finalize_manifest(leak)


def test_normalisers():
    assert normalize_view("pa") == "PA" and normalize_view("Lateral") == "LL" and normalize_view(None) == "UNKNOWN"
    assert normalize_sex("Female") == "F" and normalize_sex("x") == "U"
    assert normalize_findings("Effusion|No Finding|Atelectasis") == "Atelectasis|Effusion"
    assert normalize_findings([]) == "No Finding"


def test_parquet_round_trip(tmp_path):
    m = finalize_manifest(_toy(), dataset="toy")
    save_manifest(m, tmp_path / "m.parquet")
    back = load_manifest(tmp_path / "m.parquet")
    pd.testing.assert_frame_equal(m, back)
    with pytest.raises(ManifestError):
        load_manifest(tmp_path / "nope.parquet")

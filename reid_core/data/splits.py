"""Patient-disjoint, deterministic train/val/test splits.

The split of a patient depends only on a hash of its ``patient_id`` (and a
salt), never on the order of rows or on which other patients are present, so
any subset of a dataset gets the same split for the same patient.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import pandas as pd

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def _unit_interval(patient_id: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{patient_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(patient_id: str, fractions: Iterable[float] = DEFAULT_FRACTIONS, salt: str = "cxr-reid") -> str:
    """The split (``train``/``val``/``test``) of one patient."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fr}")
    u = _unit_interval(str(patient_id), salt)
    if u < fr[0]:
        return "train"
    if u < fr[0] + fr[1]:
        return "val"
    return "test"


def assign_splits(
    manifest: pd.DataFrame, fractions: Iterable[float] = DEFAULT_FRACTIONS, salt: str = "cxr-reid"
) -> pd.DataFrame:
    """Return a copy of ``manifest`` with the ``split`` column filled per patient."""
    fr = tuple(fractions)
    out = manifest.copy()
    patients = out["patient_id"].astype(str).unique()
    mapping = {p: split_of(p, fr, salt) for p in patients}
    out["split"] = out["patient_id"].astype(str).map(mapping)
    return out

"""Keyed pseudonyms for the identifiers a DICOM folder brings into a workspace, and relative study dates.

``prepare --dataset dicom`` replaces the PatientID (often a hospital MRN) and the
image ids (SOP Instance UIDs) by HMAC-SHA256 pseudonyms under a secret kept in the
workspace (``pseudonym.key``, mode 0600, created on first use): the same patient
maps to the same pseudonym within a workspace, and nobody without the key can
recompute or reverse one. Study dates are moved so that each patient's first
study falls on :data:`DAY_ZERO`: intervals between studies (what longitudinal
drift needs) are kept, the calendar date is not. The mapping back to the real
values is written only on request (``pseudonyms.csv``). Accession numbers and
study UIDs are never stored in the manifest at all.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pandas as pd

from reid_core.errors import WorkspaceError

SECRET_FILE = "pseudonym.key"
MAPPING_FILE = "pseudonyms.csv"
DAY_ZERO = pd.Timestamp("2000-01-01")
"""Where each patient's first study lands when dates are made relative (a day, not a real date)."""


def workspace_secret(root: str | Path) -> bytes:
    """The workspace's pseudonym key: read, or created (32 random bytes, owner-only) on first use."""
    path = Path(root) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) < 16:
        raise WorkspaceError(f"{path}: pseudonym key is truncated ({len(key)} bytes); restore it, or start a new "
                             "workspace (the pseudonyms would all change)")
    return key


def pseudonym(key: bytes, kind: str, value: object) -> str:
    """``KIND-`` and 16 hex digits of HMAC-SHA256(key, kind, value): stable per key, not reversible."""
    digest = hmac.new(key, f"{kind}\0{value}".encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
    return f"{kind}-{digest[:16]}"


def relative_dates(patient_id: pd.Series, study_date: pd.Series) -> pd.Series:
    """Dates moved per patient so that the first dated study is :data:`DAY_ZERO` (NaT stays NaT)."""
    dates = pd.to_datetime(study_date, errors="coerce")
    first = dates.groupby(patient_id.to_numpy()).transform("min")
    return DAY_ZERO + (dates - first)


def pseudonymise(manifest: pd.DataFrame, root: str | Path, keep_dates: bool = False,
                 keep_mapping: bool = False) -> pd.DataFrame:
    """``manifest`` with keyed pseudonyms for ``patient_id`` and ``image_id`` (and relative dates).

    With ``keep_mapping`` the real ↔ pseudonym table is written to ``root/pseudonyms.csv``;
    otherwise any earlier mapping file there is removed.
    """
    key = workspace_secret(root)
    out = manifest.copy()
    out["patient_id"] = [pseudonym(key, "P", v) for v in manifest["patient_id"].astype(str)]
    out["image_id"] = [pseudonym(key, "I", v) for v in manifest["image_id"].astype(str)]
    if not keep_dates and "study_date" in out.columns:
        out["study_date"] = relative_dates(out["patient_id"], out["study_date"])
    out = out.sort_values(["patient_id", "study_order", "image_id"], kind="stable").reset_index(drop=True)
    mapping_path = Path(root) / MAPPING_FILE
    if keep_mapping:
        pd.DataFrame({"patient_id": manifest["patient_id"].astype(str),
                      "patient_pseudonym": [pseudonym(key, "P", v) for v in manifest["patient_id"].astype(str)],
                      "image_id": manifest["image_id"].astype(str),
                      "image_pseudonym": [pseudonym(key, "I", v) for v in manifest["image_id"].astype(str)],
                      "path": manifest["path"]}).to_csv(mapping_path, index=False)
    else:
        mapping_path.unlink(missing_ok=True)
    return out

"""Any folder of DICOM files (``dicom``): headers only, no pixel decoding.

Files are found recursively: a ``.dcm``/``.dicom`` suffix or the ``DICM``
preamble at byte 128 marks a DICOM file; tables and documents that sit beside
the images (``.csv``, ``.json``, ``.parquet``, ``.txt``, ``.md``, …) are skipped
silently, and every other non-hidden file is reported as ``not a DICOM file``. Headers come from
:func:`reid_core.data.dicom.read_dicom_header`; a file whose header cannot be
read, that has no image (rows/cols) or no PatientID goes to the problems table.

patient = PatientID; a study is a StudyInstanceUID (else the file's folder),
ordered per patient by StudyDate then StudyTime (unknown dates last); all
images of one study share its ``study_order``. image_id = SOPInstanceUID where
present and unique, else the path relative to the root.
"""
from __future__ import annotations

import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from reid_core.data.adapters.base import (
    DatasetAdapter, Problems, dicom_time_to_float, parse_age, parse_yyyymmdd, rank_studies,
)
from reid_core.errors import DatasetError, ImageLoadError

log = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom")
NOT_DICOM = "not a DICOM file"
_FIELDS = ("patient_id", "study_date", "study_time", "view_position", "patient_sex", "patient_age",
           "rows", "cols", "study_instance_uid", "sop_instance_uid")


class DicomFolderAdapter(DatasetAdapter):
    """Recursively scan ``root`` for DICOM files and build the manifest from their headers."""

    name = "dicom"
    layout = "<root>/**/<any name>.dcm (or any file with the DICM preamble), any folder structure"

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))  # header reads are I/O-bound: threads help on network disks

    def _rows(self, root: Path, problems: Problems, progress: bool) -> pd.DataFrame:
        dicoms, others = find_dicom_files(root)
        if not dicoms and not others:
            raise DatasetError(f"{self.name}: no files under {root}; expected layout: {self.layout}")
        problems.extend({"path": p, "reason": reason} for p, reason in others)
        if not dicoms:
            log.warning("no DICOM files under %s (%d other files)", root, len(others))
        headers = scan_headers(root, dicoms, problems, progress=progress, workers=self.workers)
        return headers_to_rows(headers, problems)


SIDECAR_SUFFIXES = (".csv", ".csv.gz", ".json", ".parquet", ".txt", ".md", ".xml", ".html", ".pdf", ".log",
                   ".yaml", ".yml", ".tsv")


def find_dicom_files(root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Paths (relative to ``root``, POSIX) of DICOM files, and (path, reason) of other non-hidden files.

    Never opens anything but a regular file (a FIFO would block forever), and
    never lets through a name that is not valid UTF-8 (it could not be stored
    in the manifest): both are reported with their reason instead. Each list sorted.
    """
    dicoms: list[str] = []
    others: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root)
        for f in filenames:
            if f.startswith("."):
                continue
            rel = f if rel_dir == "." else f"{rel_dir}/{f}".replace(os.sep, "/")
            full = os.path.join(dirpath, f)
            if not _is_utf8(rel):
                others.append((printable_name(rel), NOT_UTF8))
            elif not _is_regular(full):
                others.append((rel, NOT_REGULAR))
            elif f.lower().endswith(DICOM_SUFFIXES) or _has_preamble(full):
                dicoms.append(rel)
            elif not f.lower().endswith(SIDECAR_SUFFIXES):
                others.append((rel, NOT_DICOM))
    return sorted(dicoms), sorted(others)


NOT_UTF8 = "file name is not valid UTF-8 (rename the file to include it)"
NOT_REGULAR = "not a regular file (FIFO, socket or device): skipped without opening"


def _is_utf8(name: str) -> bool:
    """False for names with undecodable bytes (``os`` hands them over as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_name(name: str) -> str:
    """A file name with its undecodable bytes shown as backslash escapes (``\\xe9``)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _is_regular(path: str) -> bool:
    """True for a regular file (symlinks followed); FIFOs, sockets, devices and broken links are not."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _has_preamble(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def scan_headers(
    root: Path, rel_paths: Iterable[str], problems: Problems, progress: bool = False, workers: int = 1
) -> pd.DataFrame:
    """Read the header of each file; one row per readable file (column ``path`` + ImageMeta fields)."""
    from reid_core.data.dicom import read_dicom_header  # lazy: keeps the adapter registry import light

    rel_paths = list(rel_paths)
    base = str(root)

    def read_one(rel: str) -> tuple[str, object, str | None]:
        try:
            return rel, read_dicom_header(os.path.join(base, rel)), None
        except ImageLoadError as e:
            return rel, None, e.reason
        except Exception as e:  # never abort a scan of thousands of files on one odd file
            log.debug("unexpected error reading %s", rel, exc_info=True)
            return rel, None, f"unreadable header ({type(e).__name__})"

    records: list[dict] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(read_one, rel_paths) if workers > 1 else map(read_one, rel_paths)
        for rel, meta, reason in tqdm(results, total=len(rel_paths), desc="reading DICOM headers",
                                      unit="file", disable=not progress):
            if meta is None:
                problems.append({"path": rel, "reason": reason})
                continue
            rec = {f: getattr(meta, f, None) for f in _FIELDS}
            rec["path"] = rel
            records.append(rec)
    return pd.DataFrame.from_records(records, columns=["path", *_FIELDS])


def headers_to_rows(h: pd.DataFrame, problems: Problems, patient: pd.Series | None = None,
                    study: pd.Series | None = None) -> pd.DataFrame:
    """Header table → adapter rows. ``patient``/``study`` override PatientID/StudyInstanceUID (e.g. MIMIC paths)."""
    h = h.reset_index(drop=True)
    no_image = pd.to_numeric(h["rows"], errors="coerce").fillna(0).le(0) | pd.to_numeric(
        h["cols"], errors="coerce").fillna(0).le(0)
    pid = (patient.reset_index(drop=True) if patient is not None else h["patient_id"]).astype("string").str.strip()
    no_pid = pid.isna() | pid.eq("")
    for mask, reason in ((no_image, "no image in DICOM (rows/cols missing)"), (no_pid & ~no_image, "no PatientID")):
        problems.extend({"path": p, "reason": reason} for p in h.loc[mask, "path"])
    keep = ~(no_image | no_pid)
    h, pid = h[keep].reset_index(drop=True), pid[keep].reset_index(drop=True)
    if study is not None:
        study = study.reset_index(drop=True)[keep.to_numpy()].reset_index(drop=True)
    else:
        uid = h["study_instance_uid"].astype("string").str.strip()
        folder = h["path"].str.rsplit("/", n=1).str[0].where(h["path"].str.contains("/"), ".")
        study = uid.where(uid.notna() & uid.ne(""), "dir:" + folder)
    date = parse_yyyymmdd(h["study_date"])
    time = dicom_time_to_float(h["study_time"])
    sop = h["sop_instance_uid"].astype("string").str.strip()
    usable = sop.notna() & sop.ne("") & ~sop.duplicated(keep=False)
    out = pd.DataFrame({
        "image_id": np.where(usable, sop.fillna(""), h["path"]),
        "path": h["path"],
        "patient_id": pid.astype(object),
        "study_date": date,
        "view": h["view_position"],
        "sex": h["patient_sex"],
        "age": parse_age(h["patient_age"]),  # float years, or a raw '058Y' string
    })
    out["study_order"] = rank_studies(out["patient_id"], [date, time], study=study.astype(object))
    return out

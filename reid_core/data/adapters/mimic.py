"""MIMIC-CXR-JPG (``mimic``) and MIMIC-CXR DICOM (``mimic-dicom``).

Layout (each CSV may also be ``.csv.gz``)::

    <root>/mimic-cxr-2.0.0-metadata.csv   dicom_id, subject_id, study_id, ViewPosition, StudyDate, StudyTime, …
    <root>/mimic-cxr-2.0.0-chexpert.csv   subject_id, study_id + 14 labels (1.0 / 0.0 / -1.0 / blank)
    <root>/files/p10/p10000032/s50414267/<dicom_id>.jpg      (.dcm for mimic-dicom)
    <root>/patients.csv                   optional, from MIMIC-IV: subject_id, gender, anchor_age[, anchor_year]

Studies are ordered per subject by StudyDate then StudyTime, compared as
numbers (MIMIC stores StudyTime as a float, so 07:00 is ``70016.0``: a string
sort would put it after 12:34). Sex and age are not in MIMIC-CXR: they are
taken from an optional MIMIC-IV ``patients.csv`` at the root; age at the study
is ``anchor_age + (study year - anchor_year)`` when ``anchor_year`` is there
(MIMIC-CXR dates share MIMIC-IV's per-patient shift), else ``anchor_age``.
Without it sex is ``U`` and age NaN. Without the chexpert CSV findings are
``No Finding`` (a warning is logged). ``mimic-dicom`` without the metadata CSV
scans ``files/`` and reads DICOM headers (subject/study from the folder names).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import pandas as pd

from reid_core.data.adapters.base import (
    DatasetAdapter, Problems, find_first, findings_from_labels, parse_yyyymmdd, rank_studies, read_table,
    require_columns,
)
from reid_core.data.adapters.chexpert import LABELS
from reid_core.data.adapters.dicom_folder import find_dicom_files, headers_to_rows, scan_headers
from reid_core.errors import DatasetError

log = logging.getLogger(__name__)

METADATA_FILES = ("mimic-cxr-2.0.0-metadata.csv", "mimic-cxr-2.0.0-metadata.csv.gz")
LABEL_FILES = ("mimic-cxr-2.0.0-chexpert.csv", "mimic-cxr-2.0.0-chexpert.csv.gz")
PATIENT_FILES = ("patients.csv", "patients.csv.gz")
_IDS = {"dicom_id": str, "subject_id": str, "study_id": str, "StudyDate": str, "ViewPosition": str}


class MimicAdapter(DatasetAdapter):
    """MIMIC-CXR-JPG: one row per ``dicom_id``; patient = subject_id; study = study_id."""

    name = "mimic"
    suffix = ".jpg"
    layout = ("<root>/mimic-cxr-2.0.0-metadata.csv[.gz] + mimic-cxr-2.0.0-chexpert.csv[.gz] with images at "
              "<root>/files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg (optional <root>/patients.csv from MIMIC-IV)")

    def __init__(self, uncertain_as_positive: bool = False, label_map: Mapping[str, str] | None = None,
                 workers: int = 1) -> None:
        self.uncertain_as_positive = uncertain_as_positive
        self.label_map = dict(label_map or {})
        self.workers = workers

    def _rows(self, root: Path, problems: Problems, progress: bool) -> pd.DataFrame:
        meta_csv = find_first(root, METADATA_FILES)
        if meta_csv is None:
            return self._rows_without_metadata(root, problems, progress)
        meta = read_table(meta_csv, dtype=_IDS)
        needed = ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime")
        require_columns(meta, needed, meta_csv)
        meta = meta.dropna(subset=["dicom_id", "subject_id", "study_id"])
        for c in ("dicom_id", "subject_id", "study_id"):
            meta[c] = meta[c].str.strip()
        sid, study = meta["subject_id"], meta["study_id"]
        date = parse_yyyymmdd(meta["StudyDate"])
        time = pd.to_numeric(meta["StudyTime"], errors="coerce")
        out = pd.DataFrame({
            "image_id": meta["dicom_id"],
            "path": "files/p" + sid.str[:2] + "/p" + sid + "/s" + study + "/" + meta["dicom_id"] + self.suffix,
            "patient_id": sid,
            "view": meta["ViewPosition"],
            "study_date": date,
        })
        out["study_order"] = rank_studies(sid, [date, time], study=study)
        out["findings"] = self._findings(root, sid, study)
        return self._add_demographics(root, out)

    def _rows_without_metadata(self, root: Path, problems: Problems, progress: bool) -> pd.DataFrame:
        raise self._missing_metadata(root, " or ".join(METADATA_FILES))

    def _findings(self, root: Path, subject: pd.Series, study: pd.Series) -> pd.Series:
        labels_csv = find_first(root, LABEL_FILES)
        if labels_csv is None:
            log.warning("%s: no %s under %s; findings set to 'No Finding'", self.name, LABEL_FILES[0], root)
            return pd.Series("", index=subject.index, dtype=object)
        lab = read_table(labels_csv, dtype={"subject_id": str, "study_id": str})
        require_columns(lab, ("subject_id", "study_id"), labels_csv)
        lab = lab.drop_duplicates(subset=["subject_id", "study_id"])
        keys = pd.DataFrame({"subject_id": subject.str.strip().to_numpy(), "study_id": study.str.strip().to_numpy()})
        joined = keys.merge(lab, on=["subject_id", "study_id"], how="left")
        return pd.Series(findings_from_labels(joined, LABELS, self.uncertain_as_positive, self.label_map).to_numpy(),
                         index=subject.index)

    def _add_demographics(self, root: Path, out: pd.DataFrame) -> pd.DataFrame:
        pcsv = find_first(root, PATIENT_FILES)
        if pcsv is None:
            log.info("%s: no patients.csv under %s; sex/age unknown", self.name, root)
            return out
        pat = read_table(pcsv, dtype={"subject_id": str, "gender": str})
        require_columns(pat, ("subject_id", "gender", "anchor_age"), pcsv)
        pat = pat.drop_duplicates(subset=["subject_id"]).set_index("subject_id")
        subj = out["patient_id"]
        out["sex"] = subj.map(pat["gender"])
        age = pd.to_numeric(subj.map(pat["anchor_age"]), errors="coerce")
        if "anchor_year" in pat.columns:
            years = out["study_date"].dt.year - pd.to_numeric(subj.map(pat["anchor_year"]), errors="coerce")
            age = age + years.fillna(0)
        out["age"] = age
        return out


class MimicDicomAdapter(MimicAdapter):
    """MIMIC-CXR DICOM: the metadata CSV when present (files ``.dcm``), else a header scan of ``files/``."""

    name = "mimic-dicom"
    suffix = ".dcm"
    layout = ("<root>/files/pXX/pSUBJECT/sSTUDY/<dicom_id>.dcm, with <root>/mimic-cxr-2.0.0-metadata.csv[.gz] "
              "(from MIMIC-CXR-JPG) if available, optional mimic-cxr-2.0.0-chexpert.csv[.gz] and patients.csv")

    def _rows_without_metadata(self, root: Path, problems: Problems, progress: bool) -> pd.DataFrame:
        files = root / "files"
        if not files.is_dir():
            raise self._missing_metadata(root, f"{METADATA_FILES[0]} or a files/ folder")
        log.info("%s: no metadata CSV; reading DICOM headers under %s", self.name, files)
        dicoms, _ = find_dicom_files(files)
        if not dicoms:
            raise DatasetError(f"{self.name}: no DICOM files under {files}; expected layout: {self.layout}")
        rel = pd.Series(["files/" + p for p in dicoms])
        ids = rel.str.extract(r"(?:^|/)p(\d+)/s(\d+)/([^/]+?)(?:\.dcm|\.dicom)?$")
        bad = ids[0].isna()
        problems.extend({"path": p, "reason": "path is not pXX/pSUBJECT/sSTUDY/<dicom_id>.dcm"} for p in rel[bad])
        rel, ids = rel[~bad].reset_index(drop=True), ids[~bad].reset_index(drop=True)
        headers = scan_headers(root, rel, problems, progress=progress, workers=self.workers)
        ids = ids.set_axis(rel).loc[headers["path"]].reset_index(drop=True)
        out = headers_to_rows(headers, problems, patient=ids[0], study=ids[1])
        kept = out["path"].map(dict(zip(headers["path"], range(len(headers)))))
        ids = ids.iloc[kept.to_numpy()].reset_index(drop=True)
        out["image_id"] = ids[2].to_numpy()  # dicom_id, as in the metadata CSV
        out["findings"] = self._findings(root, ids[0], ids[1])
        return self._add_demographics(root, out)  # patients.csv, when present, overrides the header's sex/age

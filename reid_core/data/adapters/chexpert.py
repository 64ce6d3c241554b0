"""CheXpert (``chexpert``): ``train.csv`` + ``valid.csv`` and JPGs.

Layout (``root`` may be the dataset folder itself or its parent)::

    <root>/CheXpert-v1.0-small/train.csv, valid.csv
    <root>/CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg

The CSV ``Path`` column starts with the dataset folder name
(``CheXpert-v1.0-small/train/...``); that first component is replaced by the
folder that actually holds the CSVs, so a renamed folder works too. The
image id is the path below the dataset folder (``train/patient00001/study1/
view1_frontal.jpg``), the same whichever root is given. Studies are ordered by
the number in ``studyN`` (numerically: ``study10`` after ``study2``).

Findings: label columns equal to 1.0; -1.0 (uncertain) is *not* positive unless
``uncertain_as_positive=True``. Names keep the CheXpert vocabulary unless a
``label_map`` is given, e.g. :data:`CHEXPERT_TO_NIH` (``Pleural Effusion`` →
``Effusion``) to share names with ChestX-ray14.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import pandas as pd

from reid_core.data.adapters.base import (
    DatasetAdapter, Problems, findings_from_labels, parse_age, rank_studies, read_table, require_columns,
)
log = logging.getLogger(__name__)

CSV_FILES = ("train.csv", "valid.csv")
LABELS: tuple[str, ...] = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
#: Opt-in renaming of CheXpert labels whose ChestX-ray14 counterpart means the same finding.
CHEXPERT_TO_NIH: dict[str, str] = {"Pleural Effusion": "Effusion"}
_SPLIT_DIRS = ("train", "valid", "test")


class ChexpertAdapter(DatasetAdapter):
    """CheXpert: patient from ``patientNNNNN``, order from ``studyN``, view from Frontal/Lateral + AP/PA."""

    name = "chexpert"
    layout = ("<root>/CheXpert-v1.0-small/{train,valid}.csv with images under <root>/CheXpert-v1.0-small/train/"
              "patientNNNNN/studyN/viewK_frontal.jpg (root may also be the CheXpert-v1.0-small folder itself)")

    def __init__(self, uncertain_as_positive: bool = False, label_map: Mapping[str, str] | None = None) -> None:
        self.uncertain_as_positive = uncertain_as_positive
        self.label_map = dict(label_map or {})

    def _rows(self, root: Path, problems: Problems, progress: bool) -> pd.DataFrame:
        base = self._dataset_dir(root)
        frames = []
        for name in CSV_FILES:
            csv = base / name
            if csv.is_file():
                df = read_table(csv, dtype={"Path": str, "Sex": str, "Frontal/Lateral": str, "AP/PA": str})
                require_columns(df, ("Path",), csv)
                frames.append(df)
        df = pd.concat(frames, ignore_index=True)
        df = df.dropna(subset=["Path"]).reset_index(drop=True)  # repeated rows: build() keeps the first

        # strip the dataset-folder component, whatever it is called, unless the path starts at train/valid
        rel = df["Path"].str.strip().str.replace(rf"^(?!(?:{'|'.join(_SPLIT_DIRS)})/)[^/]+/", "", regex=True)
        parts = rel.str.extract(r"(?:^|/)(patient\d+)/study(\d+)/")
        bad = parts[0].isna()
        if bad.any():
            problems.extend({"path": p, "reason": "path has no patientNNNNN/studyN"} for p in df.loc[bad, "Path"])
            df, rel, parts = df[~bad], rel[~bad], parts[~bad]
        prefix = base.relative_to(root).as_posix()
        prefix = "" if prefix == "." else prefix + "/"

        view = df["AP/PA"] if "AP/PA" in df.columns else pd.Series(None, index=df.index, dtype=object)
        if "Frontal/Lateral" in df.columns:
            view = view.where(df["Frontal/Lateral"].str.strip().str.lower() != "lateral", "LL")
        out = pd.DataFrame({
            "image_id": rel,
            "path": prefix + rel,
            "patient_id": parts[0],
            "view": view,
            "sex": df["Sex"] if "Sex" in df.columns else None,
            "age": parse_age(df["Age"]) if "Age" in df.columns else float("nan"),
            "findings": findings_from_labels(df, LABELS, self.uncertain_as_positive, self.label_map),
            "study_date": pd.NaT,
        })
        out["study_order"] = rank_studies(out["patient_id"], [parts[1].astype("int64")])
        return out.reset_index(drop=True)

    def _dataset_dir(self, root: Path) -> Path:
        """The folder holding train.csv/valid.csv: ``root`` itself or a ``CheXpert*`` child of it."""
        if any((root / n).is_file() for n in CSV_FILES):
            return root
        children = sorted(p for p in root.iterdir() if p.is_dir() and any((p / n).is_file() for n in CSV_FILES))
        preferred = [p for p in children if p.name.lower().startswith("chexpert")]
        if preferred or children:
            chosen = (preferred or children)[0]
            if len(preferred or children) > 1:
                log.warning("several CheXpert folders under %s; using %s", root, chosen.name)
            return chosen
        raise self._missing_metadata(root, " / ".join(CSV_FILES))


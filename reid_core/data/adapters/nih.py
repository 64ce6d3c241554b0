"""NIH ChestX-ray14 (``nih``): ``Data_Entry_2017.csv`` + PNGs.

Layout::

    <root>/Data_Entry_2017.csv            (or Data_Entry_2017_v2020.csv)
    <root>/images/00000001_000.png        (all images in one folder), or
    <root>/images_001/images/...png … images_012/images/...png   (the official split)

The CSV header contains commas inside brackets
(``OriginalImage[Width,Height]``) and, in the 2017 file, a trailing comma, so
the column count of the header differs from the logical one; only the first
seven named columns are used. ``Patient Age`` is an integer in the v2020 file
and a ``058Y``-style string in the original one: both parse. Each image is its
own study, ordered by ``Follow-up #``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from reid_core.data.adapters.base import (
    DatasetAdapter, Problems, find_first, parse_age, rank_studies, read_table, require_columns,
)
from reid_core.errors import DatasetError

log = logging.getLogger(__name__)

METADATA_FILES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
_NEEDED = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
           "View Position")


class NihAdapter(DatasetAdapter):
    """ChestX-ray14: patient = ``Patient ID``, image_id = ``Image Index``, order = ``Follow-up #``."""

    name = "nih"
    layout = ("<root>/Data_Entry_2017.csv (or Data_Entry_2017_v2020.csv) with PNGs in <root>/images/ "
              "or <root>/images_001/images/ … <root>/images_012/images/")

    def __init__(self, max_age: float = 120.0) -> None:
        self.max_age = max_age  # the 2017 file has a few impossible ages (e.g. 414): they become NaN

    def _rows(self, root: Path, problems: Problems, progress: bool) -> pd.DataFrame:
        csv = find_first(root, METADATA_FILES)
        if csv is None:
            raise self._missing_metadata(root, " or ".join(METADATA_FILES))
        df = read_data_entry(csv)
        index = index_images(root)
        names = df["Image Index"]
        path = names.map(index)
        if path.isna().any():  # not on disk: point at the flat layout; build() reports it as missing
            path = path.fillna("images/" + names)
        out = pd.DataFrame({
            "image_id": names,
            "path": path,
            "patient_id": df["Patient ID"],
            "view": df["View Position"],
            "sex": df["Patient Gender"],
            "age": parse_age(df["Patient Age"], self.max_age),
            "findings": df["Finding Labels"],
        })
        follow_up = pd.to_numeric(df["Follow-up #"], errors="coerce")
        out["study_order"] = rank_studies(out["patient_id"], [follow_up])
        out["study_date"] = pd.NaT
        return out


def read_data_entry(csv: Path) -> pd.DataFrame:
    """Read the seven used columns of ``Data_Entry_2017*.csv`` as strings, whatever its trailing commas."""
    try:
        df = read_table(
            csv, dtype=str, index_col=False, skipinitialspace=True,
            usecols=lambda c: str(c).strip() in _NEEDED,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise DatasetError(f"{csv}: cannot parse as ChestX-ray14 metadata ({e})") from e
    df.columns = [str(c).strip() for c in df.columns]
    require_columns(df, _NEEDED, csv)
    df = df.dropna(subset=["Image Index", "Patient ID"])
    df["Image Index"] = df["Image Index"].str.strip()
    df["Patient ID"] = df["Patient ID"].str.strip()
    return df.reset_index(drop=True)


def index_images(root: Path) -> dict[str, str]:
    """Map PNG file name → path relative to ``root``, over ``images/`` and ``images_*/images/``."""
    dirs = [root / "images", *sorted(root.glob("images_*/images")), *sorted(root.glob("images_*"))]
    index: dict[str, str] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        rel = d.relative_to(root).as_posix()
        with os.scandir(d) as it:
            for e in it:
                if e.name.lower().endswith(".png") and e.name not in index:
                    index[e.name] = f"{rel}/{e.name}"
    log.debug("indexed %d PNGs under %s", len(index), root)
    return index

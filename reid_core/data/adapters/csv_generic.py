"""Any CSV that lists images (``csv``): the user names the columns.

Paths in the CSV are relative to the root given to ``build`` (absolute paths
under the root are made relative; absolute paths elsewhere and paths with a
``..`` part are reported as outside the root and never opened). ``csv_path``
is absolute, relative to the root, or relative to the working directory.
Study order: dense rank per patient of ``order_col`` (numeric if it parses,
else text), else of ``date_col``; with neither every image is study 0.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from reid_core.data.adapters.base import (
    DatasetAdapter, Problems, parse_age, rank_studies, read_table, require_columns,
)

log = logging.getLogger(__name__)


class CsvAdapter(DatasetAdapter):
    """A user CSV with one row per image; ``*_col`` arguments name its columns (None = absent)."""

    name = "csv"
    layout = "a CSV with one row per image (path and patient columns at least)"

    def __init__(
        self,
        csv_path: str | Path,
        path_col: str = "path",
        patient_col: str = "patient_id",
        order_col: str | None = None,
        date_col: str | None = None,
        view_col: str | None = None,
        sex_col: str | None = None,
        age_col: str | None = None,
        findings_col: str | None = None,
        findings_sep: str = "|",
        image_id_col: str | None = None,
        dataset: str = "csv",
        sep: str | None = None,
    ) -> None:
        self.csv_path = Path(csv_path).expanduser()
        self.cols = {"path": path_col, "patient_id": patient_col, "order": order_col, "date": date_col,
                     "view": view_col, "sex": sex_col, "age": age_col, "findings": findings_col,
                     "image_id": image_id_col}
        self.findings_sep = findings_sep
        self._dataset = dataset
        self.sep = sep  # None: tab for .tsv, comma otherwise
        self.layout = f"a CSV at {self.csv_path} with columns {[c for c in self.cols.values() if c]}"

    @property
    def dataset_name(self) -> str:
        return self._dataset

    def _resolve_csv(self, root: Path) -> Path:
        for cand in ((self.csv_path,) if self.csv_path.is_absolute() else (root / self.csv_path, self.csv_path)):
            if cand.is_file():
                return cand
        raise self._missing_metadata(root, str(self.csv_path))

    def _rows(self, root: Path, problems: Problems, progress: bool) -> pd.DataFrame:
        csv = self._resolve_csv(root)
        sep = self.sep or ("\t" if csv.name.lower().endswith((".tsv", ".tsv.gz")) else ",")
        named = [c for c in self.cols.values() if c]
        header = read_table(csv, sep=sep, nrows=0)
        require_columns(header, named, csv)  # fail before reading 400k rows
        text_keys = ("path", "patient_id", "image_id", "view", "sex", "findings")
        text_cols = [self.cols[k] for k in text_keys if self.cols[k]]
        df = read_table(csv, sep=sep, usecols=sorted(set(named)), dtype={c: str for c in text_cols})
        c = self.cols
        blank = df[c["path"]].isna() | df[c["patient_id"]].isna()
        if blank.any():
            reason = "no path or patient id in CSV"
            problems.extend({"path": str(p), "reason": reason} for p in df.loc[blank, c["path"]])
            df = df[~blank].reset_index(drop=True)
        path = df[c["path"]].str.strip()
        for prefix in {root.as_posix().rstrip("/") + "/", root.resolve().as_posix().rstrip("/") + "/"}:
            under = path.str.startswith(prefix)
            path = path.where(~under, path.str[len(prefix):])
        out = pd.DataFrame({
            "path": path,
            "patient_id": df[c["patient_id"]].str.strip(),
            "image_id": df[c["image_id"]].astype(str).str.strip() if c["image_id"] else path,
        })
        if c["view"]:
            out["view"] = df[c["view"]]
        if c["sex"]:
            out["sex"] = df[c["sex"]]
        if c["age"]:
            out["age"] = parse_age(df[c["age"]])
        if c["findings"]:
            f = df[c["findings"]].fillna("")
            out["findings"] = f if self.findings_sep == "|" else f.str.replace(self.findings_sep, "|", regex=False)
        if c["date"]:
            out["study_date"] = pd.to_datetime(df[c["date"]], errors="coerce")
        if c["order"]:
            order = df[c["order"]]
            numeric = pd.to_numeric(order, errors="coerce")
            key = numeric if numeric.notna().sum() == order.notna().sum() else order.astype("string")
            out["study_order"] = rank_studies(out["patient_id"], [key])
        elif c["date"]:
            out["study_order"] = rank_studies(out["patient_id"], [out["study_date"]])
        else:
            log.info("csv: no order/date column; every image gets study_order 0")
            out["study_order"] = 0
        return out


"""The adapter protocol: a base class fixes ``build``; each dataset fills ``_rows``.

``DatasetAdapter.build(root)`` asks the subclass for one row per image (paths
relative to ``root``, ``patient_id``, ``study_order``, view, sex, age, findings,
date), then does what every dataset shares: drops duplicate image ids and
listed files that do not exist (each reported in the problems table with a
reason), and coerces the rows to the canonical manifest with
:func:`reid_core.data.manifest.finalize_manifest` (normalised views/sex/findings,
deterministic patient-disjoint splits, frontal filter).

``study_order`` is computed by the adapters over *all* views and *before*
missing files are dropped, so an image keeps the same order whatever
``frontal_only``/``check_files`` say (orders may then have gaps).
"""
from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from reid_core.data.manifest import COLUMNS, finalize_manifest, problems_table
from reid_core.errors import DatasetError

log = logging.getLogger(__name__)

MISSING_FILE = "missing file"
DUPLICATE_ID = "duplicate image_id"
OUTSIDE_ROOT = "outside the dataset root (absolute path or '..'); not opened"
Problems = list[dict[str, str]]  # rows of the problems table ({"path", "reason"}), filled by _rows and build



def read_table(path: str | Path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` whose unreadable inputs (empty, not UTF-8, malformed) raise :class:`DatasetError`."""
    try:
        return pd.read_csv(path, **kwargs)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                           "save the table as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: the table is empty (no header row)") from None
    except pd.errors.ParserError as exc:
        raise DatasetError(f"{path}: not a readable table ({(str(exc).splitlines() or [''])[0][:160]})") from None


@dataclass
class AdapterResult:
    """What an adapter returns: the canonical manifest and the skipped files (``path``, ``reason``)."""

    manifest: pd.DataFrame
    problems: pd.DataFrame

    def __repr__(self) -> str:
        n_pat = self.manifest["patient_id"].nunique() if len(self.manifest) else 0
        return f"AdapterResult({len(self.manifest)} images, {n_pat} patients, {len(self.problems)} problems)"


class DatasetAdapter(ABC):
    """Turns a dataset folder in its public layout into a canonical manifest.

    Subclasses set ``name`` and ``layout`` (a one-line description of the
    expected files, used in error messages) and implement :meth:`_rows`.
    """

    name: str = "base"
    layout: str = ""

    @property
    def dataset_name(self) -> str:
        """Value of the manifest's ``dataset`` column."""
        return self.name

    def build(
        self, root: str | Path, frontal_only: bool = True, check_files: bool = True, progress: bool = False
    ) -> AdapterResult:
        """Read the dataset at ``root``; missing/unreadable files go to ``problems``, never abort."""
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetError(
                f"{self.name}: dataset root {root} does not exist or is not a folder; expected {self.layout}")
        problems: Problems = []
        rows = self._rows(root, problems, progress)
        rows = rows[[c for c in COLUMNS if c in rows.columns]].reset_index(drop=True)
        rows = self._drop_duplicates(rows, problems)
        rows = self._drop_outside(rows, problems)
        if check_files:
            rows = self._drop_missing(root, rows, problems, progress)
        manifest = finalize_manifest(rows, dataset=self.dataset_name, frontal_only=frontal_only)
        if frontal_only and manifest.empty and len(rows):
            views = finalize_manifest(rows, dataset=self.dataset_name)["view"].value_counts()
            raise DatasetError(
                f"{self.name}: none of the {len(rows)} images is a frontal (PA/AP) view "
                f"(views: {', '.join(f'{v} {n}' for v, n in views.items())}); the frontal filter drops them all. "
                "Metadata without a view column makes every view UNKNOWN: pass --all-views to keep every view "
                "(frontal_only=False), or name the view column")
        table = problems_table(problems)
        log.info("%s: %d images of %d patients (%s), %d problem file(s)", self.name, len(manifest),
                 manifest["patient_id"].nunique(), "frontal only" if frontal_only else "all views", len(table))
        return AdapterResult(manifest=manifest, problems=table)

    @abstractmethod
    def _rows(self, root: Path, problems: Problems, progress: bool) -> pd.DataFrame:
        """One row per image with (a subset of) the canonical columns; append skipped files to ``problems``."""

    # ------------------------------------------------------------------ shared steps
    @staticmethod
    def _drop_duplicates(rows: pd.DataFrame, problems: Problems) -> pd.DataFrame:
        """Keep the first row per image_id; another file with the same id is reported.

        A file listed twice is kept once; when its rows disagree (other labels, view, patient...),
        the warning says how many files that concerns and which columns, since the first row wins.
        """
        if "image_id" not in rows.columns:
            return rows
        ids = rows["image_id"].astype(str)
        dup = ids.duplicated()
        if dup.any():
            first_path = rows["path"].astype(str)[~dup].set_axis(ids[~dup])
            other_file = dup & (rows["path"].astype(str) != ids.map(first_path))
            problems.extend({"path": p, "reason": DUPLICATE_ID} for p in rows.loc[other_file, "path"].astype(str))
            log.warning("dropped %d repeated row(s) and %d file(s) whose image_id is taken",
                        int((dup & ~other_file).sum()), int(other_file.sum()))
            _warn_conflicts(rows[~other_file], ids[~other_file])
        return rows[~dup].reset_index(drop=True)

    @staticmethod
    def _drop_outside(rows: pd.DataFrame, problems: Problems) -> pd.DataFrame:
        """Drop paths that leave the root lexically (absolute, or with a '..' part) before any file is touched.

        Whether such a file exists is never checked, so ``bad_files.csv`` cannot be used to probe the
        machine's other folders. (Symlinks inside the root are followed: datasets often link image
        folders from another disk.)
        """
        paths = rows["path"].astype(str)
        outside = np.array([os.path.isabs(p) or ".." in Path(p).parts or p.startswith("~") for p in paths], dtype=bool)
        if outside.any():
            problems.extend({"path": p, "reason": OUTSIDE_ROOT} for p in paths[outside])
            log.warning("%d listed path(s) point outside the dataset root; skipped", int(outside.sum()))
        return rows[~outside].reset_index(drop=True)

    @staticmethod
    def _drop_missing(root: Path, rows: pd.DataFrame, problems: Problems, progress: bool) -> pd.DataFrame:
        base = str(root)
        paths = rows["path"].astype(str).tolist()
        it = tqdm(paths, desc="checking files", unit="file", disable=not progress)
        exists = np.array([os.path.exists(os.path.join(base, p)) for p in it], dtype=bool)
        if not exists.all():
            problems.extend({"path": p, "reason": MISSING_FILE} for p in rows.loc[~exists, "path"].astype(str))
            log.warning("%d listed file(s) do not exist under %s", int((~exists).sum()), root)
        return rows[exists].reset_index(drop=True)

    def _missing_metadata(self, root: Path, expected: str) -> DatasetError:
        return DatasetError(f"{self.name}: {expected} not found under {root}; expected layout: {self.layout}")


def _warn_conflicts(rows: pd.DataFrame, ids: pd.Series) -> None:
    """Warn when one file's repeated rows disagree on any column (the first row is the one kept)."""
    repeated = ids.duplicated(keep=False)
    if not repeated.any():
        return
    same = rows[repeated].astype(str).groupby(ids[repeated].to_numpy()).nunique() > 1
    conflicting = same.any(axis=1)
    if conflicting.any():
        columns = sorted(same.columns[same.any(axis=0)])
        log.warning("%d file(s) are listed more than once with different %s; the first row of each was kept",
                    int(conflicting.sum()), ", ".join(columns))


# ---------------------------------------------------------------------- helpers used by several adapters
def find_first(root: Path, names: Iterable[str]) -> Path | None:
    """The first of ``names`` (relative to ``root``) that is a file, or None."""
    for n in names:
        p = root / n
        if p.is_file():
            return p
    return None


def require_columns(df: pd.DataFrame, needed: Iterable[str], source: str | Path) -> None:
    """Raise :class:`DatasetError` naming the missing columns and listing the available ones."""
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DatasetError(f"{source}: missing column(s) {missing}; available columns: {list(df.columns)}")


def parse_age(values: pd.Series, max_age: float = 120.0) -> pd.Series:
    """Ages in years from numbers (``58``) or DICOM age strings (``058Y``, ``006M``, ``010W``, ``003D``).

    Values that do not parse or exceed ``max_age`` years become NaN.
    """
    parts = values.astype("string").str.strip().str.upper().str.extract(r"^(\d+(?:\.\d+)?)\s*([YMWD]?)$")
    number = pd.to_numeric(parts[0], errors="coerce")
    scale = parts[1].map({"": 1.0, "Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}).astype("float64")
    age = (number * scale).astype("float64")
    return age.where(age <= max_age)


def rank_studies(patient: pd.Series, keys: Sequence[pd.Series], study: pd.Series | None = None) -> np.ndarray:
    """0-based chronological study index per patient.

    Studies are sorted by ``keys`` (missing values last). With ``study`` given,
    every image of one study gets that study's order (its keys are the minimum
    over its images); otherwise images with equal keys form one study.
    """
    frame = pd.DataFrame({"_p": patient.to_numpy()})
    kcols = [f"_k{i}" for i in range(len(keys))]
    for c, k in zip(kcols, keys):
        frame[c] = k.to_numpy()
    if study is None:
        group = ["_p", *kcols]
        studies = frame.drop_duplicates()
        by = group
    else:
        frame["_s"] = study.to_numpy()
        group = ["_p", "_s"]
        studies = frame.groupby(group, dropna=False, sort=False)[kcols].min().reset_index()
        by = ["_p", *kcols, "_s"]
    studies = studies.sort_values(by, na_position="last", kind="stable")
    studies["_order"] = studies.groupby("_p", sort=False).cumcount()
    merged = frame.merge(studies[group + ["_order"]], on=group, how="left")
    return merged["_order"].to_numpy(dtype="int64")


def findings_from_labels(
    df: pd.DataFrame,
    labels: Sequence[str],
    uncertain_as_positive: bool = False,
    label_map: Mapping[str, str] | None = None,
) -> pd.Series:
    """Pipe-joined names of the label columns equal to 1.0 (and -1.0 if ``uncertain_as_positive``).

    ``label_map`` renames labels (e.g. :data:`CHEXPERT_TO_NIH`); mapping to ``""`` drops a label.
    Blank, 0.0 and (by default) -1.0 count as not positive. Vectorised: each row's positives become a
    bit code, and only the few distinct codes are turned into strings.
    """
    label_map = dict(label_map or {})
    cols = [lab for lab in labels if lab in df.columns and label_map.get(lab, lab)]
    if not cols or not len(df):
        return pd.Series("", index=df.index, dtype=object)
    values = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64")
    positive = (values == 1.0) | ((values == -1.0) if uncertain_as_positive else False)
    codes = positive.astype(np.int64) @ (np.int64(1) << np.arange(len(cols), dtype=np.int64))
    uniq, inverse = np.unique(codes, return_inverse=True)
    names = np.array([label_map.get(lab, lab) for lab in cols], dtype=object)
    bits = (uniq[:, None] >> np.arange(len(cols))) & 1
    strings = np.array(["|".join(names[row.astype(bool)]) for row in bits], dtype=object)
    return pd.Series(strings[inverse.ravel()], index=df.index, dtype=object)


def parse_yyyymmdd(values: pd.Series) -> pd.Series:
    """``YYYYMMDD`` strings/ints → datetime64 (NaT unless 8 digits of a valid date); parses each distinct value once."""
    text = values.astype("string").str.strip().str.replace(r"\.0$", "", regex=True)
    codes, uniq = pd.factorize(text.where(text.str.fullmatch(r"\d{8}").fillna(False)))
    parsed = pd.to_datetime(pd.Series(uniq, dtype="string"), format="%Y%m%d", errors="coerce")
    out = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[ns]")
    known = codes >= 0
    out[known] = parsed.to_numpy(dtype="datetime64[ns]")[codes[known]]
    return pd.Series(out, index=values.index)


def dicom_time_to_float(values: pd.Series) -> pd.Series:
    """DICOM TM (``HHMMSS.ffffff``, ``HHMM``, ``HH:MM:SS``) or MIMIC's float StudyTime → sortable float HHMMSS.f."""
    s = values.astype("string").str.strip().str.replace(":", "", regex=False)
    whole = s.str.split(".", n=1).str[0].str.ljust(6, "0")
    frac = s.str.extract(r"(\.\d*)$")[0].fillna("")
    return pd.to_numeric(whole + frac, errors="coerce")

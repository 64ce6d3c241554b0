"""Build a workspace's data artefacts: manifest, image store, bad-files report.

``prepare_workspace`` is what ``cxr-reid prepare`` runs: dataset adapter (or the
phantom) → manifest → parallel decode into ``images_<size>.npy`` → the final
``manifest.parquet`` (usable images only, each with its ``cache_row``) and
``bad_files.csv`` (every skipped file with the stage and reason). Re-running
resumes an interrupted decode and skips a finished one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reid_core.atomic import atomic_path
from reid_core.data.cache import DONE, prepare_images
from reid_core.data.manifest import load_manifest, save_manifest
from reid_core.data.sources import FileSource, ImageSource, PhantomSource
from reid_core.errors import DatasetError
from reid_core.pseudonyms import pseudonymise
from reid_core.workspace import Workspace

log = logging.getLogger(__name__)

DATASETS = ("nih", "chexpert", "mimic", "mimic-dicom", "dicom", "csv", "phantom")
PSEUDONYMISED = frozenset({"dicom"})  # datasets whose ids come straight from hospital DICOM headers


@dataclass
class PrepareSummary:
    """What ``prepare_workspace`` produced."""

    workspace: Workspace
    size: int
    n_images: int
    n_patients: int
    n_new: int
    n_skipped: int
    bad_files: pd.DataFrame

    def describe(self) -> str:
        return (
            f"{self.n_images} images of {self.n_patients} patients at {self.size} px "
            f"({self.n_new} decoded now, {self.n_skipped} already done); "
            f"{len(self.bad_files)} file(s) skipped, listed in {self.workspace.bad_files_path}"
        )


def phantom_difficulty(options: dict[str, Any]) -> str:
    """The phantom difficulty of prepare ``options`` or of a ``workspace.json``'s options (default standard)."""
    from reid_core.data.phantom.difficulty import check_difficulty

    return check_difficulty(options.get("difficulty", "standard"))


def build_manifest(dataset: str, root: str | Path | None, frontal_only: bool = True,
                   check_files: bool = True, progress: bool = True,
                   **options: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The manifest and the adapter's problems table (files listed but missing or unreadable)."""
    if dataset == "phantom":
        from reid_core.data.phantom import phantom_manifest

        manifest = phantom_manifest(n_patients=int(options.get("patients", 200)), seed=int(options.get("seed", 0)),
                                    difficulty=phantom_difficulty(options))
        return manifest, pd.DataFrame(columns=["path", "reason"])
    if root is None:
        raise DatasetError(f"--root is required for dataset {dataset!r}")
    from reid_core.data.adapters import get_adapter

    adapter = get_adapter(dataset, **options)
    result = adapter.build(Path(root), frontal_only=frontal_only, check_files=check_files, progress=progress)
    return result.manifest, result.problems


def prepare_workspace(workspace: Workspace | str | Path, dataset: str, root: str | Path | None = None,
                      size: int = 256, workers: int | None = None, frontal_only: bool = True,
                      progress: bool = True, real_dates: bool = False, keep_mapping: bool = False,
                      **options: Any) -> PrepareSummary:
    """Build or resume the workspace's manifest and image store at ``size`` px.

    For a DICOM folder, patient and image ids become keyed pseudonyms and study
    dates become relative to each patient's first study (:mod:`reid_core.pseudonyms`);
    ``real_dates`` keeps the dates, ``keep_mapping`` writes the mapping back. Only
    with ``real_dates`` does the workspace show calendar dates (``calendar_dates`` in
    ``workspace.json``); otherwise the app and CLI show days from the first study.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    manifest, problems = build_manifest(dataset, root, frontal_only=frontal_only, progress=progress, **options)
    if manifest.empty:
        raise DatasetError(
            f"dataset {dataset!r} at {root} gave no usable images"
            + (f"; {len(problems)} problem(s), first: {problems.iloc[0].to_dict()}" if len(problems) else "")
        )
    if dataset == "phantom":
        source: ImageSource = PhantomSource(seed=int(options.get("seed", 0)), size=size,
                                            difficulty=phantom_difficulty(options))
        root_str = None
    else:
        source = FileSource(str(Path(root).resolve()))
        root_str = str(Path(root).resolve())
    ws.create(dataset=dataset, root=root_str, frontal_only=frontal_only, calendar_dates=bool(real_dates),
              options={k: v for k, v in options.items() if isinstance(v, (int, float, str, bool, type(None)))})
    if dataset in PSEUDONYMISED:
        manifest = pseudonymise(manifest, ws.root, keep_dates=real_dates, keep_mapping=keep_mapping)
    plan = manifest.reset_index(drop=True)
    plan["cache_row"] = np.arange(len(plan), dtype=np.int64)
    result = prepare_images(plan, source, ws.images_path(size), size, workers=workers, progress=progress)
    status = np.load(ws.images_path(size).with_suffix(".status.npy"), mmap_mode="r")
    usable = plan[np.asarray(status) == DONE].reset_index(drop=True)
    if not _same_manifest(ws.manifest_path, usable):  # unchanged: keep the file (and the mtime later steps check)
        save_manifest(usable, ws.manifest_path)
    bad = pd.concat(
        [problems.assign(stage="index"), result.failures.assign(stage="decode")], ignore_index=True
    )[["path", "stage", "reason"]]
    with atomic_path(ws.bad_files_path) as tmp:
        bad.to_csv(tmp, index=False)
    if len(bad):
        log.warning("%d file(s) skipped; see %s", len(bad), ws.bad_files_path)
    return PrepareSummary(ws, size, len(usable), usable["patient_id"].nunique(), result.n_new,
                          result.n_skipped, bad)


def _same_manifest(path: Path, manifest: pd.DataFrame) -> bool:
    """Whether ``path`` already holds exactly ``manifest`` (an unreadable file counts as different)."""
    if not path.exists():
        return False
    try:
        return load_manifest(path).equals(manifest)
    except Exception:  # noqa: BLE001 - any unreadable or invalid old manifest is simply rewritten
        return False

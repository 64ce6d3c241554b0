"""Phantom chest radiographs: synthetic patients, their longitudinal studies and images.

The embedded default dataset and test oracle of cxr-reid. Public API:

* :class:`PhantomGenerator` — ``patient(i)``, ``studies(i)``, ``render(i, j)``,
  ``render_with_factors(i, j)``, ``factor_rows(i)``, ``factors_table(ids)``, ``manifest(ids)``.
* :func:`write_phantom_dataset` — ChestX-ray14 PNG layout or DICOM on disk, plus
  ``manifest.parquet``, ``phantom_factors.parquet`` and ``phantom_settings.json``.
* :func:`phantom_manifest`, :func:`phantom_factors` — tables without rendering.
* :func:`render_image` — one image by ``(seed, patient, study, size, difficulty)`` (for on-the-fly loaders).
* ``difficulty``: ``standard`` or ``hard`` (look-alike patients, wide nuisance; :mod:`.difficulty`).
* :func:`contact_sheet` — the patients × studies preview grid.
"""
from __future__ import annotations

import pandas as pd

from reid_core.data.phantom.acquisition import StudySpec
from reid_core.data.phantom.anatomy import MARK_KINDS, Mark, PatientAnatomy
from reid_core.data.phantom.difficulty import DIFFICULTIES, Difficulty
from reid_core.data.phantom.export import NIH_CSV, NIH_HEADER, write_phantom_dataset
from reid_core.data.phantom.findings import KINDS as FINDING_KINDS, FindingState
from reid_core.data.phantom.generator import PhantomGenerator, image_path, nih_name, patient_id, render_image
from reid_core.data.phantom.sheet import contact_sheet

FINDING_LABELS: tuple[str, ...] = ("Cardiomegaly", "Effusion", "Consolidation", "Nodule", "Mass",
                                   "Pneumothorax", "Atelectasis")


def phantom_manifest(n_patients: int, seed: int = 0, fmt: str = "nih", **options) -> pd.DataFrame:
    """Canonical manifest of ``n_patients`` phantom patients, without rendering (paths in the ``fmt`` layout)."""
    return PhantomGenerator(seed=seed, **options).manifest(range(n_patients), fmt=fmt)


def phantom_factors(n_patients: int, seed: int = 0, **options) -> pd.DataFrame:
    """Ground-truth table (one row per image) of ``n_patients`` phantom patients, without rendering."""
    return PhantomGenerator(seed=seed, **options).factors_table(range(n_patients))


__all__ = [
    "DIFFICULTIES", "Difficulty", "FINDING_KINDS", "FINDING_LABELS", "MARK_KINDS", "NIH_CSV", "NIH_HEADER", "FindingState", "Mark",
    "PatientAnatomy", "PhantomGenerator", "StudySpec", "contact_sheet", "image_path", "nih_name",
    "patient_id", "phantom_factors", "phantom_manifest", "render_image", "write_phantom_dataset",
]

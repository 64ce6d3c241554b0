"""Write a phantom dataset to disk: ChestX-ray14 PNG layout or DICOM, plus manifest and ground truth.

Layouts under ``out_dir``:

* ``nih``: ``images/NNNNNNNN_NNN.png`` (8-bit grayscale; patient number = index + 1,
  follow-up = study index) and ``Data_Entry_2017.csv`` in the exact format of the
  real file (same header, trailing comma, integer ages, ``M``/``F``).
* ``dicom``: ``dicom/P00000/P00000_s00.dcm`` (DX/CR, 16-bit allocated, 12 stored,
  deterministic UIDs, optionally MONOCHROME1 with inverted stored values).

Both also get ``manifest.parquet`` (canonical columns), ``phantom_factors.parquet``
(one ground-truth row per image) and ``phantom_settings.json``.
"""
from __future__ import annotations

import json
import logging
import os
import multiprocessing as mp
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from PIL import Image

from reid_core.data.manifest import finalize_manifest, save_manifest
from reid_core.data.phantom.acquisition import StudySpec
from reid_core.data.phantom.anatomy import PatientAnatomy
from reid_core.data.phantom.difficulty import Difficulty, check_difficulty
from reid_core.data.phantom.generator import PhantomGenerator, image_path, nih_name, patient_id

log = logging.getLogger(__name__)

NIH_CSV = "Data_Entry_2017.csv"
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
FIELD_MM = 400.0            # physical width of the output frame
UID_ROOT = "cxr-reid-phantom"
PHOTOMETRIC = ("MONOCHROME2", "MONOCHROME1", "mixed")
_SOP_CLASS = {"DX": "1.2.840.10008.5.1.4.1.1.1.1", "CR": "1.2.840.10008.5.1.4.1.1.1"}


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Quantise a [0, 1] image to 8 bits."""
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint12(img: np.ndarray) -> np.ndarray:
    """Quantise a [0, 1] image to 12 bits stored in uint16."""
    return np.round(np.clip(img, 0.0, 1.0) * 4095.0).astype(np.uint16)


def nih_row(i: int, spec: StudySpec, sex: str, size: int) -> str:
    """One ``Data_Entry_2017.csv`` line (with the real file's trailing comma)."""
    spacing = f"{FIELD_MM / size:.6g}"
    return (f"{nih_name(i, spec.study)},{spec.labels},{spec.study},{i + 1},{int(spec.age)},{sex},{spec.view},"
            f"{size},{size},{spacing},{spacing},")


def photometric_of(spec: StudySpec, photometric: str) -> str:
    """MONOCHROME1/2 of one image; ``mixed`` stores CR images as MONOCHROME1, as many CR readers did."""
    if photometric == "mixed":
        return "MONOCHROME1" if spec.modality == "CR" else "MONOCHROME2"
    return photometric


def dicom_dataset(img: np.ndarray, spec: StudySpec, anat: PatientAnatomy, seed: int, photometric: str = "MONOCHROME2"):
    """A pydicom ``Dataset`` (with file meta) holding one phantom image; no real-person data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    i, j = spec.patient, spec.study

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[UID_ROOT, str(seed), str(i), str(j), kind])

    stored = to_uint12(img)
    if photometric == "MONOCHROME1":
        stored = (4095 - stored).astype(np.uint16)
    sop = uid("sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _SOP_CLASS[spec.modality]
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = _SOP_CLASS[spec.modality]
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.PatientName = f"PHANTOM^{patient_id(i)}"
    ds.PatientID = patient_id(i)
    ds.PatientSex = anat.sex
    ds.PatientAge = f"{min(int(spec.age), 999):03d}Y"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = spec.date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = spec.time
    ds.StudyID = f"{j + 1}"
    ds.AccessionNumber = f"PH{seed % 10000:04d}{i:06d}{j:02d}"
    ds.Modality = spec.modality
    ds.Manufacturer = "cxr-reid phantom (synthetic)"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = spec.view
    ds.PatientOrientation = ["L", "F"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "PRIMARY"]
    if spec.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    spacing = FIELD_MM / img.shape[0]
    ds.PixelSpacing = ds.ImagerPixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
    ds.set_pixel_data(stored, photometric_interpretation=photometric, bits_stored=12, generate_instance_uid=False)
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    return ds


# --- worker side: one generator per process ------------------------------------------------------
_WORKER: dict[str, object] = {}


def _init_worker(options: dict) -> None:
    _WORKER["gen"] = PhantomGenerator(**options["generator"])
    _WORKER["out"] = Path(options["out"])
    _WORKER["fmt"] = options["fmt"]
    _WORKER["photometric"] = options["photometric"]


def _export_patient(i: int) -> tuple[list[dict], list[str]]:
    """Render and write every study of patient ``i``; return its factor rows and NIH csv lines."""
    gen: PhantomGenerator = _WORKER["gen"]  # type: ignore[assignment]
    out: Path = _WORKER["out"]  # type: ignore[assignment]
    fmt = str(_WORKER["fmt"])
    anat = gen.patient(i)
    lines = []
    for spec in gen.studies(i):
        img = gen.render_spec(spec)
        path = out / image_path(i, spec.study, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "nih":
            Image.fromarray(to_uint8(img), mode="L").save(path, optimize=False, compress_level=1)
            lines.append(nih_row(i, spec, anat.sex, gen.size))
        else:
            ds = dicom_dataset(img, spec, anat, gen.seed, photometric_of(spec, str(_WORKER["photometric"])))
            ds.save_as(path, enforce_file_format=True)
    rows = gen.factor_rows(i)
    for r in rows:
        r["path"] = image_path(i, int(r["study_order"]), fmt)
    return rows, lines


def write_phantom_dataset(out_dir: str | Path, n_patients: int, seed: int = 0, size: int = 256, fmt: str = "nih",
                          workers: int | None = 1, n_studies: int | tuple[int, int] = (1, 10),
                          abnormal_fraction: float = 1 / 3, photometric: str = "mixed",
                          patients: Iterable[int] | None = None, progress: bool = True,
                          difficulty: Difficulty = "standard") -> Path:
    """Generate ``n_patients`` phantom patients (or the given ``patients`` indices) into ``out_dir``.

    ``fmt`` is ``nih`` (ChestX-ray14 PNG layout) or ``dicom``; ``photometric``
    (DICOM only) is ``MONOCHROME2``, ``MONOCHROME1`` or ``mixed`` (CR images
    MONOCHROME1); ``difficulty`` ``standard`` or ``hard``. Returns ``out_dir``. Output is identical for any ``workers``
    (None: one per CPU core).
    """
    if fmt not in ("nih", "dicom"):
        raise ValueError(f"fmt must be 'nih' or 'dicom', got {fmt!r}")
    if photometric not in PHOTOMETRIC:
        raise ValueError(f"photometric must be one of {PHOTOMETRIC}, got {photometric!r}")
    workers = max(1, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    ids = list(range(int(n_patients))) if patients is None else [int(p) for p in patients]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen_opts = {"seed": seed, "size": size, "n_studies": n_studies, "abnormal_fraction": abnormal_fraction,
                "difficulty": check_difficulty(difficulty)}
    options = {"generator": gen_opts, "out": str(out), "fmt": fmt, "photometric": photometric}
    results: list[tuple[list[dict], list[str]]] = []
    bar = _progress(len(ids), progress)
    if workers <= 1:
        _init_worker(options)
        for i in ids:
            results.append(_export_patient(i))
            bar.update(1)
    else:
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(options,)) as ex:
            for res in ex.map(_export_patient, ids, chunksize=max(1, min(16, len(ids) // (8 * workers) or 1))):
                results.append(res)
                bar.update(1)
    bar.close()
    rows = [r for res, _ in results for r in res]
    factors = pd.DataFrame(rows)
    factors.to_parquet(out / "phantom_factors.parquet", index=False)
    gen = PhantomGenerator(**gen_opts)
    save_manifest(_manifest_from(factors), out / "manifest.parquet")
    if fmt == "nih":
        with open(out / NIH_CSV, "w", newline="\n") as fh:
            fh.write(NIH_HEADER + "\n")
            for _, lines in results:
                fh.writelines(line + "\n" for line in lines)
    settings = {**gen.settings(), "n_patients": len(ids), "patients": ids if patients is not None else None,
                "format": fmt, "photometric": photometric if fmt == "dicom" else None}
    (out / "phantom_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    log.info("phantom dataset: %d patients, %d images (%s) in %s", len(ids), len(rows), fmt, out)
    return out


def _manifest_from(factors: pd.DataFrame) -> pd.DataFrame:
    cols = ["image_id", "path", "patient_id", "study_order", "study_date", "view", "sex", "age", "findings",
            "phantom_patient"]
    if factors.empty:
        return finalize_manifest(pd.DataFrame({c: [] for c in cols}), dataset="phantom")
    man = factors[cols].assign(dataset="phantom", phantom_study=factors["study_order"])
    return finalize_manifest(man, dataset="phantom")


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, unit="patient", desc="phantom", disable=not enabled)

"""prepare throughput: decode + letterbox of 1024 px PNG and DICOM files into a 256 px store."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter

from reid_core.data.cache import prepare_images
from reid_core.data.sources import FileSource


def _smooth_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A radiograph-like smooth 12-bit image (noise is unrealistically hard to compress)."""
    img = gaussian_filter(rng.random((size // 8, size // 8)), 2)
    img = np.kron(img, np.ones((8, 8))) + 0.02 * rng.random((size, size))
    img = (img - img.min()) / np.ptp(img)
    return (img * 4095).astype(np.uint16)


def _write_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray((arr >> 4).astype(np.uint8)).save(path)


def _write_dicom(path: Path, arr: np.ndarray, compress: bool) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = "BENCH", "DX"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = arr.tobytes()
    if compress:
        ds.compress(JPEG2000Lossless, arr)
    ds.save_as(path, enforce_file_format=True)


def _throughput(files: list[str], root: Path, workers: int) -> float:
    m = pd.DataFrame({"image_id": files, "path": files})
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        res = prepare_images(m, FileSource(str(root)), Path(out) / "images_256.npy", 256, workers=workers,
                             progress=False)
        dt = time.perf_counter() - t0
    assert res.failures.empty, res.failures
    return len(files) / dt


def run(quick: bool = False) -> dict:
    n, size = (8, 256) if quick else (96, 1024)
    rng = np.random.default_rng(0)
    out: dict = {"source_px": size, "n_images": n}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kinds = {"png8": [], "dicom16": [], "dicom_j2k": []}
        for i in range(n):
            arr = _smooth_image(rng, size)
            _write_png(root / f"{i}.png", arr)
            kinds["png8"].append(f"{i}.png")
            _write_dicom(root / f"{i}.dcm", arr, compress=False)
            kinds["dicom16"].append(f"{i}.dcm")
            _write_dicom(root / f"{i}_j2k.dcm", arr, compress=True)
            kinds["dicom_j2k"].append(f"{i}_j2k.dcm")
        for kind, files in kinds.items():
            for workers in (1, 2):
                out[f"{kind}_img_per_s_{workers}w"] = round(_throughput(files, root, workers), 1)
    return out

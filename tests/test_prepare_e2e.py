"""Foundation end to end: phantom files on disk (ChestX-ray14 PNG and DICOM layouts) → prepare → workspace."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reid_core.cli import main
from reid_core.data.io import load_image
from reid_core.data.manifest import load_manifest
from reid_core.data.phantom import PhantomGenerator
from reid_core.data.store import ImageStore
from reid_core.prepare import prepare_workspace
from reid_core.workspace import Workspace


@pytest.fixture(scope="module")
def nih_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nih")
    assert main(["phantom", "--out", str(root), "--patients", "30", "--seed", "4", "--size", "96",
                 "--format", "nih", "--workers", "1"]) == 0
    return root


def test_nih_layout_round_trip_with_corrupt_files(nih_root, tmp_path):
    pngs = sorted((nih_root / "images").glob("*.png"))
    n = len(pngs)
    corrupt = pngs[:: max(1, n // 2)][:2]  # ~1-2% of the files
    for p in corrupt:
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3])  # truncated PNG
    ws = Workspace(tmp_path / "ws")
    summary = prepare_workspace(ws, "nih", root=nih_root, size=64, workers=2, progress=False)
    bad = pd.read_csv(ws.bad_files_path)
    assert set(bad["path"]) == {f"images/{p.name}" for p in corrupt}
    assert (bad["stage"] == "decode").all() and bad["reason"].str.len().gt(0).all()
    m = load_manifest(ws.manifest_path)
    assert summary.n_images == len(m) == n - len(corrupt)
    assert m["patient_id"].nunique() == 30 and set(m["view"]) <= {"PA", "AP"}
    # every follow-up kept, orders as the generator made them
    gen = PhantomGenerator(seed=4, size=96)
    assert len(m) + len(corrupt) == sum(len(gen.studies(i)) for i in range(30))
    # pixels: the store holds the letterboxed file contents
    store = ImageStore(ws.images_path(64), m)
    row = m.iloc[5]
    ref = load_image(nih_root / row["path"])
    assert np.abs(store.get(row["image_id"]) - _resize(ref, 64)).mean() < 0.02
    # re-running skips everything
    again = prepare_workspace(ws, "nih", root=nih_root, size=64, workers=1, progress=False)
    assert again.n_new == 0 and again.n_skipped == n
    assert "images" in ws.format_status() and "64 px" in ws.format_status()


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from reid_core.data.cache import letterbox

    return letterbox(img, size).astype(np.float32) / 255


def test_dicom_layout_through_the_dicom_folder_adapter(tmp_path):
    root = tmp_path / "dcm"
    assert main(["phantom", "--out", str(root), "--patients", "6", "--seed", "2", "--size", "64",
                 "--format", "dicom", "--workers", "1"]) == 0
    assert main(["prepare", "--dataset", "dicom", "--root", str(root), "--workspace", str(tmp_path / "ws"),
                 "--size", "32", "--workers", "1", "--quiet"]) == 0
    m = load_manifest(tmp_path / "ws" / "manifest.parquet")
    gen = PhantomGenerator(seed=2, size=64)
    assert len(m) == sum(len(gen.studies(i)) for i in range(6))
    assert pd.read_csv(tmp_path / "ws" / "bad_files.csv").empty  # sidecar tables are not reported
    first = m[m["patient_id"] == m["patient_id"].iloc[0]]
    assert first["study_order"].tolist() == sorted(first["study_order"].tolist())
    assert first["study_date"].is_monotonic_increasing


def test_phantom_prepared_directly(tmp_path):
    assert main(["prepare", "--dataset", "phantom", "--patients", "8", "--workspace", str(tmp_path / "ws"),
                 "--size", "48", "--quiet"]) == 0
    ws = Workspace(tmp_path / "ws")
    m = load_manifest(ws.manifest_path)
    gen = PhantomGenerator(seed=0, size=48)
    row = m.iloc[3]
    direct = gen.render(int(row["phantom_patient"]), int(row["phantom_study"]))
    assert np.abs(ImageStore(ws.images_path(48), m).get(row["image_id"]) - direct).max() <= 1 / 255 + 1e-6

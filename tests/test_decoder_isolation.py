"""One bad file never takes the tool down: a Rust decoder panic (a BaseException) and a native crash.

``tests/data/rle_panic.dcm`` is pydicom's ``MR_small_RLE.dcm`` with a few bytes flipped: decoding its pixel
data makes pylibjpeg-rle's Rust decoder raise ``pyo3_runtime.PanicException``, which derives from
``BaseException`` and used to escape every ``except Exception`` (prepare aborted, and so did every re-run).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from reid_core.cli import main
from reid_core.data.io import load_image, load_image_with_meta
from reid_core.errors import ImageLoadError
from reid_core.prepare import prepare_workspace
from reid_core.query import load_query_image
from reid_core.workspace import Workspace

from fixtures_datasets import write_dicom

RLE_PANIC = Path(__file__).parent / "data" / "rle_panic.dcm"


def test_fixture_really_panics_the_rust_decoder():
    """Guards the fixture: the raw decoder call must still raise a non-Exception BaseException."""
    import pydicom

    ds = pydicom.dcmread(RLE_PANIC)
    with pytest.raises(BaseException) as info:
        ds.pixel_array
    assert not isinstance(info.value, Exception)
    assert type(info.value).__name__ == "PanicException"


def test_load_image_turns_the_panic_into_a_typed_error():
    with pytest.raises(ImageLoadError, match="decoder panicked") as info:
        load_image(RLE_PANIC)
    assert info.value.path == str(RLE_PANIC)
    with pytest.raises(ImageLoadError):
        load_image_with_meta(RLE_PANIC)
    with pytest.raises(ImageLoadError):  # the CLI's and the app's query path
        load_query_image(RLE_PANIC, 64)


def _dicom_tree(root: Path) -> Path:
    for i in range(3):
        write_dicom(root / f"p{i}" / "a.dcm", f"P{i}", f"1.2.3.{i}", f"1.2.3.{i}.1", size=64)
    shutil.copy(RLE_PANIC, root / "p9_bad.dcm")
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_lists_the_panicking_file_and_finishes(tmp_path, workers):
    root = _dicom_tree(tmp_path / "dcm")
    ws = Workspace(tmp_path / "ws")
    summary = prepare_workspace(ws, "dicom", root=root, size=32, workers=workers, progress=False)
    assert summary.n_images == 3
    bad = pd.read_csv(ws.bad_files_path)
    row = bad[bad["path"] == "p9_bad.dcm"]
    assert len(row) == 1 and row["stage"].iloc[0] == "decode"
    assert "decoder panicked" in row["reason"].iloc[0]
    again = prepare_workspace(ws, "dicom", root=root, size=32, workers=workers, progress=False)  # re-runs finish
    assert again.n_new == 0 and again.n_images == 3


def test_cli_prepare_exits_cleanly_with_the_panicking_file(tmp_path, capsys):
    root = _dicom_tree(tmp_path / "dcm")
    args = ["prepare", "--dataset", "dicom", "--root", str(root), "--workspace", str(tmp_path / "ws"),
            "--size", "32", "--workers", "1", "--quiet"]
    assert main(args) == 0
    assert "1 file(s) skipped" in capsys.readouterr().out
    assert main(args) == 0


def test_app_upload_of_the_panicking_file_is_a_typed_error():
    """The app's upload path (pages catch CxrReidError and show it): the panic no longer kills the script thread."""
    from reid_core.ui.upload import load_uploaded_image

    with pytest.raises(ImageLoadError, match="decoder panicked") as info:
        load_uploaded_image("scan.dcm", RLE_PANIC.read_bytes(), 64)
    assert info.value.path == "scan.dcm"


def test_inf_dimension_is_a_typed_error(tmp_path):
    """A dimension element holding 'inf' (the probe saw an OverflowError escape) gives a typed error."""
    from pydicom import dcmread

    path = write_dicom(tmp_path / "inf.dcm", "P1", "1.2.3", "1.2.3.1", size=16)
    ds = dcmread(path)
    ds.NumberOfFrames = 10
    ds.save_as(path)
    element = b"\x28\x00\x08\x00IS\x02\x0010"  # (0028,0008) IS, length 2, "10"
    data = path.read_bytes()
    assert data.count(element) == 1
    path.write_bytes(data.replace(element, b"\x28\x00\x08\x00IS\x04\x00inf "))
    with pytest.raises(ImageLoadError, match="NumberOfFrames"):
        load_image(path)

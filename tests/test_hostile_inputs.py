"""Hostile or unlucky files: decompression bombs within the pixel limit, FIFOs, non-UTF-8 names, torn logs."""
from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reid_core.data.cache import DONE, FAILED, TODO, prepare_images
from reid_core.data.dicom import DEFAULT_MAX_DECODED_BYTES
from reid_core.data.io import load_image
from reid_core.errors import ImageLoadError
from reid_core.prepare import prepare_workspace
from reid_core.workspace import Workspace

from fixtures_datasets import write_dicom
from test_cache import GradientSource, _manifest


def _png(path: Path, width: int, height: int, colour_type: int) -> Path:
    """A PNG whose header claims ``width``×``height`` (colour type 6 = RGBA, 0 = grey) over a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
                     + chunk(b"IEND", b""))
    return path


def test_rgba_bomb_within_the_pixel_limit_is_refused_before_decoding(tmp_path):
    """10,000 × 10,000 RGBA is 100 M pixels (allowed) but 381 MiB decoded: refused from the header alone."""
    path = _png(tmp_path / "bomb.png", 10_000, 10_000, 6)
    with pytest.raises(ImageLoadError, match=r"381 MiB .* limit is 256 MiB"):
        load_image(path)


def test_greyscale_of_the_same_size_is_within_budget(tmp_path):
    """The budget is per decoded byte: the grey 10,000² header passes it (and then fails as truncated data)."""
    assert 10_000 * 10_000 <= DEFAULT_MAX_DECODED_BYTES
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        load_image(_png(tmp_path / "grey.png", 10_000, 10_000, 0))


def test_dicom_over_budget_is_refused_before_decoding(tmp_path):
    from pydicom import dcmread

    path = write_dicom(tmp_path / "big.dcm", "P1", "1.2.3", "1.2.3.1", size=8)
    ds = dcmread(path)
    ds.Rows = ds.Columns = 9000  # 81 M pixels: under the pixel limit
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.save_as(path)
    with pytest.raises(ImageLoadError, match="MiB"):  # 9000² × 3 × 2 bytes = 463 MiB
        load_image(path)


def test_colour_jpeg_decodes_to_luminance(tmp_path):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    img = load_image(tmp_path / "c.jpg")
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    assert img.dtype == np.float32 and img.shape == (32, 48)
    assert abs(float(img.mean()) - expected) < 0.02


def _dicom_tree_with_odd_entries(root: Path) -> Path:
    for i in range(2):
        write_dicom(root / f"p{i}.dcm", f"P{i}", f"1.2.{i}", f"1.2.{i}.1", size=16)
    os.mkfifo(root / "pipe.dcm")  # a FIFO named like a DICOM
    os.mkfifo(root / "pipe")  # and one the scan would open to look for the preamble
    odd = os.fsencode(root) + b"/caf\xe9.dcm"  # latin-1 byte: not UTF-8
    with open(odd, "wb") as fh:
        fh.write((root / "p0.dcm").read_bytes())
    return root


def test_fifos_and_non_utf8_names_are_reported_and_prepare_finishes(tmp_path):
    root = _dicom_tree_with_odd_entries(tmp_path / "dcm")
    ws = Workspace(tmp_path / "ws")
    summary = prepare_workspace(ws, "dicom", root=root, size=16, workers=1, progress=False)
    assert summary.n_images == 2
    bad = pd.read_csv(ws.bad_files_path).set_index("path")["reason"]
    assert "not a regular file" in bad["pipe"] and "not a regular file" in bad["pipe.dcm"]
    assert "not valid UTF-8" in bad["caf\\xe9.dcm"]


def test_torn_last_line_of_the_error_log_is_tolerated(tmp_path):
    """A kill between the error-log write and the status flush leaves a torn line and TODO rows: resume."""
    m = _manifest(12)
    path = tmp_path / "images_32.npy"
    prepare_images(m, GradientSource(12, fail=(3, 7)), path, 32, workers=1, chunk_size=4, progress=False)
    log_path = path.with_suffix(".errors.jsonl")
    lines = log_path.read_text().splitlines()
    assert [json.loads(line)["row"] for line in lines] == [3, 7]
    log_path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # row 7's record torn mid-write
    status = np.load(path.with_suffix(".status.npy"), mmap_mode="r+")
    status[4:8] = TODO  # that chunk's status never reached the disk
    status.flush()
    del status
    res = prepare_images(m, GradientSource(12, fail=(3, 7)), path, 32, workers=1, chunk_size=4, progress=False)
    assert res.n_new == 4
    assert res.failures["path"].tolist() == ["f3.png", "f7.png"]
    assert res.failures["reason"].tolist() == ["synthetic failure"] * 2
    final = np.load(path.with_suffix(".status.npy"))
    assert final[3] == final[7] == FAILED and final[0] == DONE
    assert all(json.loads(line) for line in log_path.read_text().splitlines()[2:])  # appended lines whole


def test_failed_row_whose_log_line_was_lost_keeps_its_path(tmp_path):
    m = _manifest(8)
    path = tmp_path / "images_32.npy"
    prepare_images(m, GradientSource(8, fail=(5,)), path, 32, workers=1, progress=False)
    path.with_suffix(".errors.jsonl").write_text('{"row": 5, "pa')  # garbled
    res = prepare_images(m, GradientSource(8, fail=(5,)), path, 32, workers=1, progress=False)
    assert res.failures["path"].tolist() == ["f5.png"] and "lost" in res.failures["reason"].iloc[0]

"""Corrupt JPEGs are rejected (libjpeg warnings are errors) and land in bad_files.csv; sound ones still load."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reid_core.data.io import load_image
from reid_core.errors import ImageLoadError
from reid_core.prepare import prepare_workspace
from reid_core.workspace import Workspace

from fixtures_datasets import make_chexpert


def _texture(size: int = 128, seed: int = 0) -> np.ndarray:
    """A radiograph-like grey texture: smooth structure plus noise, so the scan data is dense."""
    yy, xx = np.mgrid[0:size, 0:size]
    noise = np.random.default_rng(seed).normal(0, 12, (size, size))
    return (np.sin(xx / 9) * 50 + np.cos(yy / 13) * 50 + 128 + noise).clip(0, 255).astype(np.uint8)


def _jpeg(pixels: np.ndarray, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def _scan_start(data: bytes) -> int:
    """Offset of the first entropy-coded byte (after the SOS header)."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")


def flipped_scan(data: bytes, at: float = 0.3, n: int = 8) -> bytes:
    """``n`` scan bytes a fraction ``at`` into the entropy-coded data XOR-ed (never into a 0xFF marker byte)."""
    out = bytearray(data)
    start = _scan_start(data)
    pos = start + int((len(data) - 2 - start) * at)
    for i in range(pos, pos + n):
        out[i] ^= 0x5A if out[i] ^ 0x5A != 0xFF else 0x55
    return bytes(out)


def enlarged_sof(data: bytes, factor: int = 2) -> bytes:
    """The baseline frame header (SOF0) claims ``factor`` times the image height the scan holds."""
    out = bytearray(data)
    sof = data.index(b"\xff\xc0")
    height = int.from_bytes(data[sof + 5:sof + 7], "big")
    out[sof + 5:sof + 7] = (height * factor).to_bytes(2, "big")
    return bytes(out)


def truncated_with_eoi(data: bytes) -> bytes:
    """Two thirds of the file and an end-of-image marker: PIL's own truncation check does not fire."""
    return data[: len(data) * 2 // 3] + b"\xff\xd9"


@pytest.mark.parametrize("corrupt", [flipped_scan, enlarged_sof, truncated_with_eoi],
                         ids=["flipped-scan-bytes", "enlarged-SOF", "truncated-with-EOI"])
def test_corrupt_jpeg_is_an_image_load_error(tmp_path, corrupt):
    good = _jpeg(_texture())
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(corrupt(good))
    with Image.open(bad) as im:  # the premise: Pillow alone decodes it without complaint
        im.load()
    with pytest.raises(ImageLoadError, match="corrupt JPEG"):
        load_image(bad)


def test_every_flip_position_that_libjpeg_notices_is_refused(tmp_path):
    """Flips along the scan: none may load as garbage silently unless its pixels are close to the original."""
    pixels = _texture(seed=3)
    good = _jpeg(pixels)
    reference = load_image(_write(tmp_path / "good.jpg", good))
    refused = 0
    for k, at in enumerate(np.linspace(0.05, 0.95, 10)):
        try:
            img = load_image(_write(tmp_path / f"f{k}.jpg", flipped_scan(good, at=float(at))))
        except ImageLoadError as exc:
            assert "corrupt JPEG" in exc.reason
            refused += 1
        else:  # undetectable flips exist (valid Huffman codes); they must then be near the original
            assert np.abs(img - reference).mean() < 0.05, f"flip at {at:.2f} loaded as garbage"
    assert refused >= 8


@pytest.mark.parametrize("kind", ["grey", "colour", "progressive", "cmyk"])
def test_sound_jpegs_still_load(tmp_path, kind):
    pixels = _texture(96, seed=1)
    if kind == "colour":
        data = _jpeg(np.stack([pixels, pixels // 2, 255 - pixels], axis=-1))
    elif kind == "progressive":
        data = _jpeg(pixels, progressive=True)
    elif kind == "cmyk":
        buf = io.BytesIO()
        Image.fromarray(np.stack([pixels] * 3, axis=-1)).convert("CMYK").save(buf, "JPEG", quality=90)
        data = buf.getvalue()
    else:
        data = _jpeg(pixels)
    img = load_image(_write(tmp_path / f"{kind}.jpg", data))
    assert img.shape == (96, 96) and np.isfinite(img).all() and img.std() > 0.05


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_corrupt_jpegs_land_in_bad_files_and_prepare_finishes(tmp_path):
    base = make_chexpert(tmp_path / "src")
    frontal = sorted(p for p in base.rglob("view1_frontal.jpg"))
    for i, p in enumerate(frontal):  # real scan data instead of the 8x8 flat fixtures
        p.write_bytes(_jpeg(_texture(seed=i)))
    broken = {frontal[0]: flipped_scan, frontal[1]: enlarged_sof}
    for p, corrupt in broken.items():
        p.write_bytes(corrupt(p.read_bytes()))
        with pytest.raises(ImageLoadError):
            load_image(p)
    ws = Workspace(tmp_path / "ws")
    summary = prepare_workspace(ws, "chexpert", root=base, size=32, workers=1, progress=False)
    bad = pd.read_csv(ws.bad_files_path)
    rel = {str(p.relative_to(base)) for p in broken}
    decode_failures = bad[bad["stage"] == "decode"]
    assert {Path(x).as_posix().split(f"{base.name}/")[-1] for x in decode_failures["path"]} == rel
    assert decode_failures["reason"].str.contains("corrupt JPEG").all()
    assert summary.n_images == len(frontal) - len(broken)


def test_corrupt_baseline_jpeg_inside_a_dicom_is_rejected(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    source = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False)
    if source is None:
        pytest.skip("pydicom test file not installed")
    assert load_image(source).ndim == 2  # sound
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(flipped_scan(Path(source).read_bytes(), at=0.5, n=16))
    _ = pydicom.dcmread(bad).pixel_array  # the premise: pydicom's decoder returns pixels without complaint
    with pytest.raises(ImageLoadError, match="corrupt JPEG"):
        load_image(bad)

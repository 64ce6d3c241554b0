"""load_image over every file of pydicom's test corpus (+ pydicom-data): real files nobody here wrote.

Each file either loads as a finite float32 2-D array in [0, 1] or raises
ImageLoadError; nothing else.  Then specific files check the pipeline: lossless
codecs equal their uncompressed twins, lossy ones stay close, the MONOCHROME1
chest CR shows air dark and mediastinum bright, VOI / Modality LUT sequences
and windows match pydicom's own implementations.  Files are listed from disk,
never through ``get_testdata_files`` (which tries to download what is missing).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from reid_core.data import dicom as dicom_mod
from reid_core.data.dicom import read_dicom_header
from reid_core.data.io import load_image, load_image_with_meta
from reid_core.errors import ImageLoadError
from dicom_corpus import corpus_files  # tests/ is on sys.path under pytest

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about many odd corpus files


CORPUS = corpus_files()


def corpus_id(path: Path) -> str:
    return path.relative_to(path.parents[2]).as_posix() if "dicomdirtests" in path.parts else path.name


def corpus_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.skip(f"{name} not installed (pydicom-data missing?)")
    return Path(found)


@functools.lru_cache(maxsize=None)
def outcome(path: Path) -> tuple[str, object]:
    """('ok', image shape) after checking the contract, or ('error', reason).

    Anything other than ImageLoadError propagates and fails the calling test.
    """
    try:
        img, meta = load_image_with_meta(path)
    except ImageLoadError as exc:
        assert exc.path == str(path) and exc.reason
        return "error", exc.reason
    check(img)
    assert (meta.rows, meta.cols) == img.shape
    return "ok", img.shape


@functools.lru_cache(maxsize=None)
def load(name: str, frame: int | None = None) -> np.ndarray:
    return load_image(corpus_file(name), frame=frame)


def check(img: np.ndarray) -> None:
    assert isinstance(img, np.ndarray) and img.dtype == np.float32 and img.ndim == 2 and img.size
    assert np.isfinite(img).all() and 0.0 <= img.min() and img.max() <= 1.0


def raw_pixels(name: str) -> np.ndarray:
    return pydicom.dcmread(corpus_file(name)).pixel_array.astype(np.float64)


def minmax(a: np.ndarray) -> np.ndarray:
    return (a - a.min()) / (a.max() - a.min())


# --------------------------------------------------------------------------- every file
def test_corpus_is_complete() -> None:
    names = {p.name for p in CORPUS}
    assert len(CORPUS) >= 150, len(CORPUS)
    assert {"RG1_UNCR.dcm", "RG1_J2KR.dcm", "vlut_04.dcm", "mlut_18.dcm", "CT_small.dcm", "DICOMDIR"} <= names


@pytest.mark.parametrize("path", CORPUS, ids=corpus_id)
def test_corpus_file_loads_or_raises_image_load_error(path: Path) -> None:
    status, result = outcome(path)
    if status == "error" and str(result).startswith("multi-frame"):  # then its first and last frames must behave too
        n_frames = read_dicom_header(path).n_frames
        for frame in sorted({0, n_frames - 1}):
            try:
                check(load_image(path, frame=frame))
            except ImageLoadError as exc:
                assert exc.reason
    try:  # the header-only reader obeys the same rule, and agrees with the loader
        meta = read_dicom_header(path)
    except ImageLoadError as exc:
        assert exc.reason and status == "error"
    else:
        if status == "ok":
            assert (meta.rows, meta.cols) == result


def test_corpus_census() -> None:
    """Most of the corpus loads; the known-broken and non-image files are refused."""
    results = {p: outcome(p) for p in CORPUS}
    loaded = {p.name for p, (status, _) in results.items() if status == "ok"}
    assert len(loaded) >= 140, len(loaded)
    reasons = {p.name: r for p, (status, r) in results.items() if status == "error"}
    for name, reason in {
        "MR_truncated.dcm": "pixel data undecodable",  # pixel data shorter than Rows*Columns
        "emri_small_jpeg_2k_lossless_too_short.dcm": "truncated",
        "badVR.dcm": "NumberOfFrames",  # IS value '1A'
        "test-SR.dcm": "no pixel data",
        "waveform_ecg.dcm": "no pixel data",
        "DICOMDIR": "no pixel data",
        "rtplan.dcm": "no pixel data",
        "README.txt": "unsupported file type",
        "emri_small.dcm": "multi-frame",
    }.items():
        assert reason in reasons[name], (name, reasons.get(name))
    assert all(not r.startswith("multi-frame") or "pass frame" in r for r in reasons.values())


# --------------------------------------------------------------------------- codecs vs twins
LOSSLESS_TWINS = [  # (compressed, uncompressed twin, expected transfer syntax)
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm", "1.2.840.10008.1.2.4.90"),  # JPEG 2000 lossless, MONOCHROME1 CR
    ("MR_small_jp2klossless.dcm", "MR_small.dcm", "1.2.840.10008.1.2.4.90"),
    ("US1_J2KR.dcm", "US1_UNCR.dcm", "1.2.840.10008.1.2.4.90"),  # YBR_RCT colour
    ("JPEG2000.dcm", "JPEG2000_UNC.dcm", "1.2.840.10008.1.2.4.91"),
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm", "1.2.840.10008.1.2.4.70"),  # JPEG lossless SV1
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", "1.2.840.10008.1.2.4.80"),  # JPEG-LS lossless
    ("MR_small_RLE.dcm", "MR_small.dcm", "1.2.840.10008.1.2.5"),
    ("SC_rgb_rle.dcm", "SC_rgb.dcm", "1.2.840.10008.1.2.5"),
    ("MR_small_bigendian.dcm", "MR_small.dcm", "1.2.840.10008.1.2.2"),
    ("MR_small_implicit.dcm", "MR_small.dcm", "1.2.840.10008.1.2"),
    ("SC_rgb_16bit.dcm", "SC_rgb.dcm", "1.2.840.10008.1.2.1"),
]
LOSSY_TWINS = [  # (compressed, reference, transfer syntax, max |diff|, mean |diff|)
    ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb.dcm", "1.2.840.10008.1.2.4.50", 0.02, 0.005),  # JPEG baseline
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb.dcm", "1.2.840.10008.1.2.4.50", 0.05, 0.005),  # YBR_FULL_422
    ("JPGExtended.dcm", "JPEG-LL.dcm", "1.2.840.10008.1.2.4.51", 0.25, 0.02),  # 12-bit JPEG extended
    ("SC_rgb_jls_lossy_line.dcm", "SC_rgb.dcm", "1.2.840.10008.1.2.4.81", 0.02, 0.005),  # JPEG-LS near-lossless
    ("RG1_J2KI.dcm", "RG1_UNCR.dcm", "1.2.840.10008.1.2.4.91", 0.03, 0.005),  # JPEG 2000 lossy
]


@pytest.mark.parametrize("compressed, twin, syntax", LOSSLESS_TWINS, ids=[t[0] for t in LOSSLESS_TWINS])
def test_lossless_equals_uncompressed_twin(compressed: str, twin: str, syntax: str) -> None:
    assert read_dicom_header(corpus_file(compressed)).transfer_syntax == syntax
    a, b = load(compressed), load(twin)
    check(a)
    assert a.std() > 0.05  # a real picture, not a blank
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("compressed, ref, syntax, max_diff, mean_diff", LOSSY_TWINS,
                         ids=[t[0] for t in LOSSY_TWINS])
def test_lossy_close_to_reference(compressed: str, ref: str, syntax: str, max_diff: float,
                                  mean_diff: float) -> None:
    assert read_dicom_header(corpus_file(compressed)).transfer_syntax == syntax
    a, b = load(compressed), load(ref)
    check(a)
    diff = np.abs(a - b)
    assert diff.max() < max_diff and diff.mean() < mean_diff
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98


def test_multiframe_codecs_select_the_same_frame() -> None:
    for name in ("emri_small_RLE.dcm", "emri_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_2k_lossless.dcm",
                 "emri_small_big_endian.dcm"):
        np.testing.assert_array_equal(load(name, frame=5), load("emri_small.dcm", frame=5))
    assert not np.array_equal(load("emri_small.dcm", frame=4), load("emri_small.dcm", frame=5))


def test_deflate_matches_pydicom_pixels() -> None:
    assert read_dicom_header(corpus_file("image_dfl.dcm")).transfer_syntax == "1.2.840.10008.1.2.1.99"
    img = load("image_dfl.dcm")
    assert img.std() > 0.05
    np.testing.assert_allclose(img, minmax(raw_pixels("image_dfl.dcm")), atol=1e-6)  # no VOI: min-max


def test_palette_big_and_little_endian_agree() -> None:
    a, b = load("OBXXXX1A.dcm"), load("OBXXXX1A_expb.dcm")  # the 16-bit LUT words hold 8-bit values
    check(a)
    assert a.mean() > 0.02 and np.abs(a - b).max() < 0.01
    np.testing.assert_array_equal(load("OBXXXX1A_rle.dcm"), a)


# --------------------------------------------------------------------------- MONOCHROME1 chest CR
def test_rg1_monochrome1_chest_air_dark_mediastinum_bright() -> None:
    ds = pydicom.dcmread(corpus_file("RG1_UNCR.dcm"))
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.Modality == "CR"
    raw, img = ds.pixel_array.astype(np.float64), load("RG1_UNCR.dcm")
    air = (slice(60, 160), slice(0, 80))  # top-left, between collimator edge and shoulder (viewed)
    mediastinum = (slice(700, 1300), slice(880, 960))  # centre column, over the spine and heart
    assert raw[air].mean() > raw[mediastinum].mean()  # stored: direct exposure is the high value ...
    assert img[air].mean() < 0.35 and img[mediastinum].mean() > 0.8  # ... displayed: air dark, bone bright
    # window 15000/30000, LINEAR, then inverted; also equal to pydicom's windowing rescaled to [0, 1]
    expected = 1.0 - np.clip((raw - 14999.5) / 29999 + 0.5, 0, 1)
    np.testing.assert_allclose(img, expected, atol=1e-6)
    pyd = apply_voi_lut(raw, ds)  # pydicom outputs over the Bits Stored range 0..2**15-1
    np.testing.assert_allclose(img, 1.0 - pyd / (2**15 - 1), atol=1e-5)


# --------------------------------------------------------------------------- LUT sequences
def test_vlut_04_voi_lut_sequence() -> None:
    path = corpus_file("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    assert "VOILUTSequence" in ds and "WindowCenter" not in ds
    expected = apply_voi_lut(ds.pixel_array, ds).astype(np.float64) / 65535  # 16-bit LUT output
    np.testing.assert_allclose(load("vlut_04.dcm"), expected, atol=1e-6)
    # the corpus LUT is linear; a non-linear one must be followed, and preferred over a window
    item = ds.VOILUTSequence[0]
    gamma = np.round(65535 * (np.arange(256) / 255) ** 2.2).astype(np.uint16)
    item.LUTData = gamma.tolist()
    ds.WindowCenter, ds.WindowWidth = 10, 5
    img = dicom_mod.dicom_to_array(ds, path)
    np.testing.assert_allclose(img, gamma[ds.pixel_array] / 65535, atol=1e-6)
    assert np.abs(img - minmax(ds.pixel_array.astype(float))).max() > 0.2
    item.LUTData = (65535 - gamma).tolist()  # a decreasing LUT inverts the picture
    np.testing.assert_allclose(dicom_mod.dicom_to_array(ds, path), 1 - img, atol=1e-6)


def test_mlut_18_modality_lut_sequence() -> None:
    path = corpus_file("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    assert "ModalityLUTSequence" in ds and ds.PixelRepresentation == 1
    expected = minmax(apply_modality_lut(ds.pixel_array, ds).astype(np.float64))  # no VOI: min-max
    np.testing.assert_allclose(load("mlut_18.dcm"), expected, atol=1e-6)
    item = ds.ModalityLUTSequence[0]
    n_entries, first, _ = item.LUTDescriptor
    curve = np.round(65535 * (np.arange(n_entries) / (n_entries - 1)) ** 3).astype(np.uint16)
    item.LUTData = curve.tolist()
    img = dicom_mod.dicom_to_array(ds, path)
    np.testing.assert_allclose(img, minmax(apply_modality_lut(ds.pixel_array, ds).astype(np.float64)),
                               atol=1e-6)
    assert np.abs(img - minmax(ds.pixel_array.astype(float))).max() > 0.2


# --------------------------------------------------------------------------- broken files
@pytest.mark.parametrize("name", ["MR_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm",
                                  "badVR.dcm", "test-SR.dcm", "rtplan_truncated.dcm", "no_meta.dcm"])
def test_known_broken_or_non_image_files_raise(name: str) -> None:
    with pytest.raises(ImageLoadError):
        load_image(corpus_file(name), frame=0)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm",
                                  "JPEG-LL.dcm", "RG1_J2KR.dcm"])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.97])
def test_truncated_copies_raise(tmp_path: Path, name: str, keep: float) -> None:
    data = corpus_file(name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageLoadError, match="truncated|undecodable|no pixel data"):
        load_image(cut)

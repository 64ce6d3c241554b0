"""reid_core.data.io / dicom on files written here from known arrays (PNG, JPG, TIFF, DICOM)."""
from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from reid_core.data import dicom as dicom_mod
from reid_core.data.dicom import parse_age, read_dicom_header
from reid_core.data.io import DEFAULT_MAX_PIXELS, ImageMeta, load_image, load_image_with_meta
from reid_core.errors import ImageLoadError

LUMA = np.array([0.299, 0.587, 0.114])
RNG = np.random.default_rng(0)


def assert_contract(img: np.ndarray) -> None:
    assert img.dtype == np.float32 and img.ndim == 2 and img.size > 0
    assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12,
                **attrs: object) -> Path:
    """Uncompressed DICOM from uint16 ``pixels`` (rows, cols) or (frames, rows, cols)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def gradient(rows: int = 16, cols: int = 20, top: int = 4000) -> np.ndarray:
    return np.linspace(100, top, rows * cols).reshape(rows, cols).astype(np.uint16)


# --------------------------------------------------------------------------- PNG / JPG / TIFF
def test_png_8bit_roundtrip_exact(tmp_path: Path) -> None:
    arr = RNG.integers(0, 256, (23, 31), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    img, meta = load_image_with_meta(tmp_path / "a.png")
    assert_contract(img)
    np.testing.assert_array_equal(img, (arr / 255.0).astype(np.float32))
    assert (meta.rows, meta.cols, meta.n_frames) == (23, 31, 1)
    assert meta.patient_id is None and meta.photometric is None and meta.transfer_syntax is None


def test_png_16bit_roundtrip_exact(tmp_path: Path) -> None:
    arr = RNG.integers(0, 65536, (17, 9), dtype=np.uint16)
    arr[0, 0], arr[0, 1] = 0, 65535
    Image.fromarray(arr).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode == "I;16"
    img = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(img, (arr / 65535.0).astype(np.float32))
    # 12-bit data in a 16-bit PNG is divided by the type's range, not stretched (documented)
    Image.fromarray((arr >> 4).astype(np.uint16)).save(tmp_path / "b.png")
    assert load_image(tmp_path / "b.png").max() <= 4095 / 65535 + 1e-7


def test_jpg_close_to_source(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:64, 0:48]
    arr = (40 + 3 * yy + xx).astype(np.uint8)  # smooth: JPEG error stays tiny
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    img = load_image(tmp_path / "a.jpg")
    assert_contract(img)
    assert img.shape == (64, 48)
    assert np.abs(img - arr / 255.0).max() < 0.03


def test_rgb_rgba_la_to_luminance(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (12, 14, 3), dtype=np.uint8)
    expected = ((rgb @ LUMA) / 255.0).astype(np.float32)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(load_image(tmp_path / "rgb.png"), expected, atol=1e-6)
    alpha = RNG.integers(0, 256, (12, 14, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=2)).save(tmp_path / "rgba.png")
    np.testing.assert_allclose(load_image(tmp_path / "rgba.png"), expected, atol=1e-6)  # alpha ignored
    gray = rgb[..., 0]
    Image.fromarray(np.stack([gray, alpha[..., 0]], axis=2), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_image(tmp_path / "la.png"), (gray / 255.0).astype(np.float32))
    # a colour image is not reduced to one channel
    assert not np.allclose(load_image(tmp_path / "rgb.png"), rgb[..., 1] / 255.0, atol=0.01)


def test_palette_png(tmp_path: Path) -> None:
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [10, 20, 250]], dtype=np.uint8)
    index = RNG.integers(0, 4, (9, 11), dtype=np.uint8)
    im = Image.fromarray(index, mode="P")
    im.putpalette(colours.ravel().tolist())
    im.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    expected = ((colours[index] @ LUMA) / 255.0).astype(np.float32)
    np.testing.assert_allclose(load_image(tmp_path / "p.png"), expected, atol=1e-6)


def test_32bit_int_and_float_tiff(tmp_path: Path) -> None:
    arr = RNG.integers(0, 65536, (7, 8)).astype(np.int32)
    Image.fromarray(arr, mode="I").save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    np.testing.assert_allclose(load_image(tmp_path / "i.tif"), arr / 65535.0, atol=1e-7)
    flt = RNG.normal(size=(7, 8)).astype(np.float32)
    Image.fromarray(flt, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_allclose(load_image(tmp_path / "f.tif"), (flt - flt.min()) / np.ptp(flt), atol=1e-6)


def test_multiframe_tiff_needs_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((6, 7), 50 * i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageLoadError, match="multi-frame"):
        load_image(tmp_path / "m.tif")
    img, meta = load_image_with_meta(tmp_path / "m.tif", frame=2)
    assert meta.n_frames == 3 and np.allclose(img, 100 / 255)
    with pytest.raises(ImageLoadError, match="out of range"):
        load_image(tmp_path / "m.tif", frame=3)


def test_content_wins_over_suffix(tmp_path: Path) -> None:
    arr = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png", format="PNG")
    (tmp_path / "x.png").rename(tmp_path / "really_png.dcm")
    np.testing.assert_array_equal(load_image(tmp_path / "really_png.dcm"), (arr / 255.0).astype(np.float32))
    write_dicom(tmp_path / "d.dcm", gradient()).rename(tmp_path / "dicom_named.png")
    assert read_dicom_header(tmp_path / "dicom_named.png").rows == 16  # DICM preamble wins
    assert load_image(tmp_path / "dicom_named.png").shape == (16, 20)


# --------------------------------------------------------------------------- failures
def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` but holding only 10 bytes of pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("name, content, reason", [
    ("empty.png", b"", "empty file"),
    ("empty.dcm", b"", "empty file"),
    ("text.png", b"this is not an image\n" * 20, "not a readable image"),
    ("text.jpg", b"hello", "not a readable image"),
    ("notes.txt", b"hello", "unsupported file type"),
    ("noext", b"\x00" * 300, "unsupported file type"),
    ("text.dcm", b"just some text, not DICOM at all\n" * 10, "DICOM|pixel data"),
])
def test_bad_files_raise(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageLoadError, match=reason) as err:
        load_image(tmp_path / name)
    assert err.value.path == str(tmp_path / name) and err.value.reason


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="file not found"):
        read_dicom_header(tmp_path / "nope.dcm")
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(tmp_path)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_png(tmp_path: Path, keep: float) -> None:
    arr = RNG.integers(0, 256, (64, 64), dtype=np.uint8)  # noise: compresses badly, many bytes
    Image.fromarray(arr).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageLoadError, match="truncated|not a readable"):
        load_image(tmp_path / "cut.png")


def test_too_many_pixels_rejected_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # header-only PNG: decoding would fail differently, so the size check must come first
    (tmp_path / "big.png").write_bytes(png_header_only(5000, 5000))
    with pytest.raises(ImageLoadError, match="too many pixels"):
        load_image(tmp_path / "big.png", max_pixels=1_000_000)
    (tmp_path / "bomb.png").write_bytes(png_header_only(30000, 30000))  # past PIL's own bomb limit
    with pytest.raises(ImageLoadError, match="too many pixels"):
        load_image(tmp_path / "bomb.png")
    path = write_dicom(tmp_path / "a.dcm", gradient(16, 20))
    monkeypatch.setattr(dicom_mod, "_decode", lambda *a: pytest.fail("decoded before size check"))
    with pytest.raises(ImageLoadError, match="too many pixels"):
        load_image(path, max_pixels=16 * 20 - 1)
    assert DEFAULT_MAX_PIXELS >= 50_000_000


def test_zero_sized_dicom(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "z.dcm", np.zeros((0, 5), np.uint16))
    with pytest.raises(ImageLoadError, match="zero-sized"):
        load_image(path)


def test_non_finite_float_dicom(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "f.dcm", np.zeros((2, 2), np.uint16))
    ds = pydicom.dcmread(path)
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = 32
    ds.FloatPixelData = np.full((2, 2), np.nan, "<f4").tobytes()
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageLoadError, match="no finite"):
        load_image(path)
    ds.FloatPixelData = np.array([[0, 1], [np.inf, 3]], "<f4").tobytes()
    ds.save_as(path, enforce_file_format=True)
    np.testing.assert_allclose(load_image(path), [[0, 1 / 3], [0, 1]], atol=1e-6)  # inf -> 0


def test_unsupported_syntax_and_missing_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_dicom(tmp_path / "a.dcm", gradient())
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no pixel decoder in pydicom
    with pytest.raises(ImageLoadError, match="unsupported transfer syntax"):
        dicom_mod.dicom_to_array(ds, path)

    class NoPlugin:
        is_available, missing_dependencies = False, ["pylibjpeg - requires pylibjpeg-libjpeg"]

    monkeypatch.setattr(dicom_mod, "get_decoder", lambda uid: NoPlugin())
    with pytest.raises(ImageLoadError, match="no decoder installed.*pylibjpeg"):
        load_image(path)


def test_bad_vr_raises_only_where_it_matters(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "a.dcm", gradient(), PatientName="DOE^JOHN", PatientID="P1")
    data = path.read_bytes()
    rows_at = data.index(b"\x28\x00\x10\x00US")  # (0028,0010) Rows, explicit VR LE
    (tmp_path / "bad_rows.dcm").write_bytes(data[: rows_at + 4] + b"ZZ" + data[rows_at + 6:])
    with pytest.raises(ImageLoadError, match="Rows") as err:
        load_image(tmp_path / "bad_rows.dcm")
    assert "DOE" not in str(err.value)
    with pytest.raises(ImageLoadError):
        read_dicom_header(tmp_path / "bad_rows.dcm")
    name_at = data.index(b"\x10\x00\x10\x00PN")  # an unknown VR on an element we never read
    (tmp_path / "bad_name.dcm").write_bytes(data[: name_at + 4] + b"ZZ" + data[name_at + 6:])
    img, meta = load_image_with_meta(tmp_path / "bad_name.dcm")
    np.testing.assert_array_equal(img, load_image(path))
    assert meta.patient_id == "P1"


# --------------------------------------------------------------------------- DICOM pixels
def test_monochrome2_minmax_without_window(tmp_path: Path) -> None:
    px = gradient()
    img = load_image(write_dicom(tmp_path / "a.dcm", px))
    assert_contract(img)
    np.testing.assert_allclose(img, (px - px.min()) / (px.max() - px.min()), atol=1e-6)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    px = gradient()
    mono2 = load_image(write_dicom(tmp_path / "m2.dcm", px))
    mono1 = load_image(write_dicom(tmp_path / "m1.dcm", px, photometric="MONOCHROME1"))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert mono1[0, 0] == pytest.approx(1.0) and mono1[-1, -1] == pytest.approx(0.0)  # high value = dark
    windowed = load_image(write_dicom(tmp_path / "w1.dcm", px, photometric="MONOCHROME1",
                                      WindowCenter=2000, WindowWidth=1001))
    assert windowed[0, 0] == 1.0 and windowed[-1, -1] == 0.0


def test_window_functions_and_rescale(tmp_path: Path) -> None:
    px = np.array([[0, 75, 100, 125, 200]], np.uint16)
    common = dict(RescaleSlope=2, RescaleIntercept=-100)  # modality values: -100, 50, 100, 150, 300
    lin = load_image(write_dicom(tmp_path / "l.dcm", px, WindowCenter=[100, 7], WindowWidth=[201, 3], **common))
    # LINEAR (PS3.3 C.11.2.1.2.1), first of the multi-valued pairs: ((x - (c - 0.5)) / (w - 1) + 0.5), clipped
    np.testing.assert_allclose(lin[0], [0, 0.2525, 0.5025, 0.7525, 1], atol=1e-6)
    exact = load_image(write_dicom(tmp_path / "e.dcm", px, WindowCenter=100, WindowWidth=100,
                                   VOILUTFunction="LINEAR_EXACT", **common))
    np.testing.assert_allclose(exact[0], [0, 0.0, 0.5, 1.0, 1], atol=1e-6)
    sig = load_image(write_dicom(tmp_path / "s.dcm", px, WindowCenter=100, WindowWidth=100,
                                 VOILUTFunction="SIGMOID", **common))
    np.testing.assert_allclose(sig[0], 1 / (1 + np.exp(-4 * (np.array([-100, 50, 100, 150, 300]) - 100) / 100)),
                               atol=1e-6)


def test_unusable_window_falls_back_to_minmax(tmp_path: Path) -> None:
    px = gradient()
    expected = (px - px.min()) / (px.max() - px.min())
    for name, attrs in [("zero.dcm", dict(WindowCenter=100, WindowWidth=0)),
                        ("outside.dcm", dict(WindowCenter=60000, WindowWidth=10))]:  # all pixels -> 0
        np.testing.assert_allclose(load_image(write_dicom(tmp_path / name, px, **attrs)), expected, atol=1e-6)


def test_multiframe_dicom(tmp_path: Path) -> None:
    frames = np.stack([gradient(top=3400) + 300 * i for i in range(3)])
    frames[1, 0, 0] = 4095  # frame 1 differs in shape of its histogram
    path = write_dicom(tmp_path / "mf.dcm", frames, WindowCenter=2000, WindowWidth=4001)
    with pytest.raises(ImageLoadError, match="multi-frame image \\(3 frames\\)"):
        load_image(path)
    for i in range(3):
        img, meta = load_image_with_meta(path, frame=i)
        expected = np.clip((frames[i] - 1999.5) / 4000 + 0.5, 0, 1)
        np.testing.assert_allclose(img, expected, atol=1e-6)
        assert meta.n_frames == 3
    for bad in (3, -1):
        with pytest.raises(ImageLoadError, match="out of range"):
            load_image(path, frame=bad)
    assert load_image(write_dicom(tmp_path / "one.dcm", gradient()), frame=0).shape == (16, 20)


def test_dicom_without_preamble_and_file_meta(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "a.dcm", gradient(), PatientID="X")
    ds = pydicom.dcmread(path)
    del ds.file_meta
    ds.preamble = None
    pydicom.dcmwrite(tmp_path / "raw.dcm", ds, implicit_vr=True, little_endian=True)
    assert (tmp_path / "raw.dcm").read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(load_image(tmp_path / "raw.dcm"), load_image(path))
    (tmp_path / "raw.dcm").rename(tmp_path / "raw.bin")  # without preamble only a .dcm name says DICOM
    with pytest.raises(ImageLoadError, match="unsupported file type"):
        load_image(tmp_path / "raw.bin")


def test_truncated_dicom_pixel_data(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "a.dcm", gradient(64, 64))
    data = path.read_bytes()
    for keep in (0.5, 0.9, len(data) - 2):
        cut = tmp_path / f"cut_{keep}.dcm"
        cut.write_bytes(data[: int(keep if keep > 1 else len(data) * keep)])
        with pytest.raises(ImageLoadError, match="undecodable|truncated|no pixel data"):
            load_image(cut)
    (tmp_path / "head.dcm").write_bytes(data[:150])
    with pytest.raises(ImageLoadError):
        load_image(tmp_path / "head.dcm")


# --------------------------------------------------------------------------- metadata and PHI
@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")  # the lower-case 'pa ' below
def test_metadata_fields(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "m.dcm", gradient(), photometric="MONOCHROME1", PatientID="PID-7", StudyDate="20190304",
        StudyTime="101530", ViewPosition="pa ", PatientSex="F", PatientAge="045Y", PatientName="DOE^JOHN",
        PatientBirthDate="19700101", StudyInstanceUID="1.2.3", SeriesInstanceUID="1.2.3.4")
    img, meta = load_image_with_meta(path)
    assert isinstance(meta, ImageMeta)
    assert (meta.patient_id, meta.study_date, meta.study_time) == ("PID-7", "20190304", "101530")
    assert (meta.view_position, meta.photometric, meta.patient_sex) == ("PA", "MONOCHROME1", "F")
    assert meta.patient_age == 45.0 and meta.modality == "DX"
    assert (meta.rows, meta.cols, meta.n_frames) == (16, 20, 1) == (*img.shape, 1)
    assert meta.transfer_syntax == ExplicitVRLittleEndian
    assert (meta.study_instance_uid, meta.series_instance_uid) == ("1.2.3", "1.2.3.4")
    assert meta.sop_instance_uid == pydicom.dcmread(path).SOPInstanceUID
    assert read_dicom_header(path) == meta
    for text in (repr(meta), str(vars(meta))):
        assert "DOE" not in text and "JOHN" not in text and "1970" not in text
    assert not {"patient_name", "birth_date", "patient_birth_date"} & set(vars(meta))
    with pytest.raises(AttributeError):
        meta.patient_id = "other"  # frozen


@pytest.mark.parametrize("value, years", [
    ("045Y", 45.0), ("006M", 0.5), ("052W", 52 * 7 / 365.25), ("010D", 10 / 365.25), ("45", None),
    ("", None), (None, None), ("0X5Y", None), ("Y", None),
])
def test_parse_age(value: str | None, years: float | None) -> None:
    assert parse_age(value) == (pytest.approx(years) if years is not None else None)


def test_header_of_non_dicom_and_non_image(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ImageLoadError, match="not a DICOM"):
        read_dicom_header(tmp_path / "a.png")
    path = write_dicom(tmp_path / "sr.dcm", gradient())
    ds = pydicom.dcmread(path)
    del ds.PixelData, ds.Rows, ds.Columns
    ds.Modality = "SR"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageLoadError, match="not an image"):
        read_dicom_header(path)
    with pytest.raises(ImageLoadError, match="no pixel data"):
        load_image(path)


def test_patient_name_never_in_errors_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="reid_core")
    failures = []
    path = write_dicom(tmp_path / "a.dcm", gradient(64, 64), PatientName="DOE^JOHN", PatientBirthDate="19700101")
    data = path.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 1000])  # truncated pixel data
    (tmp_path / "head.dcm").write_bytes(data[: data.index(b"DOE^JOHN") + 4])  # cut inside the name
    name_at = data.index(b"\x10\x00\x10\x00PN")
    (tmp_path / "vr.dcm").write_bytes(data[: name_at + 4] + b"ZZ" + data[name_at + 6:])
    for name in ("cut.dcm", "head.dcm"):
        with pytest.raises(ImageLoadError) as err:
            load_image(tmp_path / name)
        failures.append(err.value)
    load_image(tmp_path / "vr.dcm")
    for kwargs in ({"frame": 5}, {"max_pixels": 10}):
        with pytest.raises(ImageLoadError) as err:
            load_image(path, **kwargs)
        failures.append(err.value)
    for exc in failures:
        for text in (str(exc), exc.reason, repr(exc)):
            assert "DOE" not in text and "JOHN" not in text and "19700101" not in text
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("reid_core")]
    assert not any("DOE" in m or "JOHN" in m for m in ours)

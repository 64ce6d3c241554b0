"""DICOM files to display-ready images: header metadata and the pixel pipeline.

Pipeline (DICOM PS3.3 C.11): stored values -> Modality LUT (Rescale Slope /
Intercept or Modality LUT Sequence) -> VOI (VOI LUT Sequence, else the first
Window Center / Width with its VOI LUT Function) -> [0, 1] -> inverted for
MONOCHROME1, so air is dark and bone bright whatever the source convention.
Without a usable VOI the modality values are min-max scaled over the range the
pixels actually span (Bits Stored is often overstated, e.g. 16 for 12-bit data,
which would give near-black images).  Enhanced multi-frame files take rescale
and window from their functional groups.  Colour (RGB, YBR_*, PALETTE COLOR)
becomes luminance.  Presentation LUT Shape is ignored (for DX, INVERSE merely
restates MONOCHROME1).  Patient name, birth date and other PHI are never read
into results, logs or error messages; parser messages (which can quote element
values) are reduced to their exception type.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, as_pixel_options, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from reid_core.data.jpeg import check_jpeg
from reid_core.errors import INTERRUPTS, ImageLoadError

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest rows*cols of one frame accepted by default (10,000 x 10,000)."""
DEFAULT_MAX_DECODED_BYTES = 256 * 2**20
"""Largest decoded size of one frame accepted by default: rows × cols × channels × bytes per sample
(256 MiB: a 10,000 × 10,000 16-bit greyscale frame fits; the same size in RGBA does not). Checked from the
header before any decoding, so with the float32 result and the conversions an image costs at most ~1 GB."""
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as PIL's "L" conversion
_AGE_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


@dataclass(frozen=True, kw_only=True)
class ImageMeta:
    """Non-identifying metadata of one image; PNG/JPG fill only the geometry."""

    rows: int
    cols: int
    n_frames: int = 1
    patient_id: str | None = None
    study_date: str | None = None  # YYYYMMDD
    study_time: str | None = None
    view_position: str | None = None
    photometric: str | None = None
    patient_sex: str | None = None
    patient_age: float | None = None  # years
    modality: str | None = None
    transfer_syntax: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None


def has_dicom_preamble(head: bytes) -> bool:
    """True when a file's first 132 bytes end in the 'DICM' magic."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def read_dataset(path: str | Path, *, stop_before_pixels: bool = False) -> Dataset:
    """Parse a DICOM file: one with the 'DICM' preamble, or any file named *.dcm / *.dicom."""
    p = Path(path)
    if not p.is_file():
        raise ImageLoadError(p, "file not found")
    with p.open("rb") as fh:
        head = fh.read(132)
    if not head:
        raise ImageLoadError(p, "empty file")
    if not has_dicom_preamble(head) and p.suffix.lower() not in DICOM_SUFFIXES:
        raise ImageLoadError(p, "not a DICOM file (no 'DICM' preamble)")
    try:
        ds = pydicom.dcmread(p, force=True, stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # noqa: BLE001 - any parser failure; its text may hold PHI
        raise ImageLoadError(p, f"corrupt or truncated DICOM ({type(exc).__name__})") from None
    if len(ds) == 0:  # pydicom gives up silently on e.g. truncated encapsulated pixel data
        raise ImageLoadError(p, "corrupt or truncated DICOM (no data elements)")
    return ds


def read_dicom_header(path: str | Path) -> ImageMeta:
    """Metadata without reading pixel data; non-images (SR, DICOMDIR ...) raise."""
    return dicom_meta(read_dataset(path, stop_before_pixels=True), path)


def dicom_meta(ds: Dataset, path: str | Path) -> ImageMeta:
    """Extract :class:`ImageMeta` from a parsed dataset (raises for non-images)."""
    rows, cols, n_frames = _geometry(ds, path)
    date = "".join(c for c in (_text(ds, "StudyDate") or "") if c.isdigit())
    return ImageMeta(
        rows=rows, cols=cols, n_frames=n_frames,
        patient_id=_text(ds, "PatientID"),
        study_date=date if len(date) == 8 else None,
        study_time=_text(ds, "StudyTime"),
        view_position=_text(ds, "ViewPosition", upper=True),
        photometric=_text(ds, "PhotometricInterpretation", upper=True),
        patient_sex=_text(ds, "PatientSex", upper=True),
        patient_age=parse_age(_text(ds, "PatientAge")),
        modality=_text(ds, "Modality", upper=True),
        transfer_syntax=_text(getattr(ds, "file_meta", None), "TransferSyntaxUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
    )


def parse_age(value: str | None) -> float | None:
    """DICOM Age String ('045Y', '006M', '010W', '003D') in years, else None."""
    if not value or value[-1].upper() not in _AGE_UNITS or not value[:-1].strip().isdigit():
        return None
    return int(value[:-1]) * _AGE_UNITS[value[-1].upper()]


def select_frame(path: str | Path, n_frames: int, frame: int | None) -> int:
    """Validate a frame request: multi-frame images need an explicit, in-range index."""
    if frame is None:
        if n_frames > 1:
            raise ImageLoadError(path, f"multi-frame image ({n_frames} frames): pass frame=")
        return 0
    if not 0 <= int(frame) < n_frames:
        raise ImageLoadError(path, f"frame {frame} out of range (image has {n_frames})")
    return int(frame)


def check_size(path: str | Path, rows: int, cols: int, max_pixels: int) -> None:
    """Reject zero-sized images and ones larger than ``max_pixels`` before decoding."""
    if rows <= 0 or cols <= 0:
        raise ImageLoadError(path, f"zero-sized image ({rows}x{cols})")
    if rows * cols > max_pixels:
        raise ImageLoadError(path, f"too many pixels ({rows}x{cols} > {max_pixels})")


def check_decoded_bytes(path: str | Path, rows: int, cols: int, channels: int, bytes_per_sample: int,
                        max_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> None:
    """Refuse, before decoding, a frame whose decoded pixels would exceed ``max_bytes``."""
    need = int(rows) * int(cols) * max(1, int(channels)) * max(1, int(bytes_per_sample))
    if need > max_bytes:
        raise ImageLoadError(path, f"decoded image would take {need / 2**20:.0f} MiB ({rows}x{cols}, {channels} "
                                   f"channel(s) of {bytes_per_sample} byte(s)); the limit is "
                                   f"{max_bytes / 2**20:.0f} MiB per image")


def dicom_to_array(
    ds: Dataset, path: str | Path, frame: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> np.ndarray:
    """Decode one frame of ``ds`` into a float32 2-D image in [0, 1], air dark (size-checked first)."""
    if not any(kw in ds for kw in _PIXEL_KEYWORDS):
        kind = _text(ds, "Modality", upper=True) or "unknown"
        raise ImageLoadError(path, f"no pixel data (non-image DICOM or truncated; modality {kind})")
    rows, cols, n_frames = _geometry(ds, path)
    check_size(path, rows, cols, max_pixels)
    samples = _int(ds, "SamplesPerPixel", path, 1) or 1
    if _text(ds, "PhotometricInterpretation", upper=True, path=path) == "PALETTE COLOR":
        samples = 3  # looked up into RGB before the luminance
    bits = _int(ds, "BitsAllocated", path, 16) or 16
    check_decoded_bytes(path, rows, cols, samples, -(-bits // 8), max_bytes)
    index = select_frame(path, n_frames, frame)
    raw = _decode(ds, path, index)
    photometric = _text(ds, "PhotometricInterpretation", upper=True, path=path) or "MONOCHROME2"
    try:
        if raw.ndim == 3 or photometric == "PALETTE COLOR":
            img = _colour_to_gray(raw, ds, photometric, path)
        else:
            img = _grayscale(raw.astype(np.float64), ds, index, path)
            if photometric == "MONOCHROME1":
                img = 1.0 - img
    except ImageLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed LUT / window / palette elements
        raise ImageLoadError(path, f"invalid LUT, window or palette ({type(exc).__name__})") from None
    return finalize(img, path)


def minmax_unit(values: np.ndarray, path: str | Path) -> np.ndarray:
    """Scale to [0, 1] over the finite values (non-finite become 0; constant -> 0)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        raise ImageLoadError(path, "no finite pixel values")
    if not finite.all():
        log.warning("%s: %d non-finite pixels set to 0", path, int((~finite).sum()))
    lo, hi = values[finite].min(), values[finite].max()
    if hi <= lo:
        log.warning("%s: constant image", path)
        return np.zeros(values.shape)
    return np.where(finite, (values - lo) / (hi - lo), 0.0)


def finalize(img: np.ndarray, path: str | Path) -> np.ndarray:
    """Enforce the contract: non-empty, finite, 2-D, float32, within [0, 1]."""
    img = np.ascontiguousarray(img, dtype=np.float32)
    if img.ndim != 2 or img.size == 0:
        raise ImageLoadError(path, f"not a non-empty 2-D image (shape {img.shape})")
    if not np.isfinite(img.sum(dtype=np.float64)) and not np.isfinite(img).all():  # no bool copy when finite
        raise ImageLoadError(path, "non-finite pixel values")
    if not img.flags.writeable:
        img = img.copy()
    return np.clip(img, 0.0, 1.0, out=img)


def _text(ds: Dataset | None, keyword: str, *, upper: bool = False,
          path: str | Path | None = None) -> str | None:
    """Element value as stripped text; unreadable values are None, or raise if ``path``."""
    try:
        value = ds.get(keyword) if ds is not None else None
    except Exception as exc:  # noqa: BLE001 - bad VR / value; the message may hold PHI
        if path is None:
            return None
        raise ImageLoadError(path, f"invalid {keyword} element ({type(exc).__name__})") from None
    text = str(value).strip(" \x00") if value is not None else ""
    return (text.upper() if upper else text) or None


def _int(ds: Dataset, keyword: str, path: str | Path, default: int | None) -> int | None:
    value = _text(ds, keyword, path=path)
    try:
        return default if value is None else int(float(value))
    except (ValueError, OverflowError):  # 'abc', 'inf', 'nan'
        raise ImageLoadError(path, f"invalid {keyword} value") from None


def _geometry(ds: Dataset, path: str | Path) -> tuple[int, int, int]:
    rows, cols, n_frames = (_int(ds, k, path, d) for k, d in
                            (("Rows", None), ("Columns", None), ("NumberOfFrames", 1)))
    if rows is None or cols is None:
        raise ImageLoadError(path, "not an image (no Rows/Columns)")
    if n_frames < 1:
        raise ImageLoadError(path, f"invalid NumberOfFrames {n_frames}")
    return rows, cols, n_frames


def _transfer_syntax(ds: Dataset) -> UID | None:
    """File-meta Transfer Syntax, or for meta-less files the native one they were read in."""
    ts = _text(getattr(ds, "file_meta", None), "TransferSyntaxUID")
    if ts:
        return UID(ts)
    implicit, little = ds.original_encoding
    elem = ds["PixelData"] if "PixelData" in ds else None
    if implicit is None or elem is None or elem.is_undefined_length:
        return None  # encapsulated pixel data: the codec cannot be guessed
    return {(True, True): ImplicitVRLittleEndian, (False, True): ExplicitVRLittleEndian,
            (False, False): ExplicitVRBigEndian}.get((implicit, little))


def _decode(ds: Dataset, path: str | Path, index: int) -> np.ndarray:
    """Decode frame ``index`` (YBR converted to RGB); missing codecs get a clear reason."""
    ts = _transfer_syntax(ds)
    if ts is None:
        raise ImageLoadError(path, "missing Transfer Syntax UID")
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise ImageLoadError(path, f"unsupported transfer syntax {ts} ({ts.name})") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin"
        raise ImageLoadError(path, f"no decoder installed for {ts.name} ({missing})")
    if ts == JPEGBaseline8Bit:  # libjpeg's warnings are errors here too (see reid_core.data.jpeg)
        _check_jpeg_frame(ds, path, index)
    try:
        opts = as_pixel_options(ds, transfer_syntax_uid=ts)
        return decoder.as_array(ds, index=index, validate=True, **opts)[0]
    except BaseException as exc:  # noqa: BLE001 - codecs raise many types, Rust ones even panics
        if isinstance(exc, INTERRUPTS):
            raise
        reason = (str(exc).splitlines() or [""])[0][:160]
        kind = "decoder panicked" if not isinstance(exc, Exception) else "pixel data undecodable"
        raise ImageLoadError(path, f"{kind} ({type(exc).__name__}: {reason})") from None


def _check_jpeg_frame(ds: Dataset, path: str | Path, index: int) -> None:
    """Strictly check frame ``index`` of 8-bit baseline JPEG pixel data (frames it cannot find: the decoder's job)."""
    from pydicom.encaps import get_frame

    try:
        frame = get_frame(ds.PixelData, index, number_of_frames=int(ds.get("NumberOfFrames") or 1))
    except Exception:  # noqa: BLE001 - malformed encapsulation: the decoder reports it
        return
    check_jpeg(path, frame)


def _colour_to_gray(raw: np.ndarray, ds: Dataset, photometric: str, path: str | Path) -> np.ndarray:
    """RGB (YBR already converted by pydicom) or palette colour to luminance in [0, 1]."""
    if photometric == "PALETTE COLOR":
        n_entries, first, bits = (int(v) for v in ds.RedPaletteColorLookupTableDescriptor)
        n_entries = n_entries or 65536
        table = apply_color_lut(np.arange(first, first + n_entries).astype(np.uint16), ds)
        rgb = table[np.clip(raw.astype(np.int64) - first, 0, n_entries - 1)]
        # 8-bit values stored in 16-bit words are common: judge the range by the table itself
        full = 255.0 if bits <= 8 or table.max() <= 255 else 65535.0
    else:
        rgb, full = raw, float(2 ** int(ds.get("BitsStored") or raw.dtype.itemsize * 8) - 1)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ImageLoadError(path, f"unsupported colour layout {rgb.shape} ({photometric})")
    return (rgb.astype(np.float64) @ _LUMA) / full


def _functional_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """Item of ``sequence`` for frame ``index`` from per-frame, else shared, groups."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq and len(seq) > i and seq[i].get(sequence):
            return seq[i].get(sequence)[0]
    return None


def _grayscale(arr: np.ndarray, ds: Dataset, index: int, path: str | Path) -> np.ndarray:
    """Modality LUT -> VOI (LUT sequence or window) -> [0, 1], falling back to min-max."""
    if ds.get("ModalityLUTSequence"):
        arr = _lookup(arr, ds.ModalityLUTSequence[0], ds)
    else:
        transform = _functional_item(ds, index, "PixelValueTransformationSequence")
        src = transform if "RescaleSlope" not in ds and transform is not None else ds
        slope, intercept = _float(src, "RescaleSlope", 1.0), _float(src, "RescaleIntercept", 0.0)
        arr = arr * (slope or 1.0) + intercept  # a zero slope is a broken header: ignore it
    out = None
    if ds.get("VOILUTSequence"):
        lut = _lookup(arr, ds.VOILUTSequence[0], ds)  # its own min..max is the display range
        out = (lut - lut.min()) / np.ptp(lut) if np.ptp(lut) > 0 else None
    else:
        voi = ds if "WindowCenter" in ds else _functional_item(ds, index, "FrameVOILUTSequence")
        out = None if voi is None else _window(arr, voi, path)
    if out is not None and np.ptp(out) == 0 and np.ptp(arr) > 0:
        log.warning("%s: VOI maps every pixel to one value; min-max used instead", path)
        out = None
    return minmax_unit(arr, path) if out is None else out


def _float(src: Dataset, keyword: str, default: float) -> float:
    value = src.get(keyword)
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return default
    number = float(value)
    return number if np.isfinite(number) else default


def _window(arr: np.ndarray, voi: Dataset, path: str | Path) -> np.ndarray | None:
    """Window Center/Width (first pair) with LINEAR, LINEAR_EXACT or SIGMOID (PS3.3 C.11.2.1.2)."""
    try:
        center, width = _float(voi, "WindowCenter", np.nan), _float(voi, "WindowWidth", np.nan)
    except (TypeError, ValueError):
        center = width = np.nan
    if not (np.isfinite(center) and np.isfinite(width)) or width <= 0:
        log.warning("%s: unusable Window Center/Width ignored", path)
        return None
    function = (_text(voi, "VOILUTFunction", upper=True) or "LINEAR")
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (arr - center) / width, -700, 700)))
    if function == "LINEAR_EXACT":
        return np.clip((arr - center) / width + 0.5, 0.0, 1.0)
    if function != "LINEAR":
        log.warning("%s: unknown VOI LUT Function %r, LINEAR used", path, function)
    if width < 1:
        return None  # LINEAR requires width >= 1
    if width == 1:  # a threshold at center - 0.5
        return (arr > center - 0.5).astype(np.float64)
    return np.clip((arr - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _lookup(arr: np.ndarray, item: Dataset, ds: Dataset) -> np.ndarray:
    """Apply a LUT item (LUT Descriptor + LUT Data as US values or OW bytes) to ``arr``."""
    n_entries, first, _bits = (int(v) for v in item.LUTDescriptor)
    value = item["LUTData"].value
    if isinstance(value, (bytes, bytearray)):
        big = getattr(_transfer_syntax(ds), "is_little_endian", True) is False
        table = np.frombuffer(value, dtype=">u2" if big else "<u2")
    else:
        table = np.atleast_1d(np.asarray(value))
    table = table[: n_entries or 65536].astype(np.float64)
    if table.size == 0:
        raise ValueError("empty LUT")
    return table[np.clip(np.rint(arr) - first, 0, table.size - 1).astype(np.intp)]

"""Load any supported radiograph file as a float32 2-D array in [0, 1], air dark.

Dispatch is on content first: the 'DICM' magic at byte 128 means DICOM, PNG /
JPEG / TIFF / BMP signatures mean a raster image.  Only then the suffix: files
named *.dcm / *.dicom are parsed as DICOM without preamble, raster suffixes go
to PIL (which then reports what is wrong).  Every failure is an ImageLoadError.

Raster normalisation divides by the range of the storage type: 8-bit by 255,
16-bit ("I;16*", or mode "I" holding values within 0..65535) by 65535, so a
12-bit image stored in a 16-bit PNG stays dark (0..0.0625) rather than being
stretched per image; floating-point images are min-max scaled.  Colour and
palette images become luminance 0.299 R + 0.587 G + 0.114 B (alpha ignored);
EXIF orientation is applied.  Multi-frame files (TIFF, APNG, DICOM) need an
explicit ``frame``.  JPEGs are checked strictly first (libjpeg warnings about
corrupt or missing scan data are errors, see :mod:`reid_core.data.jpeg`).
DICOM details, and :class:`ImageMeta` (re-exported here), live in
:mod:`reid_core.data.dicom`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from reid_core.data.dicom import (
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_PIXELS,
    DICOM_SUFFIXES,
    ImageMeta,
    check_decoded_bytes,
    check_size,
    dicom_meta,
    dicom_to_array,
    finalize,
    has_dicom_preamble,
    minmax_unit,
    read_dataset,
    select_frame,
)
from reid_core.data.jpeg import check_jpeg
from reid_core.errors import INTERRUPTS, ImageLoadError

__all__ = ["DEFAULT_MAX_DECODED_BYTES", "DEFAULT_MAX_PIXELS", "ImageMeta", "load_image", "load_image_with_meta"]

log = logging.getLogger(__name__)

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
_RASTER_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_ROWS_PER_STEP = 512  # colour → luminance in row blocks: no full-size float RGB copy
_COLOUR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"})
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: a JPEG with further pictures appended


def load_image(path: str | Path, frame: int | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image at ``path`` as a finite float32 2-D array in [0, 1] (air dark, bone bright).

    ``frame`` (0-based) is required for multi-frame files; images with more than
    ``max_pixels`` pixels, or whose decoded pixels (width × height × channels ×
    bytes per sample) exceed :data:`DEFAULT_MAX_DECODED_BYTES`, are rejected
    before decoding. Colour JPEGs are decoded straight to luminance.
    """
    return load_image_with_meta(path, frame=frame, max_pixels=max_pixels)[0]


def load_image_with_meta(path: str | Path, frame: int | None = None,
                         max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, ImageMeta]:
    """Like :func:`load_image`, also returning the file's :class:`ImageMeta`.

    Raises only :class:`ImageLoadError` (or an interrupt): whatever else a parser
    or decoder throws, a Rust panic included, is reported as that file's failure.
    """
    p = Path(path)
    try:
        return _load(p, frame, max_pixels)
    except ImageLoadError:
        raise
    except BaseException as exc:  # noqa: BLE001 - the contract: one typed error per bad file
        if isinstance(exc, INTERRUPTS):
            raise
        raise ImageLoadError(p, f"unexpected decoder failure ({type(exc).__name__})") from None


def _load(p: Path, frame: int | None, max_pixels: int) -> tuple[np.ndarray, ImageMeta]:
    """Dispatch on content, then suffix (see the module docstring)."""
    head = _read_head(p)
    suffix = p.suffix.lower()
    is_raster = head.startswith(_RASTER_MAGIC)
    if has_dicom_preamble(head) or (suffix in DICOM_SUFFIXES and not is_raster):
        ds = read_dataset(p)
        image = dicom_to_array(ds, p, frame=frame, max_pixels=max_pixels)
        return image, dicom_meta(ds, p)
    if is_raster or suffix in RASTER_SUFFIXES:
        return _load_raster(p, frame, max_pixels)
    raise ImageLoadError(p, f"unsupported file type ({suffix or 'no suffix'}, unknown signature)")


def _read_head(p: Path) -> bytes:
    """First 132 bytes; raises for missing, non-regular, unreadable or empty files."""
    if not p.exists():
        raise ImageLoadError(p, "file not found")
    if not p.is_file():
        raise ImageLoadError(p, "not a regular file")
    try:
        with p.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise ImageLoadError(p, f"unreadable ({type(exc).__name__})") from exc
    if not head:
        raise ImageLoadError(p, "empty file")
    return head


def _load_raster(p: Path, frame: int | None, max_pixels: int) -> tuple[np.ndarray, ImageMeta]:
    """PNG / JPEG / TIFF / BMP through PIL, size-checked from the header before decoding."""
    try:
        im = Image.open(p)  # reads the header only; PIL itself refuses > 2 * MAX_IMAGE_PIXELS
    except Image.DecompressionBombError:
        raise ImageLoadError(p, "too many pixels (PIL decompression-bomb limit)") from None
    except Exception as exc:  # noqa: BLE001 - PIL plugins raise many types on bad headers
        raise ImageLoadError(p, f"not a readable image ({type(exc).__name__})") from None
    with im:
        cols, rows = im.size
        check_size(p, rows, cols, max_pixels)
        if im.format == "JPEG" and im.mode in ("RGB", "YCbCr"):
            im.draft("L", im.size)  # libjpeg outputs the Y (BT.601 luma) plane: a third of the memory
        check_decoded_bytes(p, rows, cols, *_decoded_layout(im.mode))
        if im.format in _JPEG_FORMATS:
            check_jpeg(p, _read_bounded(p))
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        index = select_frame(p, n_frames, frame)
        try:
            if index:
                im.seek(index)
            im.load()
            image = _pil_to_unit(ImageOps.exif_transpose(im), p)
        except ImageLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncated data, bad chunks, decoder errors
            raise ImageLoadError(p, f"corrupt or truncated image ({type(exc).__name__}: {exc})") from exc
    image = finalize(image, p)
    return image, ImageMeta(rows=image.shape[0], cols=image.shape[1], n_frames=n_frames)


def _read_bounded(p: Path) -> bytes:
    """The whole file, refused when it is larger than a decoded image may be."""
    size = p.stat().st_size
    if size > DEFAULT_MAX_DECODED_BYTES:
        raise ImageLoadError(p, f"file of {size / 2**20:.0f} MiB is over the "
                                f"{DEFAULT_MAX_DECODED_BYTES / 2**20:.0f} MiB per-image limit")
    return p.read_bytes()


def _decoded_layout(mode: str) -> tuple[int, int]:
    """(channels, bytes per sample) PIL holds for ``mode``; colour counts as the RGB it becomes."""
    if mode in _COLOUR_MODES:
        return (4 if mode in ("RGBA", "RGBX", "RGBa", "CMYK") else 3), 1
    if mode.startswith("I;16"):
        return 1, 2
    if mode in ("I", "F"):
        return 1, 4
    return (2 if mode in ("LA", "La") else 1), 1


def _scaled(arr: np.ndarray, full: float) -> np.ndarray:
    """``arr / full`` as float32, in one allocation."""
    out = np.asarray(arr, dtype=np.float32)
    out = out.copy() if out is arr or not out.flags.writeable else out
    out /= full
    return out


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """0.299 R + 0.587 G + 0.114 B of an 8-bit H×W×3 array, in [0, 1], float32, a block of rows at a time."""
    out = np.empty(rgb.shape[:2], dtype=np.float32)
    for r in range(0, rgb.shape[0], _ROWS_PER_STEP):
        out[r:r + _ROWS_PER_STEP] = rgb[r:r + _ROWS_PER_STEP, :, :3].astype(np.float32) @ _LUMA
    out /= 255.0
    return out


def _pil_to_unit(im: Image.Image, p: Path) -> np.ndarray:
    """PIL image to float32 [0, 1] luminance, divided by its storage type's maximum."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=np.float32)
    if mode == "L":
        return _scaled(np.asarray(im), 255.0)
    if mode in ("LA", "La"):
        return _scaled(np.asarray(im.getchannel(0)), 255.0)
    if mode in _COLOUR_MODES:
        return _luminance(np.asarray(im if mode in ("RGB", "RGBA", "RGBX") else im.convert("RGB")))
    if mode.startswith("I;16"):
        return _scaled(np.asarray(im), 65535.0)
    if mode == "I":
        arr = np.asarray(im).astype(np.float64)
        if arr.size and arr.min() >= 0 and arr.max() <= 65535:
            return arr / 65535.0
        log.debug("%s: 32-bit integer image outside 0..65535, min-max scaled", p)
        return minmax_unit(arr, p)
    if mode == "F":
        return minmax_unit(np.asarray(im), p)
    raise ImageLoadError(p, f"unsupported PIL image mode {mode!r}")

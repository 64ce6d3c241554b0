"""Uploaded query files (DICOM / PNG / JPG): checked, written to a private temp file, decoded, deleted.

Only pixels come back: :func:`reid_core.query.load_query_image` returns the
letterboxed image and nothing of the DICOM header, and error messages name the
uploaded file by its name, never by the temp path. The name is the uploader's
text and the pages render messages as Markdown, so it is first reduced to
letters, digits and ``._-`` (:func:`safe_name`): a name cannot add links or
formatting to the page.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from reid_core.errors import CxrReidError, ImageLoadError
from reid_core.query import QueryError, load_query_image

UPLOAD_TYPES: tuple[str, ...] = ("dcm", "dicom", "png", "jpg", "jpeg")
MAX_UPLOAD_MB = 50


class UploadError(CxrReidError):
    """An uploaded file refused before decoding (wrong type, empty, too large)."""


_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def safe_name(name: str | None, limit: int = 80) -> str:
    """The uploaded file's name for messages: other characters become ``_``, at most ``limit`` of them."""
    text = _UNSAFE.sub("_", str(name or "")).strip() or "upload"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def validate_upload(name: str, n_bytes: int, max_mb: int = MAX_UPLOAD_MB) -> str:
    """The file's lower-case suffix (``.png``…) if it may be decoded; :class:`UploadError` saying why not."""
    suffix = Path(name or "").suffix.lower()
    name = safe_name(name)
    if suffix.lstrip(".") not in UPLOAD_TYPES:
        raise UploadError(f"{name!r}: unsupported file type {safe_name(suffix) if suffix else '(no extension)'}; "
                          f"upload one of {', '.join('.' + t for t in UPLOAD_TYPES)}")
    if n_bytes <= 0:
        raise UploadError(f"{name!r} is empty")
    if n_bytes > max_mb * 1024 * 1024:
        raise UploadError(f"{name!r} is {n_bytes / 2**20:.1f} MB; the limit is {max_mb} MB")
    return suffix


def load_uploaded_image(name: str, data: bytes, size: int, max_mb: int = MAX_UPLOAD_MB) -> np.ndarray:
    """An uploaded file as the model sees it (``size``×``size`` uint8, letterboxed).

    Raises :class:`UploadError`, :class:`~reid_core.errors.ImageLoadError` (not
    decodable) or :class:`~reid_core.query.QueryError` (lateral view, too small),
    each naming the upload rather than the temp file.
    """
    suffix = validate_upload(name, len(data), max_mb)
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="cxr-reid-upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            return load_query_image(tmp, size)
        except ImageLoadError as exc:
            raise ImageLoadError(safe_name(name), exc.reason) from None
        except QueryError as exc:
            raise QueryError(str(exc).replace(tmp, safe_name(name))) from None
    finally:
        Path(tmp).unlink(missing_ok=True)

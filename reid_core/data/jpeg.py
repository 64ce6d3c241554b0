"""Strict JPEG check: what libjpeg only warns about is an error here.

Pillow's libjpeg error manager drops warnings, so a JPEG whose scan data is
corrupt (flipped bytes: "extraneous bytes before marker", "bad Huffman code")
or shorter than its frame header says (an enlarged SOF: "premature end of data
segment") decodes to grey or garbage pixels without any error. Such files must
land in ``bad_files.csv`` instead of the image store, so every JPEG is first
entropy-decoded by libjpeg-turbo through ``simplejpeg`` in strict mode, where
any warning raises. The check decodes at 1/8 scale (the DCT scaling still reads
every coefficient), so it costs a fraction of the real decode and little memory.

A flipped bit that still yields valid Huffman codes is undetectable by any JPEG
decoder (the format has no checksum); this check catches what libjpeg notices.
"""
from __future__ import annotations

from pathlib import Path

import simplejpeg

from reid_core.errors import ImageLoadError

__all__ = ["check_jpeg"]

_CMYK_SPACES = frozenset({"CMYK", "YCCK"})  # libjpeg-turbo converts these only to CMYK, never to grey


def check_jpeg(path: str | Path, data: bytes) -> None:
    """Raise :class:`ImageLoadError` unless libjpeg-turbo decodes ``data`` without a warning.

    ``data`` is the whole JPEG file; ``path`` only names it in the error.
    """
    try:
        _, _, colourspace, _ = simplejpeg.decode_jpeg_header(data)
        out_space = "CMYK" if colourspace in _CMYK_SPACES else "GRAY"
        simplejpeg.decode_jpeg(data, colorspace=out_space, strict=True,
                               min_height=1, min_width=1, min_factor=8)
    except ValueError as exc:
        raise ImageLoadError(path, f"corrupt JPEG ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """The decoder's message, one line, bounded (it quotes libjpeg, never file contents)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]

"""Small JPEG data URLs of films, for previews the browser shows without asking the server (map hover)."""
from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

HOVER_SIDE, HOVER_QUALITY = 80, 75  # ≈ 2 KB a film
HOVER_LIMIT = 1000  # maps with more images get no hover previews (the page would carry megabytes each rerun)


def data_url(image: np.ndarray, side: int = HOVER_SIDE, quality: int = HOVER_QUALITY) -> str:
    """``data:image/jpeg;base64,…`` of a greyscale uint8 image shrunk to at most ``side`` px."""
    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    im.thumbnail((side, side))
    buf = io.BytesIO()
    im.convert("L").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def hover_thumbnails(image_ids: Sequence[str], pixels: Callable[[str], np.ndarray | None],
                     limit: int = HOVER_LIMIT) -> dict[str, str] | None:
    """``{image_id: data URL}`` for the map's images, or None above ``limit`` images; ids without pixels
    (``pixels`` returns None) are left out."""
    if len(image_ids) > limit:
        return None
    out = {}
    for image_id in image_ids:
        img = pixels(str(image_id))
        if img is not None:
            out[str(image_id)] = data_url(img)
    return out

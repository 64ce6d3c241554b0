"""Does a query image look like a frontal radiograph of this workspace's kind? Two independent checks.

* :func:`pixel_checks` — radiograph-likeness of the pixels as uploaded (before greyscale conversion and
  letterboxing): colour, transparency, aspect ratio, a near-uniform image, and noise (chest films are smooth:
  neighbouring regions correlate strongly; noise does not).
* :class:`DistanceReference` — the embedding's distance to its nearest workspace image, against the
  workspace's own scale: for each workspace image, the distance to its nearest image *of another patient*
  (a new patient's film has no film of its own patient to be close to). An upload farther than the
  ``quantile`` (0.99) of those is farther from every workspace image than almost any workspace film is from
  another patient's.

Both only *warn*: the app still shows its decision, with the reasons beside it (:func:`upload_warnings`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MAX_ASPECT = 1.6  # chest films are 14×17 in (1.21:1) or square; a strip or a panorama is not one
COLOUR_SPREAD, COLOUR_SHARE = 0.08, 0.05  # a pixel is coloured when its channels differ by 8 % of the range
MIN_STD = 0.02  # on [0, 1]: below this the image is nearly uniform
# at a ~32 px scale: phantom films ≥ 0.64 (64 px test films, the noisiest), white noise ≈ 0
MIN_NEIGHBOUR_CORRELATION, COARSE_SIDE = 0.3, 32
PREVIEW_SIDE = 256
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")


def _as_unit(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if np.issubdtype(arr.dtype, np.integer):
        top = float(arr.max()) or 1.0
        return arr.astype(np.float32) / top
    return arr.astype(np.float32)


def pixel_checks(image: np.ndarray) -> list[str]:
    """Reasons (empty when none) why an H×W, H×W×3 or H×W×4 image does not look like a chest radiograph.

    uint8 and other integer images are scaled to [0, 1]; float images are taken as [0, 1].
    """
    arr = _as_unit(image)
    if arr.ndim not in (2, 3) or min(arr.shape[:2]) < 2:
        return ["not a 2-D image"]
    reasons: list[str] = []
    h, w = arr.shape[:2]
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha = arr[..., -1]
        if float(alpha.min()) < 0.98:
            reasons.append(f"it has transparent pixels ({100 * float(np.mean(alpha < 0.98)):.0f} %); "
                           "radiographs have none")
        arr = arr[..., :-1]
    if arr.ndim == 3 and arr.shape[2] >= 3:
        spread = arr[..., :3].max(axis=2) - arr[..., :3].min(axis=2)
        share = float(np.mean(spread > COLOUR_SPREAD))
        if share > COLOUR_SHARE:
            reasons.append(f"it is a colour image ({100 * share:.0f} % of its pixels are coloured); "
                           "radiographs are greyscale")
        grey = arr[..., :3].mean(axis=2)
    else:
        grey = arr if arr.ndim == 2 else arr[..., 0]
    aspect = max(h, w) / min(h, w)
    if aspect > MAX_ASPECT:
        reasons.append(f"its aspect ratio is {aspect:.1f}:1; chest films are close to square "
                       f"(up to about {MAX_ASPECT}:1)")
    std = float(grey.std())
    if std < MIN_STD:
        reasons.append(f"its intensity is nearly uniform (standard deviation {std:.3f} of the range)")
    else:
        r = neighbour_correlation(grey)
        if r < MIN_NEIGHBOUR_CORRELATION:
            reasons.append(f"neighbouring regions barely correlate (r = {r:.2f}), as in noise; "
                           f"chest films are smooth at this scale (r > {MIN_NEIGHBOUR_CORRELATION})")
    return reasons


def neighbour_correlation(grey: np.ndarray, side: int = COARSE_SIDE) -> float:
    """Correlation of horizontally adjacent cells of ``grey`` averaged down to about ``side`` px (block means):
    film grain and quantum noise average out, anatomy stays (phantom films ≥ 0.64, white noise ≈ 0)."""
    h, w = grey.shape
    f = max(1, min(h, w) // side)
    cells = grey[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    left, right = cells[:, :-1].ravel(), cells[:, 1:].ravel()
    if len(left) < 2 or left.std() == 0 or right.std() == 0:
        return 1.0  # nothing to compare: no evidence of noise
    return float(np.corrcoef(left, right)[0, 1])


def raster_preview(name: str, data: bytes, side: int = PREVIEW_SIDE) -> np.ndarray | None:
    """A PNG/JPEG upload at most ``side`` px on its long side, channels kept (alpha included), as uint8;
    None for other formats (DICOM: greyscale by definition of the loader) or undecodable data.

    Call it on data the image loader has accepted (its size checks bound the decode).
    """
    if Path(name or "").suffix.lower() not in RASTER_SUFFIXES:
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG":
                im.draft("RGB", (side, side))  # decode at a reduced scale
            im.load()
            mode = {"P": "RGBA", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "1": "L", "La": "LA",
                    "RGBa": "RGBA"}.get(im.mode, im.mode)
            if mode.startswith("I") or mode == "F":
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                im = Image.fromarray(((arr - lo) / ((hi - lo) or 1.0) * 255).astype(np.uint8))
            elif mode != im.mode:
                im = im.convert(mode)
            im.thumbnail((side, side))
            return np.asarray(im, dtype=np.uint8)
    except Exception:  # noqa: BLE001 - the loader already decoded it; a preview failure only skips the checks
        return None


@dataclass(frozen=True)
class DistanceReference:
    """The workspace's own scale for "far": a quantile of its images' nearest other-patient distances."""

    threshold: float
    quantile: float
    n_images: int

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, patient_ids: np.ndarray | list, quantile: float = 0.99,
                        k: int = 16, max_queries: int = 5000, seed: int = 0) -> "DistanceReference":
        """From N×D embeddings and their patients: for (a seeded sample of at most ``max_queries``) images,
        the Euclidean distance to the nearest image of another patient among their ``k`` nearest (the k-th
        distance when all k are the same patient's, a lower bound), then its ``quantile``."""
        from reid_core.retrieval import Index

        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        pids = np.asarray(patient_ids).astype(str)
        if len(x) < 2:
            raise ValueError("a distance reference needs at least 2 workspace images")
        rows = np.arange(len(x))
        if len(rows) > max_queries:
            rows = np.sort(np.random.default_rng(seed).choice(len(x), size=max_queries, replace=False))
        index = Index.build(x, [str(i) for i in range(len(x))])
        kk = min(k + 1, len(x))
        dist, ids = index.search(x[rows], kk)
        nearest = np.empty(len(rows), dtype=np.float64)
        for j, (r, d_row, id_row) in enumerate(zip(rows, dist, ids)):
            other = [d for d, i in zip(d_row, id_row) if i is not None and pids[int(i)] != pids[r]]
            nearest[j] = other[0] if other else d_row[-1]
        return cls(threshold=float(np.quantile(nearest, quantile)), quantile=quantile, n_images=len(rows))

    def check(self, nearest_distance: float) -> str | None:
        """A reason when ``nearest_distance`` (query → its nearest workspace image) is beyond the threshold."""
        if not np.isfinite(nearest_distance) or nearest_distance > self.threshold:
            return (f"its embedding is {nearest_distance:.3f} from the nearest workspace image, farther than "
                    f"{100 * self.quantile:.0f} % of workspace films are from another patient's nearest film "
                    f"({self.threshold:.3f})")
        return None


def upload_warnings(preview: np.ndarray | None, nearest_distance: float,
                    reference: DistanceReference | None) -> list[str]:
    """Every reason an upload may not be a frontal radiograph of the workspace's kind (pixels, then embedding)."""
    reasons = pixel_checks(preview) if preview is not None else []
    if reference is not None:
        far = reference.check(nearest_distance)
        if far:
            reasons.append(far)
    return reasons

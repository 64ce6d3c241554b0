"""Rasterisation primitives shared by the phantom layers (no anatomy here).

Everything works in *normalised body units*: the default output frame spans
``x, y ∈ [-1, 1]`` (``x`` to the image right = patient left, ``y`` downwards),
one unit ≈ 20 cm. Layers live on a slightly larger canonical :class:`Grid` so
that pose warps never sample outside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

F32 = np.float32


@dataclass(frozen=True)
class Grid:
    """A square pixel grid covering ``[-extent, extent]²`` with ``n`` pixels a side."""

    n: int
    extent: float = 1.2

    @property
    def step(self) -> float:
        """Size of one pixel in body units."""
        return 2.0 * self.extent / self.n

    @property
    def xs(self) -> np.ndarray:
        """Pixel-centre x coordinates, shape ``(1, n)``."""
        return ((np.arange(self.n, dtype=F32) + F32(0.5)) * F32(self.step) - F32(self.extent))[None, :]

    @property
    def ys(self) -> np.ndarray:
        """Pixel-centre y coordinates, shape ``(n, 1)``."""
        return self.xs.reshape(self.n, 1)

    def index(self, v: float) -> float:
        """Fractional pixel index of coordinate ``v``."""
        return (v + self.extent) / self.step - 0.5

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        """Row and column slices of the pixels inside a body-unit box (clipped; may be empty)."""
        def sl(a: float, b: float) -> slice:
            lo = int(np.floor(self.index(min(a, b)))) - 1
            hi = int(np.ceil(self.index(max(a, b)))) + 2
            return slice(max(lo, 0), max(min(hi, self.n), 0))
        return sl(y0, y1), sl(x0, x1)

    def coords(self, win: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """``(y (h,1), x (1,w))`` coordinates of a window."""
        return self.ys[win[0]], self.xs[:, win[1]]


def ramp(z: np.ndarray, width: float) -> np.ndarray:
    """Soft step from 0 (``z << 0``) to 1 (``z >> 0``) over ``width`` (linear, clipped)."""
    return np.clip(F32(0.5) + z * F32(1.0 / max(width, 1e-6)), 0.0, 1.0)


def dome(d2: np.ndarray) -> np.ndarray:
    """Projected thickness of a unit ball/cylinder: ``sqrt(1 - d²)`` clipped at 0."""
    return np.sqrt(np.clip(F32(1.0) - d2, 0.0, None))


def tube_profile(q: np.ndarray, cortex: float = 0.65, shell: float = 0.75) -> np.ndarray:
    """Projection across a bone of half-width 1 at offset ``q``: marrow plus a bright cortical shell.

    ``shell`` is the inner radius of the cortex (fraction of the radius); ``cortex``
    weights the shell against the uniform marrow.
    """
    q2 = q * q
    outer = dome(q2)
    inner = np.sqrt(np.clip(F32(shell * shell) - q2, 0.0, None))
    return (F32(1.0 - cortex) * outer + F32(cortex) * (outer - inner) * F32(1.6)).astype(F32)


def blur(a: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur in pixels (no-op below 0.2 px)."""
    if sigma_px < 0.2:
        return a
    return ndi.gaussian_filter(a, sigma_px, truncate=2.5, mode="nearest")


def lowpass(a: np.ndarray, factor: int) -> np.ndarray:
    """Cheap large-scale low-pass: block mean by ``factor``, smooth, bilinear upsample back."""
    h, w = a.shape
    hb, wb = -(-h // factor), -(-w // factor)
    pad = np.pad(a, ((0, hb * factor - h), (0, wb * factor - w)), mode="edge")
    small = pad.reshape(hb, factor, wb, factor).mean(axis=(1, 3), dtype=F32)
    small = ndi.gaussian_filter(small, 1.0, mode="nearest")
    ry = (np.arange(h, dtype=F32) + 0.5) / factor - 0.5
    rx = (np.arange(w, dtype=F32) + 0.5) / factor - 0.5
    return resample_rows_cols(small, ry, rx)


def resample_rows_cols(a: np.ndarray, ry: np.ndarray, rx: np.ndarray) -> np.ndarray:
    """Separable bilinear resampling: output ``[i, j] = a(ry[i], rx[j])`` (edge-clamped)."""
    def taps(r: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = np.clip(r, 0.0, n - 1.0)
        i0 = np.minimum(r.astype(np.int64), n - 2) if n > 1 else np.zeros(r.shape, np.int64)
        f = (r - i0).astype(F32)
        return i0, np.minimum(i0 + 1, n - 1), f
    y0, y1, fy = taps(np.asarray(ry, F32), a.shape[0])
    rows = a[y0] + (a[y1] - a[y0]) * fy[:, None]
    x0, x1, fx = taps(np.asarray(rx, F32), a.shape[1])
    return (rows[:, x0] + (rows[:, x1] - rows[:, x0]) * fx[None, :]).astype(F32)


def warp_affine(a: np.ndarray, matrix: np.ndarray, offset: np.ndarray, shape: tuple[int, int],
                fill: float | None = 0.0) -> np.ndarray:
    """Bilinear sample ``a`` at ``matrix @ (row, col) + offset`` for every output pixel.

    Outside ``a`` the result is ``fill``, or the nearest edge value when ``fill`` is None.
    """
    h, w = shape
    r = np.arange(h, dtype=F32)[:, None]
    c = np.arange(w, dtype=F32)[None, :]
    sr = F32(matrix[0, 0]) * r + F32(matrix[0, 1]) * c + F32(offset[0])
    sc = F32(matrix[1, 0]) * r + F32(matrix[1, 1]) * c + F32(offset[1])
    n0, n1 = a.shape
    outside = None if fill is None else (sr < 0) | (sr > n0 - 1) | (sc < 0) | (sc > n1 - 1)
    np.clip(sr, 0, n0 - 1.001, out=sr)
    np.clip(sc, 0, n1 - 1.001, out=sc)
    r0 = sr.astype(np.int32)
    c0 = sc.astype(np.int32)
    fr = sr - r0
    fc = sc - c0
    flat = a.ravel()
    idx = r0 * n1 + c0
    v00 = flat.take(idx)
    v01 = flat.take(idx + 1)
    v10 = flat.take(idx + n1)
    v11 = flat.take(idx + n1 + 1)
    top = v00 + (v01 - v00) * fc
    out = top + (v10 + (v11 - v10) * fc - top) * fr
    if outside is not None and outside.any():
        out[outside] = fill
    return out.astype(F32, copy=False)


def resample_polyline(vertices: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` along a polyline given as ``(k, 2)`` ``(x, y)`` vertices."""
    v = np.asarray(vertices, dtype=np.float64)
    seg = np.hypot(*np.diff(v, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return v[:1]
    t = np.arange(0.0, s[-1] + 1e-9, step)
    return np.stack([np.interp(t, s, v[:, 0]), np.interp(t, s, v[:, 1])], axis=1)


def splat(grid: Grid, points: np.ndarray, weights: np.ndarray | float, out: np.ndarray | None = None) -> np.ndarray:
    """Add point masses (bilinear) at ``(x, y)`` points onto a grid-shaped array."""
    n = grid.n
    out = np.zeros((n, n), F32) if out is None else out
    if len(points) == 0:
        return out
    c = (points[:, 0] + grid.extent) / grid.step - 0.5
    r = (points[:, 1] + grid.extent) / grid.step - 0.5
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), c.shape)
    keep = (c >= 0) & (c < n - 1) & (r >= 0) & (r < n - 1)
    c, r, w = c[keep], r[keep], w[keep]
    c0 = c.astype(np.int64)
    r0 = r.astype(np.int64)
    fc, fr = c - c0, r - r0
    idx = r0 * n + c0
    idx4 = np.concatenate([idx, idx + 1, idx + n, idx + n + 1])
    w4 = np.concatenate([w * (1 - fc) * (1 - fr), w * fc * (1 - fr), w * (1 - fc) * fr, w * fc * fr])
    out += np.bincount(idx4, w4, minlength=n * n).reshape(n, n).astype(F32)
    return out


def points_window(grid: Grid, points: np.ndarray, pad: float) -> tuple[slice, slice]:
    """Pixel window covering ``points`` plus ``pad`` body units."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return grid.window(lo[0] - pad, hi[0] + pad, lo[1] - pad, hi[1] + pad)


def draw_lines(grid: Grid, polylines: list[np.ndarray], radius: float, density: float,
               out: np.ndarray | None = None) -> np.ndarray:
    """Rasterise polylines as cylinders of ``radius`` (body units) and peak value ``density``."""
    n = grid.n
    out = np.zeros((n, n), F32) if out is None else out
    if not polylines:
        return out
    step = grid.step * 0.5
    pts = np.concatenate([resample_polyline(p, step) for p in polylines])
    sigma = max(radius / grid.step * 0.8, 0.45)
    acc = splat(grid, pts, 1.0)
    win = points_window(grid, pts, (3 * sigma + 2) * grid.step)
    # a line of unit mass per half-pixel blurred by sigma peaks at 2/(sqrt(2 pi) sigma)
    scale = density * np.sqrt(2 * np.pi) * sigma / 2.0
    out[win] += blur(acc[win], sigma) * F32(scale)
    return out


_GLYPHS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "P": ("11110", "10001", "10001", "11110", "10000", "10000", "10000"),
}


def glyph(letter: str, height_px: int) -> np.ndarray:
    """A block letter (``L``, ``R``, ``A``, ``P``) as a float mask about ``height_px`` tall."""
    rows = _GLYPHS[letter]
    g = np.array([[c == "1" for c in row] for row in rows], dtype=F32)
    k = max(int(round(height_px / 7)), 1)
    return np.kron(g, np.ones((k, k), F32))

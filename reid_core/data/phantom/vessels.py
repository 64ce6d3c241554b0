"""Pulmonary vascular tree: grown from each hilum, tapering towards the lung periphery.

The tree is built in body units (independent of the pixel size) by growing all
tips of one generation at once, then rasterised by splatting points along the
segments with weight ``π r²`` (the cross-section of a cylinder) and blurring
each radius class by a matching Gaussian, which gives the projected thickness.
"""
from __future__ import annotations

import numpy as np

from reid_core.data.phantom.raster import F32, Grid, blur, points_window, splat
from reid_core.data.phantom.thorax import SIGNS, Thorax

R_MIN = 0.0022
_CLASSES = ((0.0, 0.0042, 0.003, 0.6), (0.0042, 0.009, 0.0062, 0.85), (0.009, 1.0, 0.013, 1.0))
# trunk directions (radians, 0 = lateral, negative = upwards) for the upper, middle and lower lobes
_TRUNKS = (-1.25, -0.75, -0.25, 0.25, 0.75, 1.2, 1.55)


def grow_tree(th: Thorax, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segments ``(p0 (S,2), p1 (S,2), radius (S,))`` of both lungs' vascular trees."""
    pos, direc, rad = [], [], []
    for i in (0, 1):
        hx, hy = th.hilum(i)
        for ang in _TRUNKS:
            a = ang + rng.normal(0, 0.12)
            pos.append((hx, hy + 0.02 * np.sin(a)))
            direc.append((SIGNS[i] * np.cos(a), np.sin(a)))
            rad.append(0.014 * rng.uniform(0.8, 1.2) * (1.1 if abs(ang) < 0.8 else 0.95))
    pos, direc, rad = np.array(pos), np.array(direc), np.array(rad)
    root = pos.copy()
    segs0, segs1, segr = [], [], []
    for gen in range(12):
        if len(pos) == 0:
            break
        turn = rng.normal(0, 0.06, len(pos))
        c, s = np.cos(turn), np.sin(turn)
        direc = np.stack([c * direc[:, 0] - s * direc[:, 1], s * direc[:, 0] + c * direc[:, 1]], axis=1)
        length = rad * rng.uniform(8.0, 13.0, len(pos)) + 0.018
        end = pos + direc * length[:, None]
        if gen >= 1:
            half = pos + direc * (0.5 * length[:, None])
            both = np.concatenate([end, half])
            inside = th.inside_lung(both[:, 0], both[:, 1], margin=0.008)
            ok, ok_half = inside[: len(end)], inside[len(end):] & ~inside[: len(end)]
            end = np.where(ok_half[:, None], half, end)
            ok = ok | ok_half
        else:
            ok = np.ones(len(pos), bool)
        segs0.append(pos[ok])
        segs1.append(end[ok])
        segr.append(rad[ok])
        pos, direc, rad, root_k = end[ok], direc[ok], rad[ok], root[ok]
        grow = rad * 0.8 > R_MIN
        pos, direc, rad, root_k = pos[grow], direc[grow], rad[grow], root_k[grow]
        n = len(pos)
        if n == 0:
            break
        radial = pos - root_k
        radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-6)
        base = direc + 0.3 * radial
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        spread = rng.uniform(0.3, 0.6, (n, 2)) * np.array([1.0, -1.0])
        kids_d, kids_r = [], []
        for k in (0, 1):
            c, s = np.cos(spread[:, k]), np.sin(spread[:, k])
            kids_d.append(np.stack([c * base[:, 0] - s * base[:, 1], s * base[:, 0] + c * base[:, 1]], axis=1))
            kids_r.append(rad * (rng.uniform(0.72, 0.87, n) if k == 0 else rng.uniform(0.58, 0.76, n)))
        pos = np.concatenate([pos, pos])
        direc = np.concatenate(kids_d)
        rad = np.concatenate(kids_r)
        root = np.concatenate([root_k, root_k])
        keep = rad > R_MIN
        pos, direc, rad, root = pos[keep], direc[keep], rad[keep], root[keep]
    return np.concatenate(segs0), np.concatenate(segs1), np.concatenate(segr)


def rasterise_tree(grid: Grid, p0: np.ndarray, p1: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Projected vessel thickness (body units) on ``grid``."""
    out = np.zeros((grid.n, grid.n), F32)
    step = grid.step * 0.5
    seg_len = np.linalg.norm(p1 - p0, axis=1)
    for lo, hi, rep, gain in _CLASSES:
        sel = (radius >= lo) & (radius < hi)
        if not sel.any():
            continue
        a, b, r, ln = p0[sel], p1[sel], radius[sel], seg_len[sel]
        counts = np.maximum(np.ceil(ln / step).astype(np.int64), 1)
        idx = np.repeat(np.arange(len(a)), counts)
        start = np.repeat(np.cumsum(counts) - counts, counts)
        t = (np.arange(counts.sum()) - start + 0.5) / counts[idx]
        pts = a[idx] + (b[idx] - a[idx]) * t[:, None]
        w = gain * np.pi * r[idx] ** 2 * (ln[idx] / counts[idx]) / grid.step ** 2
        acc = splat(grid, pts, w)
        sigma = max(0.8 * rep / grid.step, 0.5)
        win = points_window(grid, pts, (3 * sigma + 2) * grid.step)
        out[win] += blur(acc[win], sigma)
    return out

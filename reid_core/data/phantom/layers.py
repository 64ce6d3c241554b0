"""A patient's canonical attenuation layers, rasterised once and reused by every study.

Attenuation is in units of ``-log(transmission)``. The body is modelled as
soft tissue of normalised thickness ``T`` (1 at the centre of an average chest,
``MU_SOFT`` attenuation); the lungs replace part of that depth with air, the
heart and aorta push the air back out, bones and metal add on top. Layers that
move with breathing (``air``, ``heart``, ``knob``, ``vessels``, ``inner``) are
kept apart from the static ones so a study can warp them cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from reid_core.data.phantom import skeleton
from reid_core.data.phantom.anatomy import PatientAnatomy
from reid_core.data.phantom.devices import draw_marks
from reid_core.data.phantom.raster import F32, Grid, dome, ramp, resample_rows_cols
from reid_core.data.phantom.thorax import RIB_WALL, SIGNS, Thorax
from reid_core.data.phantom.vessels import grow_tree, rasterise_tree

MU_SOFT = 3.0            # attenuation across the full depth of an average chest
DEPTH = 1.1              # average chest depth in body units (≈ 22 cm)
MU_UNIT = MU_SOFT / DEPTH
AIR_MAX = 0.72           # largest share of the chest depth taken by lung
LUNG_RHO = 0.1           # residual density of aerated lung relative to soft tissue
HEART_MAX = 0.8          # share of the lung depth the heart displaces at its centre
VESSEL_BOOST = 4.0


@dataclass
class PatientLayers:
    """Canonical layers of one patient on ``grid`` (all float32 ``(n, n)``)."""

    grid: Grid
    thorax: Thorax
    soft: np.ndarray          # soft tissue (static)
    bone: np.ndarray          # ribs, spine, humeri, healed fractures (static; × bone density)
    girdle: dict[str, np.ndarray]  # clavicles + scapulae per view, built on first use (static; × bone density)
    metal: np.ndarray         # permanent chest-wall metal (static)
    air: np.ndarray           # attenuation removed by lung air (moves)
    heart: np.ndarray         # air displaced by the heart (moves, scales with magnification)
    knob: np.ndarray          # air displaced by the aortic knob / descending aorta (moves, grows with age)
    vessels: np.ndarray       # pulmonary vessels (moves)
    inner: np.ndarray         # trachea, granulomas, leads, parenchymal texture (moves)
    lungs: np.ndarray         # soft lung mask (for findings)

    def girdle_for(self, view: str) -> np.ndarray:
        """Clavicles and scapulae as projected in ``view`` (PA or AP)."""
        if view not in self.girdle:
            g, th = self.grid, self.thorax
            self.girdle[view] = skeleton.clavicles(g, th, view) + skeleton.scapulae(g, th, view)
        return self.girdle[view]


def smooth(a: np.ndarray, sigma: float, grid: Grid) -> np.ndarray:
    """Gaussian smoothing with ``sigma`` in body units, done on a decimated grid for speed."""
    sig_px = sigma / grid.step
    f = max(int(sig_px // 2), 1)
    h, w = a.shape
    mh, mw = -(-h // f) * f, -(-w // f) * f
    pad = np.pad(a, ((0, mh - h), (0, mw - w)), mode="edge")
    small = pad.reshape(mh // f, f, mw // f, f).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, sig_px / f, mode="nearest")
    ry = (np.arange(h, dtype=F32) + 0.5) / f - 0.5
    rx = (np.arange(w, dtype=F32) + 0.5) / f - 0.5
    return resample_rows_cols(small, ry, rx)


def _capsule(grid: Grid, out: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], r: float,
             value: float) -> None:
    """Add ``value × dome`` of a round-ended tube of radius ``r`` from ``p0`` to ``p1``."""
    win = grid.window(min(p0[0], p1[0]) - r, max(p0[0], p1[0]) + r, min(p0[1], p1[1]) - r, max(p0[1], p1[1]) + r)
    y, x = grid.coords(win)
    d = np.array(p1) - np.array(p0)
    t = np.clip(((x - p0[0]) * d[0] + (y - p0[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
    d2 = ((x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2) / (r * r)
    out[win] += (value * dome(d2)).astype(F32)


def soft_tissue(grid: Grid, th: Thorax) -> tuple[np.ndarray, np.ndarray]:
    """Normalised soft-tissue thickness (trunk with rounded shoulders, neck, arms, breasts) and of the chest alone."""
    a = th.anat
    y, x = grid.ys, grid.xs
    ax = np.abs(x)
    lat = np.maximum(th.lateral(y, 0), th.lateral(y, 1))
    w = np.maximum(lat, 0.85 * th.width) + RIB_WALL + a.fat + 0.04 * np.clip(y - 0.3, 0, None)
    chest = dome((x / w) ** 2)
    hx, hy = 0.97 + 0.6 * a.humeral_r, float(np.mean(a.humeral_y))
    w = np.maximum(w, (hx + 0.1) * np.sqrt(np.clip(1.0 - ((y - hy - 0.03) / 0.34) ** 2, 0.0, 1.0)))
    trunk = dome((x / w) ** 2)
    y_top = -1.12 + a.shoulder_slope * np.clip(ax - a.neck_half_width, 0, None)
    y_top = np.minimum(y_top, hy - a.humeral_r - 0.05 + 0.8 * np.clip(ax - hx, 0, None) ** 2)
    trunk *= np.sqrt(ramp(y - y_top - 0.08, 0.16))
    thin = 1.0 - 0.22 * ramp(-0.45 - y, 0.3)
    chest = chest * thin
    trunk *= thin - 0.2 * ramp(-0.5 - y, 0.3) * ramp(ax - a.neck_half_width, 0.2)
    neck = F32(0.6) * dome((x / a.neck_half_width) ** 2) * ramp(-0.2 - y, 0.6)
    t = np.maximum(trunk, neck)
    limbs = np.zeros_like(t)
    for i in (0, 1):
        s = SIGNS[i]
        _capsule(grid, limbs, (s * (hx + 0.03), hy + 0.12), (s * (hx + 0.14), 0.95), 0.14, 0.6)
    t = np.maximum(t, limbs)
    if a.breast > 0:
        for i in (0, 1):
            s = SIGNS[i]
            cx, cy = s * a.breast_u, float(np.mean(a.dome_y)) - 0.1 + a.breast_y
            rx = 0.3 * (0.8 + 0.4 * a.breast)
            win = grid.window(cx - rx, cx + rx, cy - 0.7, cy + 0.3)
            yy, xx = grid.coords(win)
            ry = np.where(yy > cy, 0.17 * (0.8 + 0.45 * a.breast), 0.7)
            d2 = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
            t[win] += (0.16 * a.breast * np.sqrt(dome(d2))).astype(F32)
    return t.astype(F32), chest.astype(F32)


def lung_air(grid: Grid, th: Thorax, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(air attenuation removed, soft lung mask), with the posterior recesses behind the domes."""
    a = th.anat
    win = grid.window(-th.width - 0.1, th.width + 0.1, min(a.apex_y) - 0.1, max(th.cp_y) + 0.35)
    y, x = grid.coords(win)
    edge = 0.7 * grid.step
    mask = th.lung_mask(x, y, 0, edge) + th.lung_mask(x, y, 1, edge)
    prof = smooth(mask, 0.07, grid)
    frac = mask * (0.4 + 0.6 * np.clip(prof * 1.25, 0, 1))
    apex, base = float(np.mean(a.apex_y)), float(np.mean(a.dome_y))
    frac *= 0.6 + 0.4 * np.clip((y - apex) / (base - apex), 0, 1) ** 0.7
    for i in (0, 1):
        u = SIGNS[i] * x
        dia = th.diaphragm(u, i)
        below = y - dia
        rec = np.exp(-np.clip(below, 0, None) / 0.05) * (below > 0)
        rec *= ramp(u - th.medial(y, i) - 0.05, 0.04)
        rec *= ramp(th.lateral(np.minimum(y, th.cp_y[i]), i) - u - 0.03, 0.04)
        frac += F32(0.15) * rec
    air = np.zeros_like(t)
    lungs = np.zeros_like(t)
    air[win] = F32(MU_SOFT * a.body_depth * (1 - LUNG_RHO) * AIR_MAX) * frac * t[win]
    lungs[win] = mask
    return air, lungs


def heart_and_aorta(grid: Grid, th: Thorax, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(air displaced by the heart, air displaced by the aortic knob and descending aorta)."""
    a, h = th.anat, th.heart
    scale = F32(MU_SOFT * a.body_depth * (1 - LUNG_RHO) * AIR_MAX) * t
    heart = np.zeros_like(t)
    r = max(h.a, h.b) * 1.1
    win = grid.window(h.cx - r, h.cx + r, h.cy - r, h.cy + r)
    y, x = grid.coords(win)
    c, s = np.cos(h.tilt), np.sin(h.tilt)
    dx, dy = x - h.cx, y - h.cy
    along, across = s * dx + c * dy, c * dx - s * dy
    lv = 1.0 + a.heart_lobe[1] * np.clip(along / h.a, 0, 1) * np.clip(across / h.b + 0.3, 0, 1)
    main = dome((along / (h.a * lv)) ** 2 + (across / (h.b * lv)) ** 2)
    ra = dome(((x - h.ra_cx) / h.ra_rx) ** 2 + ((y - h.ra_cy) / h.ra_ry) ** 2)
    heart[win] = np.maximum(main, ra) ** 0.55
    knob = np.zeros_like(t)
    kc = (0.07 + a.knob_size, a.knob_y)
    _capsule(grid, knob, (kc[0] - 0.05, kc[1] + 0.005), kc, 0.06, 1.0)
    x_da = 0.05 + 0.5 * a.knob_size
    _capsule(grid, knob, kc, (x_da, float(np.mean(a.dome_y))), 0.045, 0.45)
    return (F32(HEART_MAX) * heart * scale).astype(F32), (np.minimum(knob, 1.0) * scale).astype(F32)


def airway(grid: Grid, th: Thorax) -> np.ndarray:
    """Negative attenuation of the tracheal and main-bronchial air columns."""
    a = th.anat
    out = np.zeros((grid.n, grid.n), F32)
    w = a.trachea_w
    val = -2.0 * MU_UNIT * 2 * w
    win = grid.window(a.trachea_x - 2 * w, a.trachea_x + 2 * w, -grid.extent, a.carina_y)
    y, x = grid.coords(win)
    xc = a.trachea_x - 0.012 * np.exp(-(((y - a.knob_y) / 0.1) ** 2))
    out[win] += (val * dome(((x - xc) / w) ** 2) * ramp(a.carina_y - y, 0.02)).astype(F32)
    car = (float(a.trachea_x), a.carina_y)
    rb = (car[0] - 0.14 * np.sin(0.44), car[1] + 0.14 * np.cos(0.44))
    lb = (car[0] + 0.2 * np.sin(0.8), car[1] + 0.2 * np.cos(0.8))
    _capsule(grid, out, (car[0], car[1] - 0.03), rb, 0.8 * w, val * 0.5)
    _capsule(grid, out, (car[0], car[1] - 0.03), lb, 0.75 * w, val * 0.5)
    return np.maximum(out, val)


def texture(grid: Grid, seed: int, mask: np.ndarray) -> np.ndarray:
    """Faint parenchymal mottling, defined at a fixed physical scale (size-independent)."""
    rng = np.random.default_rng(seed)
    base = ndi.gaussian_filter(rng.standard_normal((72, 72)).astype(F32), 1.0, mode="wrap")
    r = (np.arange(grid.n, dtype=F32) + 0.5) * (72 / grid.n) - 0.5
    return (F32(0.06) * resample_rows_cols(base, r, r) * mask).astype(F32)


def build_layers(anat: PatientAnatomy, n: int, extent: float = 1.2) -> PatientLayers:
    """Rasterise every canonical layer of ``anat`` on an ``n × n`` grid."""
    grid = Grid(n, extent)
    th = Thorax(anat)
    t, chest = soft_tissue(grid, th)
    air, lungs = lung_air(grid, th, chest)
    heart, knob = heart_and_aorta(grid, th, chest)
    marks = draw_marks(grid, th, anat.marks)
    bone = skeleton.ribs(grid, th) + skeleton.spine(grid, th) + skeleton.humeri(grid, th) + marks.bone
    p0, p1, rad = grow_tree(th, np.random.default_rng(anat.vessel_seed))
    vessels = rasterise_tree(grid, p0, p1, rad) * F32(MU_UNIT * (1 - LUNG_RHO) * VESSEL_BOOST * anat.vessel_gain)
    vessels *= np.clip(lungs * 1.2, 0, 1)
    inner = airway(grid, th) + texture(grid, anat.texture_seed, lungs) + marks.inner
    soft = (F32(MU_SOFT * anat.body_depth) * t).astype(F32)
    return PatientLayers(grid=grid, thorax=th, soft=soft, bone=bone.astype(F32), girdle={}, metal=marks.metal,
                         air=air, heart=heart, knob=knob, vessels=vessels.astype(F32), inner=inner.astype(F32),
                         lungs=lungs)

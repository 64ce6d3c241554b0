"""Render one study: compose the patient's layers, warp them into the image, expose and process.

Steps: (1) per-study layer arithmetic on the canonical grid (heart magnification,
findings, breathing stretch of the thoracic contents, devices); (2) one affine
warp into the output frame (rotation, shift, scale, beam tilt); (3) detector:
transmission ``exp(-μt)``, blur, quantum noise, log; (4) display processing:
large-scale equalisation, unsharp masking (hard phantom only), percentile window, gamma and an S-shaped tone curve,
collimation and the side marker. Output: float32 in [0, 1], air dark, bone bright.
"""
from __future__ import annotations

import numpy as np

from reid_core.data.phantom.acquisition import StudySpec
from reid_core.data.phantom.anatomy import PatientAnatomy, aged_density, aged_heart_scale, aged_knob_scale
from reid_core.data.phantom.devices import draw_tubes
from reid_core.data.phantom.findings import finding_effects
from reid_core.data.phantom.layers import PatientLayers
from reid_core.data.phantom.raster import F32, blur, glyph, lowpass, ramp, resample_rows_cols, warp_affine

AP_HEART_GAIN = 0.15   # extra heart magnification in AP per unit of body depth
PA_HEART_GAIN = 0.05   # PA: the heart is near the detector, a shorter source distance magnifies it less
EQ_REF = 1.1           # log-attenuation above which large-scale equalisation compresses (≈ lung level)


def heart_magnification(anat: PatientAnatomy, view: str, sid: float = 1.0) -> float:
    """Projected heart size relative to PA: the heart is anterior, so far from the detector in AP.

    ``sid`` is the source-image distance relative to the standard one (1: exactly the standard phantom);
    a shorter distance magnifies the heart more.
    """
    if view == "AP":
        return 1.0 + AP_HEART_GAIN * anat.body_depth / sid
    return 1.0 if sid == 1.0 else 1.0 + PA_HEART_GAIN * anat.body_depth * (1.0 / sid - 1.0)


def _scale_heart(layers: PatientLayers, sx: float, sy: float, cx: float, cy: float) -> np.ndarray:
    """The heart layer magnified about ``(cx, cy)`` (body units) by ``(sx, sy)``, on its bounding box only."""
    g, h = layers.grid, layers.thorax.heart
    r = max(h.a, h.b) * 1.15 * max(sx, sy, 1.0) + (abs(h.cx - cx) + abs(h.cy - cy)) * max(sx, sy)
    rows, cols = g.window(cx - r, cx + r, cy - r, cy + r)
    c0, r0 = g.index(cx), g.index(cy)
    ri = np.arange(rows.start, rows.stop, dtype=F32)
    ci = np.arange(cols.start, cols.stop, dtype=F32)
    out = np.zeros_like(layers.heart)
    out[rows, cols] = resample_rows_cols(layers.heart, r0 + (ri - r0) / sy, c0 + (ci - c0) / sx)
    return out


def compose(layers: PatientLayers, anat: PatientAnatomy, spec: StudySpec, rng: np.random.Generator) -> np.ndarray:
    """Total attenuation of the study on the canonical grid."""
    g, th = layers.grid, layers.thorax
    fx = finding_effects(g, th, spec.findings, layers.vessels)
    mag = heart_magnification(anat, spec.view, spec.sid) * aged_heart_scale(anat, spec.years)
    h = th.heart
    heart = layers.heart
    sx, sy = mag * fx.heart_scale[0], mag * fx.heart_scale[1]
    if abs(sx - 1) > 1e-4 or abs(sy - 1) > 1e-4:
        heart = _scale_heart(layers, sx, sy, h.cx - 0.1, h.bottom)
    air = layers.air * F32(1.0 + 0.8 * spec.inspiration)
    vessels = layers.vessels
    if fx.opacity is not None:
        air = air * (1.0 - fx.opacity)
        vessels = vessels * (1.0 - 0.7 * fx.opacity)
    if fx.air_gain is not None:
        air = air * (1.0 + fx.air_gain)
    if fx.vessel_mask is not None:
        vessels = vessels * fx.vessel_mask
    knob = layers.knob * F32(min(aged_knob_scale(anat, spec.years), 1.5))
    air_left = np.maximum(air - heart - knob, 0.0)
    # vessels live in the lung that is left in front of / behind the heart and aorta
    vessels = vessels * (F32(0.2) + F32(0.8) * np.minimum(air_left / (air + F32(1e-3)), 1.0))
    inner = layers.inner + vessels - air_left
    if fx.add is not None:
        inner += fx.add * layers.lungs
    if spec.gastric_bubble > 0:
        _gastric_bubble(layers, anat, spec, inner)
    # breathing: stretch the thoracic contents below the apices; obliquity shifts them sideways
    apex = float(np.mean(anat.apex_y))
    ys = (np.arange(g.n, dtype=F32) + 0.5) * F32(g.step) - F32(g.extent)
    src_y = np.where(ys > apex, apex + (ys - apex) / F32(1.0 + spec.inspiration), ys)
    rows = (src_y + g.extent) / g.step - 0.5
    cols = np.arange(g.n, dtype=F32) - F32(spec.obliquity / g.step)
    inner = resample_rows_cols(inner, rows, cols)
    bones = layers.bone + layers.girdle_for(spec.view)
    total = layers.soft * F32(spec.soft_drift) + bones * F32(aged_density(anat, spec.years)) + layers.metal + inner
    if spec.tubes:
        total += draw_tubes(g, th, spec.tubes, rng)
    return np.maximum(total, 0.0)


def _gastric_bubble(layers: PatientLayers, anat: PatientAnatomy, spec: StudySpec, inner: np.ndarray) -> None:
    """Air in the gastric fundus under the left dome; a flat fluid level when upright (PA)."""
    g = layers.grid
    k = spec.gastric_bubble
    cx, cy = anat.dome_u[1] * 0.9, anat.dome_y[1] + 0.1
    rx, ry = 0.08 * k, 0.055 * k
    win = g.window(cx - rx, cx + rx, cy - ry, cy + ry)
    y, x = g.coords(win)
    d2 = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
    val = np.sqrt(np.clip(1 - d2, 0, 1))
    if spec.view == "PA":
        val = val * ramp(cy + 0.2 * ry - y, 0.004)
    inner[win] -= (0.55 * k * val).astype(F32)


def pose(spec: StudySpec, layers: PatientLayers, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Affine map from output ``(row, col)`` to canonical ``(row, col)``."""
    g = layers.grid
    th = np.deg2rad(spec.rotation)
    c, s = np.cos(th), np.sin(th)
    fwd = spec.scale * np.array([[c, -s], [s, c]]) @ np.diag([1.0, spec.aspect])  # canonical xy -> output xy
    inv = np.linalg.inv(fwd)
    k = 2.0 / size
    # output xy = k * (col, row) + (k/2 - 1); canonical xy = inv @ (out - t); canonical idx = xy / step + off
    t = np.array([spec.shift_x, spec.shift_y])
    a_xy = inv * k / g.step                          # d(canonical idx)/d(col,row) in xy order
    b_xy = inv @ (np.full(2, k / 2 - 1.0) - t) / g.step + (g.extent / g.step - 0.5)
    matrix = np.array([[a_xy[1, 1], a_xy[1, 0]], [a_xy[0, 1], a_xy[0, 0]]])  # (row, col) order
    offset = np.array([b_xy[1], b_xy[0]])
    return matrix, offset


def detector(a: np.ndarray, spec: StudySpec, rng: np.random.Generator) -> np.ndarray:
    """Exposure, blur, quantum noise, log and display processing of an attenuation image."""
    size = a.shape[0]
    px = size / 256.0
    trans = np.exp(-F32(spec.kv) * a)
    trans = blur(trans, spec.blur * px) + F32(spec.scatter) * lowpass(trans, max(size // 8, 2))
    sigma = np.sqrt(trans * F32(spec.noise * spec.noise * px * px) + F32(1e-7))
    trans = trans + sigma * rng.standard_normal(trans.shape, dtype=F32)
    log = -np.log(np.maximum(trans, F32(2e-3)))
    low = lowpass(log, max(size // 10, 2))
    log = log - F32(spec.equalize) * np.maximum(low - F32(EQ_REF * spec.kv), 0.0)
    log = unsharp_mask(log, spec.unsharp, spec.unsharp_radius * px)
    sub = log[:: max(size // 64, 1), :: max(size // 64, 1)]
    ref = float(np.percentile(sub, 99.0))
    lo = ref * (0.06 + 0.03 * spec.window[0])
    hi = ref * (1.1 + 0.04 * spec.window[1])
    idx = (np.clip((log - F32(lo)) * F32(4095.0 / max(hi - lo, 1e-3)), 0.0, 4095.0) + F32(0.5)).astype(np.int32)
    d = tone_curve(spec.gamma).take(idx)
    _collimate(d, spec)
    _marker(d, spec)
    return np.clip(d, 0.0, 1.0).astype(F32)


def unsharp_mask(a: np.ndarray, strength: float, radius_px: float) -> np.ndarray:
    """Edge enhancement of vendor processing: ``a + strength·(a − blur(a, radius))``; ``a`` itself at strength 0."""
    if strength <= 0.0 or radius_px <= 0.0:
        return a
    return a + F32(strength) * (a - blur(a, radius_px))


def tone_curve(gamma: float, curve: float = 2.5, n: int = 4096) -> np.ndarray:
    """Display look-up table: gamma, then an S-shaped (tanh) film-like curve, over ``n`` input levels."""
    x = np.linspace(0.0, 1.0, n) ** gamma
    e0, e1 = np.tanh(-curve / 2), np.tanh(curve / 2)
    return ((np.tanh(curve * (x - 0.5)) - e0) / (e1 - e0)).astype(F32)


def _collimate(d: np.ndarray, spec: StudySpec) -> None:
    """Unexposed bands outside the collimator blades (left, right, top, bottom)."""
    if not any(spec.collimation):
        return
    size = d.shape[0]
    idx = np.arange(size, dtype=F32) + 0.5
    lft, rgt, top, bot = (m * size for m in spec.collimation)
    edge = max(size / 256.0, 0.6)
    inside_c = ramp(idx - lft, edge) * ramp(size - rgt - idx, edge)
    inside_r = ramp(idx - top, edge) * ramp(size - bot - idx, edge)
    inside = inside_r[:, None] * inside_c[None, :]
    d *= inside
    d += (1.0 - inside) * F32(spec.collimation_value)


def _marker(d: np.ndarray, spec: StudySpec) -> None:
    """Burn the side marker letter into the image (detector coordinates, unaffected by pose)."""
    size = d.shape[0]
    g = glyph(spec.marker, max(int(0.05 * size), 7))
    h, w = g.shape
    r0 = int(spec.marker_pos[1] * size)
    c0 = int(spec.marker_pos[0] * size) - w // 2
    r0, c0 = min(max(r0, 0), size - h), min(max(c0, 0), size - w)
    np.maximum(d[r0:r0 + h, c0:c0 + w], F32(0.97) * g, out=d[r0:r0 + h, c0:c0 + w])


def render_study(layers: PatientLayers, anat: PatientAnatomy, spec: StudySpec, size: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The displayed image (``size × size`` float32 in [0, 1]) of one study."""
    a = compose(layers, anat, spec, rng)
    matrix, offset = pose(spec, layers, size)
    img = warp_affine(a, matrix, offset, (size, size), fill=None)
    return detector(img, spec, rng)

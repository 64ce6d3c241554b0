"""Foreign bodies and focal marks: permanent patient marks and transient ICU lines and tubes.

Permanent marks (fixed per patient) are split by where they live: metal on or
in the chest wall (sternotomy wires, clips, pacemaker generator) is static,
marks inside the thoracic cavity (granulomas, pacemaker leads) move with
breathing, and healed fractures belong to the bone layer. Transient devices
(ET/NG tubes, central lines, ECG electrodes) are drawn per study.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from reid_core.data.phantom.anatomy import MARK_KINDS, Mark
from reid_core.data.phantom.raster import F32, Grid, draw_lines, ramp
from reid_core.data.phantom.registry import registrar
from reid_core.data.phantom.thorax import SIGNS, Thorax

TUBE_KINDS: tuple[str, ...] = ("et_tube", "ng_tube", "central_line", "ecg_leads")


@dataclass
class MarkLayers:
    """Attenuation added by the permanent marks: ``metal`` (static), ``bone`` (static), ``inner`` (moves)."""

    metal: np.ndarray
    bone: np.ndarray
    inner: np.ndarray


def chaikin(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Smooth a polyline by corner cutting (keeps both end points)."""
    p = np.asarray(points, dtype=np.float64)
    for _ in range(iterations):
        q = 0.75 * p[:-1] + 0.25 * p[1:]
        r = 0.25 * p[:-1] + 0.75 * p[1:]
        p = np.concatenate([p[:1], np.stack([q, r], axis=1).reshape(-1, 2), p[-1:]])
    return p


def _blob(grid: Grid, out: np.ndarray, cx: float, cy: float, rx: float, ry: float, value: float,
          angle: float = 0.0, power: float = 2.0, edge: float = 0.08) -> None:
    """Add a filled (super-)ellipse with a soft edge."""
    r = max(rx, ry) * 1.5
    win = grid.window(cx - r, cx + r, cy - r, cy + r)
    y, x = grid.coords(win)
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = x - cx, y - cy
    u, v = (c * dx + s * dy) / rx, (-s * dx + c * dy) / ry
    d = (np.abs(u) ** power + np.abs(v) ** power) ** (1.0 / power)
    out[win] += (value * ramp(1.0 - d, edge)).astype(F32)


def _ellipse_path(cx: float, cy: float, rx: float, ry: float, angle: float, k: int = 28) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, k)
    c, s = np.cos(angle), np.sin(angle)
    x, y = rx * np.cos(t), ry * np.sin(t)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


MarkDrawer = Callable[[Grid, Thorax, Mark, MarkLayers], None]
MARK_DRAWERS: dict[str, MarkDrawer] = {}


_draws = registrar(MARK_DRAWERS, MARK_KINDS, "mark drawer")  # @_draws(kind): grid, thorax, mark, layers (adds to them)


def draw_marks(grid: Grid, th: Thorax, marks: tuple[Mark, ...]) -> MarkLayers:
    """Rasterise a patient's permanent marks (each kind's drawer from :data:`MARK_DRAWERS`)."""
    n = grid.n
    layers = MarkLayers(np.zeros((n, n), F32), np.zeros((n, n), F32), np.zeros((n, n), F32))
    for m in marks:
        MARK_DRAWERS[m.kind](grid, th, m, layers)
    return layers


@_draws("granuloma")
def _granuloma(grid: Grid, th: Thorax, m: Mark, layers: MarkLayers) -> None:
    _blob(grid, layers.inner, m.x, m.y, m.size, m.size, 0.55, edge=0.35)


@_draws("rib_fracture")
def _rib_fracture(grid: Grid, th: Thorax, m: Mark, layers: MarkLayers) -> None:
    i = 0 if m.x < 0 else 1
    px, py = th.rib_point(m.param, i, m.y)
    u = abs(px)
    slope = float(th.rib_arch_slope(np.array(u), th.rib_kappa(np.array(float(m.param)))))
    ang = np.arctan(slope) * SIGNS[i]
    half = 0.5 * th.anat.rib_thickness * th.anat.rib_spacing
    _blob(grid, layers.bone, px, py, 0.035 * m.size, half * 1.5, 0.16, angle=ang, edge=0.5)
    _blob(grid, layers.bone, px, py, 0.004, half * 1.2, 0.12, angle=ang, edge=0.6)


@_draws("sternotomy")
def _sternotomy(grid: Grid, th: Thorax, m: Mark, layers: MarkLayers) -> None:
    wires = []
    for k in range(m.param):
        cy = m.y + k * m.size
        cx = m.x + np.sin(m.angle) * k * m.size
        wires.append(_ellipse_path(cx, cy, 0.024, 0.009, m.angle + 0.08 * np.sin(3.1 * k)))
        wires.append(np.array([[cx + 0.024, cy], [cx + 0.04, cy + 0.006 * np.cos(k)]]))
    draw_lines(grid, wires, 0.003, 1.6, out=layers.metal)


@_draws("clips")
def _clips(grid: Grid, th: Thorax, m: Mark, layers: MarkLayers) -> None:
    strokes = []
    for k in range(m.param):
        a = m.angle + 1.3 * k
        cx = m.x + m.size * 0.5 * np.cos(a * 2.1)
        cy = m.y + m.size * 0.5 * np.sin(a * 1.7)
        d1 = np.array([np.cos(a), np.sin(a)]) * 0.02
        d2 = np.array([np.cos(a + 0.35), np.sin(a + 0.35)]) * 0.02
        c = np.array([cx, cy])
        strokes += [np.stack([c, c + d1]), np.stack([c, c + d2])]
    draw_lines(grid, strokes, 0.0028, 2.0, out=layers.metal)


@_draws("pacemaker")
def _pacemaker(grid: Grid, th: Thorax, m: Mark, layers: MarkLayers) -> None:
    """Generator can in the infraclavicular pocket and one or two transvenous leads."""
    s = 1.0 if m.x > 0 else -1.0
    a, b = 0.1 * m.size, 0.07 * m.size
    _blob(grid, layers.metal, m.x, m.y, a, b, 2.6, angle=m.angle, power=4.0, edge=0.06)
    _blob(grid, layers.metal, m.x - s * 0.02, m.y - 0.01, a * 0.6, b * 0.55, 0.5, angle=m.angle, power=4.0)
    hx, hy = m.x - s * a * 0.8, m.y - b * 0.9
    _blob(grid, layers.metal, hx, hy, 0.035, 0.022, 0.9, angle=m.angle, power=4.0)
    h = th.heart
    ax, ay = h.apex
    cl_y = th.anat.clavicle_y[0 if s < 0 else 1]
    base = [[hx, hy], [hx - s * 0.05, hy - 0.06], [s * 0.28, cl_y + 0.06], [s * 0.1, cl_y + 0.12],
            [-0.06, -0.3], [0.5 * (h.ra_cx + h.cx) - 0.02, h.ra_cy - 0.05]]
    leads = [chaikin(np.array(base + [[h.cx, h.bottom - 0.1], [ax - 0.04, ay - 0.02]]))]
    if m.param > 1:
        leads.append(chaikin(np.array(base + [[h.ra_cx + 0.02, h.ra_cy - 0.18], [h.ra_cx + 0.07, h.ra_cy - 0.22]])))
    draw_lines(grid, leads, 0.0035, 1.4, out=layers.inner)


def draw_tubes(grid: Grid, th: Thorax, tubes: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """Transient ICU devices of one study (endotracheal/nasogastric tubes, central line, ECG leads)."""
    a = th.anat
    out = np.zeros((grid.n, grid.n), F32)
    top = -grid.extent
    for kind in tubes:
        if kind == "et_tube":
            tip = a.carina_y - rng.uniform(0.05, 0.14)
            start = [a.trachea_x + rng.normal(0, 0.03), top]
            path = chaikin(np.array([start, [a.trachea_x, -0.8], [a.trachea_x, tip]]))
            draw_lines(grid, [path], 0.016, 0.05, out=out)
            draw_lines(grid, [path + np.array([0.009, 0.0])], 0.0028, 1.1, out=out)
        elif kind == "ng_tube":
            dl = a.dome_y[1]
            pts = [[0.02 + rng.normal(0, 0.02), top], [0.03, -0.6], [0.04 + a.spine_x, 0.0], [0.08, dl + 0.02],
                   [0.25 + rng.normal(0, 0.03), dl + 0.12],
                   [0.35 + rng.normal(0, 0.04), dl + 0.2 + rng.normal(0, 0.04)]]
            draw_lines(grid, [chaikin(np.array(pts))], 0.005, 1.0, out=out)
        elif kind == "central_line":
            tip = [-0.05 + rng.normal(0, 0.015), -0.28 + rng.normal(0, 0.04)]
            if rng.random() < 0.6:  # right internal jugular
                pts = [[-0.22, top], [-0.16, -0.85], [-0.09, -0.6], tip]
            else:  # left subclavian
                pts = [[0.75, -0.62], [0.45, -0.56], [0.15, -0.48], [0.0, -0.38], tip]
            draw_lines(grid, [chaikin(np.array(pts))], 0.0035, 0.9, out=out)
        elif kind == "ecg_leads":
            for k in range(int(rng.integers(3, 6))):
                ex = rng.uniform(-0.9, 0.9)
                ey = rng.uniform(-0.75, 0.6)
                _blob(grid, out, ex, ey, 0.03, 0.03, 0.12, edge=0.2)
                _blob(grid, out, ex, ey, 0.007, 0.007, 1.6, edge=0.4)
                far = [np.sign(ex + 1e-3) * 1.3, ey + rng.uniform(-0.5, 0.5)]
                mid = [(ex + far[0]) / 2, (ey + far[1]) / 2 + rng.normal(0, 0.15)]
                draw_lines(grid, [chaikin(np.array([[ex, ey], mid, far]))], 0.0025, 0.7, out=out)
    return out

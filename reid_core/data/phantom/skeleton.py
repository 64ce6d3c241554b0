"""Bone layers of a patient: ribs, spine, clavicles, scapulae and humeri (attenuation units).

Ribs are drawn from a continuous *level field*: every pixel gets the (fractional)
index of the rib it lies on, from the patient's segment table and rib arch, so
a whole rib cage costs a handful of vectorised operations instead of one
polyline per rib. Values are line integrals of bone attenuation before the
patient's bone density is applied.
"""
from __future__ import annotations

import numpy as np

from reid_core.data.phantom.raster import F32, Grid, dome, ramp, tube_profile
from reid_core.data.phantom.thorax import FIRST_LEVEL, RIB_WALL, SIGNS, Thorax

POSTERIOR_RIB = 0.19
ANTERIOR_RIB = 0.09


def _side_window(grid: Grid, i: int, y0: float, y1: float, u1: float) -> tuple[slice, slice]:
    x0, x1 = (-u1, 0.0) if i == 0 else (0.0, u1)
    return grid.window(x0, x1, y0, y1)


def _rib_ends(th: Thorax, i: int) -> np.ndarray:
    """Lateral end ``u`` of each posterior rib level (the anterior rib starts there)."""
    a = th.anat
    levels = th.rib_levels(i)
    ks = np.arange(FIRST_LEVEL, FIRST_LEVEL + len(levels))
    ends = th.lateral(levels + 0.13, i) + RIB_WALL * 0.6
    ends = np.where(ks == 1, np.minimum(ends, a.apex_u[i] + 0.13), ends)
    ends = np.where(ks == 2, np.minimum(ends, a.apex_u[i] + 0.25), ends)
    ends = np.where(ks == 11, 0.6 * ends, np.where(ks >= 12, 0.4 * ends, ends))
    return np.where((ks < 1) | (ks > 12), 0.0, ends)


def _kappa(th: Thorax, phi: np.ndarray) -> np.ndarray:
    return th.rib_kappa(phi)


def ribs(grid: Grid, th: Thorax) -> np.ndarray:
    """Posterior ribs (dense, sharp) and anterior ribs (fainter, wider) of both sides."""
    a = th.anat
    out = np.zeros((grid.n, grid.n), F32)
    ks = np.arange(FIRST_LEVEL, FIRST_LEVEL + len(th.levels), dtype=np.float64)
    for i in (0, 1):
        levels = th.rib_levels(i)
        ends = _rib_ends(th, i)
        win = _side_window(grid, i, a.apex_y[i] - 0.1, 1.0, th.width + 0.1)
        y, x = grid.coords(win)
        u = SIGNS[i] * x
        phi = th.phase(y - th.rib_arch(u, a.rib_curvature), levels)
        kap = _kappa(th, phi)
        phi = th.phase(y - th.rib_arch(u, kap), levels)
        k = np.rint(phi)
        kk = np.clip(k - FIRST_LEVEL, 1, len(levels) - 2).astype(np.int64)
        spacing = ((levels[kk + 1] - levels[kk - 1]) / 2).astype(F32)
        widths = np.ones(len(levels), F32)
        widths[1 - FIRST_LEVEL:15 - FIRST_LEVEL] = a.rib_widths[i]
        half = F32(0.5 * a.rib_thickness) * spacing * widths[kk]
        cos = 1.0 / np.sqrt(1.0 + th.rib_arch_slope(u, kap) ** 2)
        q = (phi - k) * spacing * cos / half
        u_end = np.interp(phi, ks, ends).astype(F32)
        valid = (k >= 1) & (k <= 12)
        post = tube_profile(q) * ramp(u - a.spine_w * 0.8, 0.02) * ramp(u_end - u, 0.012) * valid
        # anterior ribs: from each posterior rib's lateral end, running medially and downwards
        y_end = levels + th.rib_arch(ends, _kappa(th, ks))
        m = a.rib_anterior_slope * np.clip((ks - 0.5) / 3.0, 0.25, 1.0)
        dw = np.clip(th.width - ends, 0.0, None)
        table = y_end - m * dw - 0.35 * dw * dw
        table = np.maximum.accumulate(np.where(np.isfinite(table), table, -9.0))
        ref = th.width - u
        table = table + 1e-6 * ks
        phia = np.interp(y - F32(a.rib_anterior_slope) * ref - F32(0.35) * ref * ref, table, ks).astype(F32)
        m_pix = np.interp(phia, ks, m).astype(F32)
        phia = np.interp(y - m_pix * ref - F32(0.35) * ref * ref, table, ks).astype(F32)
        ka = np.rint(phia)
        kka = np.clip(ka - FIRST_LEVEL, 1, len(levels) - 2).astype(np.int64)
        sp_a = ((table[kka + 1] - table[kka - 1]) / 2).astype(F32)
        qa = (phia - ka) * sp_a / (F32(0.34) * sp_a + F32(0.012))
        cc = F32(a.rib_cc_u) + F32(0.012) * np.clip(ka, 1, 12)
        ant = dome(qa * qa) * ramp(u - cc, 0.05) * ramp(np.interp(phia, ks, ends).astype(F32) - u, 0.015)
        ant *= (ka >= 1) & (ka <= 10)
        out[win] += F32(POSTERIOR_RIB) * post + F32(ANTERIOR_RIB) * ant
    return out


def spine(grid: Grid, th: Thorax) -> np.ndarray:
    """Vertebral bodies with disc spaces, endplates, pedicles, spinous and transverse processes."""
    a = th.anat
    win = grid.window(a.spine_x - 0.25, a.spine_x + 0.25, -grid.extent, grid.extent)
    y, x = grid.coords(win)
    xc = th.spine_center(y)
    grow = np.clip((y + 0.7) / 1.4, -0.35, 1.3)
    w = F32(a.spine_w) * (0.85 + 0.3 * grow)
    dx = (x - xc) / w
    phi = th.phase(y, th.levels) + F32(0.35)
    f = phi - np.floor(phi)

    def circ(c: float) -> np.ndarray:
        return ((f - c + 0.5) % 1.0) - 0.5

    dd = circ(0.07)
    body = np.sqrt(dome(dx * dx)) * (1.0 - 0.5 * np.exp(-((dd / 0.05) ** 2)))
    endplate = np.exp(-(((np.abs(dd) - 0.09) / 0.022) ** 2)) * dome(dx * dx)
    dp = circ(0.4)
    rho = np.sqrt(((np.abs(dx) - 0.68) / 0.16) ** 2 + (dp / 0.17) ** 2)
    pedicle = np.exp(-(((rho - 1.0) / 0.35) ** 2))
    ds = circ(0.78)
    spinous = np.exp(-((dx / 0.13) ** 2 + (ds / 0.16) ** 2))
    transverse = np.exp(-(((np.abs(dx) - 1.3) / 0.35) ** 2 + (dp / 0.11) ** 2))
    val = 0.12 * body + 0.07 * endplate + 0.09 * pedicle + 0.06 * spinous + 0.06 * transverse
    out = np.zeros((grid.n, grid.n), F32)
    out[win] = val.astype(F32)
    return out


def clavicles(grid: Grid, th: Thorax, view: str) -> np.ndarray:
    """Both clavicles; in AP they project higher and more horizontal."""
    a = th.anat
    out = np.zeros((grid.n, grid.n), F32)
    for i in (0, 1):
        y_m = a.clavicle_y[i] - (0.06 if view == "AP" else 0.0)
        rise = a.clavicle_rise[i] * (0.35 if view == "AP" else 1.0)
        u_m, u_l = 0.055, a.clavicle_u[i]
        win = _side_window(grid, i, y_m - rise - 0.12, y_m + 0.1, u_l + 0.05)
        y, x = grid.coords(win)
        u = SIGNS[i] * x
        t = (u - u_m) / (u_l - u_m)
        yc = y_m - rise * t - a.clavicle_bend[i] * np.sin(2 * np.pi * t)
        slope = (-rise - a.clavicle_bend[i] * 2 * np.pi * np.cos(2 * np.pi * t)) / (u_l - u_m)
        half = a.clavicle_w * (1.3 - 0.6 * t + 0.8 * np.clip(t, 0, 1) ** 5)
        q = (y - yc) / np.sqrt(1.0 + slope * slope) / half
        prof = tube_profile(q, cortex=0.75) * ramp(t, 0.04) * ramp(1.0 - t, 0.03)
        out[win] += F32(0.5) * prof
    return out


def _edge_dist(x: np.ndarray, y: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Signed distance to the line p→q (positive on the left of the direction)."""
    d = q - p
    n = np.array([-d[1], d[0]]) / np.hypot(*d)
    return (x - p[0]) * n[0] + (y - p[1]) * n[1]


def scapulae(grid: Grid, th: Thorax, view: str) -> np.ndarray:
    """Scapular blades: lateral to the lungs in PA, rotated over the upper lungs in AP."""
    a = th.anat
    out = np.zeros((grid.n, grid.n), F32)
    for i in (0, 1):
        s = SIGNS[i]
        if view == "AP":
            sup, inf, gle = (0.40, -0.76), (0.56, -0.10), (0.88, -0.62)
        else:
            sup, inf, gle = (0.55, -0.78), (0.78, -0.04), (0.90, -0.62)
        g = np.array([s * gle[0], gle[1]])
        k = a.scapula_size[i]
        S = g + k * (np.array([s * sup[0], sup[1]]) - g)
        I = g + k * (np.array([s * inf[0], inf[1]]) - g)
        pts = np.stack([S, I, g])
        win = grid.window(pts[:, 0].min() - 0.1, pts[:, 0].max() + 0.1, pts[:, 1].min() - 0.15, pts[:, 1].max() + 0.05)
        y, x = grid.coords(win)
        orient = np.sign(_edge_dist(g[0], g[1], S, I)) or 1.0
        e1 = orient * _edge_dist(x, y, S, I)
        e2 = orient * _edge_dist(x, y, I, g)
        e3 = orient * _edge_dist(x, y, g, S)
        plate = ramp(e1, 0.01) * ramp(e2, 0.01) * ramp(e3, 0.02)
        lateral = np.exp(-((e2 - 0.018) / 0.016) ** 2) * ramp(e1, 0.02) * ramp(e3, 0.04)
        medial = np.exp(-((e1 - 0.006) / 0.008) ** 2) * ramp(e2, 0.02) * ramp(e3, 0.04)
        sp0 = S + 0.25 * (I - S)
        acr = g + np.array([-s * 0.03, -0.12])
        ridge = np.abs(_edge_dist(x, y, sp0, acr))
        along = ((x - sp0[0]) * (acr[0] - sp0[0]) + (y - sp0[1]) * (acr[1] - sp0[1])) / np.sum((acr - sp0) ** 2)
        spine_ridge = np.exp(-((ridge / 0.022) ** 2)) * ramp(along, 0.05) * ramp(1.05 - along, 0.05)
        glen = np.exp(-(((x - g[0]) / 0.03) ** 2 + ((y - g[1]) / 0.065) ** 2))
        cora = np.exp(-(((x - g[0] + s * 0.1) / 0.03) ** 2 + ((y - g[1] + 0.04) / 0.025) ** 2))
        val = 0.13 * plate + 0.3 * lateral + 0.16 * medial + 0.16 * spine_ridge + 0.3 * glen + 0.2 * cora
        out[win] += val.astype(F32)
    return out


def humeri(grid: Grid, th: Thorax) -> np.ndarray:
    """Humeral heads at the top corners, with the proximal shafts running down and out."""
    a = th.anat
    out = np.zeros((grid.n, grid.n), F32)
    r = a.humeral_r
    for i in (0, 1):
        s = SIGNS[i]
        c = np.array([s * (0.97 + 0.6 * r), a.humeral_y[i]])
        end = c + np.array([s * 0.3, 1.1])
        win = grid.window(c[0] - 0.35, c[0] + 0.35, c[1] - r - 0.05, grid.extent)
        y, x = grid.coords(win)
        d = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2) / r
        head = tube_profile(d, cortex=0.5)
        dist = np.abs(_edge_dist(x, y, c, end)) / 0.055
        along = ((x - c[0]) * (end[0] - c[0]) + (y - c[1]) * (end[1] - c[1])) / np.sum((end - c) ** 2)
        shaft = tube_profile(dist, cortex=0.8) * ramp(along - 0.1, 0.06)
        out[win] += (0.42 * np.maximum(head, shaft)).astype(F32)
    return out

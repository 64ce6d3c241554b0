"""Analytic outlines of a patient's thorax: lung borders, diaphragm, mediastinum, heart and rib levels.

The outlines are closed-form functions of a :class:`PatientAnatomy`, so layers,
findings and marks can all ask "is this point in the right lung?" or "where
is rib 7?" without rasterising anything. Side index ``i``: 0 = patient right
(image left, ``x < 0``), 1 = patient left; ``u = ±x`` is the distance from the
midline towards that side.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid_core.data.phantom.anatomy import PatientAnatomy
from reid_core.data.phantom.raster import F32, ramp

SIGNS = (-1.0, 1.0)
RIB_WALL = 0.035          # rib + intercostal muscle thickness outside the lung
FIRST_LEVEL = -8          # cervical levels in the segment table
LAST_LEVEL = 20           # lumbar levels
ARCH_POWER = 2.6          # shape of the posterior rib arch


@dataclass(frozen=True)
class HeartShape:
    """Tilted-ellipse cardiac silhouette plus a right-atrial lobe (PA, reference inspiration)."""

    cx: float
    cy: float
    a: float        # semi-axis along the long (base-to-apex) axis
    b: float
    tilt: float
    ra_cx: float
    ra_cy: float
    ra_rx: float
    ra_ry: float

    @property
    def bottom(self) -> float:
        return self.cy + float(np.hypot(self.a * np.cos(self.tilt), self.b * np.sin(self.tilt)))

    @property
    def apex(self) -> tuple[float, float]:
        """Approximate cardiac apex (lower lateral tip of the long axis)."""
        return self.cx + 0.85 * self.a * np.sin(self.tilt), self.cy + 0.85 * self.a * np.cos(self.tilt)


class Thorax:
    """Closed-form thoracic outlines of one patient (see module docstring for conventions)."""

    def __init__(self, anat: PatientAnatomy) -> None:
        self.anat = anat
        self.width = anat.thorax_half_width
        self.cp_y = tuple(anat.dome_y[i] + anat.cp_drop[i] for i in (0, 1))
        self.mid_y = tuple(anat.apex_y[i] + 0.72 * (self.cp_y[i] - anat.apex_y[i]) for i in (0, 1))
        self.levels = self._segment_table()
        a = anat
        self._medial_y = [-1.3, -0.68, -0.5, float(np.mean(a.hilum_y)), float(np.mean(a.dome_y)), 1.3]
        self._medial_u = ([0.06, a.trachea_w + 0.035, a.mediastinum_u, a.mediastinum_u + 0.012, 0.075, 0.075],
                          [0.06, a.trachea_w + 0.03, 0.6 * a.mediastinum_u + 0.03, 0.11, 0.075, 0.075])
        self.heart = self._heart()

    # --- lung borders -------------------------------------------------------------------------
    def lateral(self, y: np.ndarray, i: int) -> np.ndarray:
        """Lateral lung border ``u`` at heights ``y`` (negative above the apex)."""
        a = self.anat
        y = np.asarray(y, F32)
        y_ap, u_ap, p = a.apex_y[i], a.apex_u[i], a.apex_roundness[i]
        y_m, y_cp = self.mid_y[i], self.cp_y[i]
        t = np.clip((y_m - y) / (y_m - y_ap), 0.0, 1.0)
        upper = u_ap + (self.width - u_ap) * (1.0 - t**p) ** (1.0 / p)
        lower = self.width - a.wall_bulge[i] * ((y - y_m) / (y_cp - y_m)) ** 2
        out = np.where(y < y_m, upper, lower)
        return np.where(y < y_ap, u_ap - 4.0 * (y_ap - y), out).astype(F32)

    def apical(self, u: np.ndarray, i: int) -> np.ndarray:
        """Upper lung border (apical dome falling towards the trachea)."""
        a = self.anat
        return (a.apex_y[i] + 1.6 * np.clip(a.apex_u[i] - np.asarray(u, F32), 0.0, None) ** 2).astype(F32)

    def diaphragm(self, u: np.ndarray, i: int) -> np.ndarray:
        """Diaphragm dome height under the lung at ``u`` (meets the lateral wall at the CP angle)."""
        a = self.anat
        u = np.asarray(u, F32)
        du = u - a.dome_u[i]
        w_cp = self.width - a.wall_bulge[i]
        k_l = a.cp_drop[i] / max(w_cp - a.dome_u[i], 0.1) ** 2
        return (a.dome_y[i] + np.where(du > 0, k_l, 0.9) * du * du).astype(F32)

    def medial(self, y: np.ndarray, i: int) -> np.ndarray:
        """Medial lung border: trachea at the top, mediastinum, paraspinal line at the base."""
        y = np.asarray(y, F32)
        out = np.interp(y, self._medial_y, self._medial_u[i]).astype(F32)
        if i == 1:  # main pulmonary artery segment below the aortic knob
            out = out + F32(0.035) * np.exp(-(((y - (self.anat.knob_y + 0.16)) / 0.045) ** 2)).astype(F32)
        return out

    def lung_mask(self, x: np.ndarray, y: np.ndarray, i: int, edge: float = 0.01) -> np.ndarray:
        """Soft mask of lung ``i`` (``x`` of shape (1, w) and ``y`` of shape (h, 1), or matching arrays)."""
        u = SIGNS[i] * np.asarray(x, F32)
        y = np.asarray(y, F32)
        m = ramp(u - self.medial(y, i), edge) * ramp(self.lateral(y, i) - u, edge)
        m *= ramp(y - self.apical(u, i), edge)
        m *= ramp(self.diaphragm(u, i) - y, edge)
        return m

    def inside_lung(self, x: np.ndarray, y: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Boolean: point in either lung, at least ``margin`` inside its border."""
        x, y = np.asarray(x, F32), np.asarray(y, F32)
        inside = np.zeros(np.broadcast(x, y).shape, bool)
        for i in (0, 1):
            u = SIGNS[i] * x
            inside |= ((u > self.medial(y, i) + margin) & (u < self.lateral(y, i) - margin)
                       & (y > self.apical(u, i) + margin) & (y < self.diaphragm(u, i) - margin))
        return inside

    # --- ribs and vertebrae ---------------------------------------------------------------------
    def _segment_table(self) -> np.ndarray:
        """Heights of the vertebral/rib levels ``FIRST_LEVEL..LAST_LEVEL`` at the spine (rib 1 = level 1)."""
        a = self.anat
        ks = np.arange(FIRST_LEVEL, LAST_LEVEL + 1)
        sp = a.rib_spacing * (1.0 + a.rib_spacing_growth * np.clip(ks - 1, 0, 13))
        sp = np.where(ks < 1, 0.8 * a.rib_spacing, sp)
        y1 = float(np.mean(a.apex_y)) + 0.04 + a.rib_top
        cum = np.concatenate([[0.0], np.cumsum(sp[:-1])])
        return (y1 + cum - cum[ks == 1][0]).astype(np.float64)

    def rib_levels(self, i: int) -> np.ndarray:
        """Posterior-rib heights at the spine for side ``i``, with the patient's per-rib offsets."""
        ks = np.arange(FIRST_LEVEL, LAST_LEVEL + 1)
        off = np.zeros(len(ks))
        sel = (ks >= 1) & (ks <= 14)
        off[sel] = np.asarray(self.anat.rib_offsets[i])[ks[sel] - 1]
        return self.levels + off

    def phase(self, yflat: np.ndarray, table: np.ndarray) -> np.ndarray:
        """Continuous level index (1.0 = rib/vertebra 1) of flattened heights ``yflat``."""
        ks = np.arange(FIRST_LEVEL, LAST_LEVEL + 1, dtype=np.float64)
        return np.interp(yflat, table, ks).astype(F32)

    def rib_kappa(self, phi: np.ndarray) -> np.ndarray:
        """Arch curvature of the rib at level ``phi`` (upper ribs are more curved)."""
        k0 = self.anat.rib_curvature
        return (k0 * (1.0 + 0.15 * np.exp(-np.clip(phi - 1.0, 0.0, None) / 1.5))).astype(F32)

    def rib_arch(self, u: np.ndarray, kappa: np.ndarray | float) -> np.ndarray:
        """Drop of a posterior rib below its spinal height at distance ``u`` from the midline.

        Nearly flat (slightly rising) next to the spine, curving down ever more steeply
        towards the lateral wall.
        """
        t = np.clip(np.asarray(u, F32) / self.width, 0.0, None)
        rise = 0.025 * np.sin(np.pi * np.clip(t / 0.5, 0.0, 1.0))
        return (F32(0.55) * kappa * t**ARCH_POWER - rise).astype(F32)

    def rib_arch_slope(self, u: np.ndarray, kappa: np.ndarray | float) -> np.ndarray:
        """``d(arch)/du``."""
        w = self.width
        t = np.clip(np.asarray(u, F32) / w, 0.0, None)
        drise = 0.025 * np.pi / 0.5 * np.cos(np.pi * t / 0.5) * (t < 0.5)
        return ((F32(0.55) * kappa * ARCH_POWER * t ** (ARCH_POWER - 1) - drise) / w).astype(F32)

    def rib_point(self, rib: int, i: int, frac: float) -> tuple[float, float]:
        """``(x, y)`` on posterior rib ``rib`` of side ``i``, ``frac`` of the way from spine to wall."""
        a = self.anat
        y0 = float(self.rib_levels(i)[rib - FIRST_LEVEL])
        kappa = self.rib_kappa(np.array(float(rib)))
        u0 = a.spine_w
        u_end = float(self.lateral(np.array(y0 + 0.15), i)) + RIB_WALL * 0.5
        u = u0 + frac * (u_end - u0)
        return SIGNS[i] * u, y0 + float(self.rib_arch(np.array(u), kappa))

    def spine_center(self, y: np.ndarray) -> np.ndarray:
        """Midline of the vertebral column (with the patient's scoliosis)."""
        a = self.anat
        phase = np.pi * (np.asarray(y, F32) + 0.75) / 1.5 + a.scoliosis_phase
        return (a.spine_x + a.scoliosis * np.sin(phase)).astype(F32)

    # --- heart ----------------------------------------------------------------------------------
    def _heart(self) -> HeartShape:
        a = self.anat
        width = a.ctr * 2.0 * self.width
        hw = width / 2.0
        s, c = np.sin(a.heart_tilt), np.cos(a.heart_tilt)
        e = 1.0 + a.heart_elongation
        b = hw / np.sqrt((e * s) ** 2 + c * c)
        big = e * b
        hv = np.sqrt((big * c) ** 2 + (b * s) ** 2)
        cx = width * (0.5 - a.heart_right_frac)
        cy = float(np.mean(a.dome_y)) + 0.04 - hv
        ra_rx = 0.085 + a.heart_lobe[0]
        return HeartShape(cx=float(cx), cy=float(cy), a=float(big), b=float(b), tilt=float(a.heart_tilt),
                          ra_cx=float(cx - hw + ra_rx), ra_cy=float(cy + 0.2 * hv),
                          ra_rx=float(ra_rx), ra_ry=float(0.8 * hv))

    def in_heart(self, x: float, y: float, margin: float = 0.0) -> bool:
        """Whether a point lies within the (PA) cardiac silhouette, grown by ``margin``."""
        h = self.heart
        c, s = np.cos(h.tilt), np.sin(h.tilt)
        dx, dy = x - h.cx, y - h.cy
        along, across = s * dx + c * dy, c * dx - s * dy
        main = (along / (h.a + margin)) ** 2 + (across / (h.b + margin)) ** 2 < 1
        ra = ((x - h.ra_cx) / (h.ra_rx + margin)) ** 2 + ((y - h.ra_cy) / (h.ra_ry + margin)) ** 2 < 1
        return bool(main or ra or y > h.bottom - 0.05 and abs(x - h.cx) < h.b)

    def hilum(self, i: int) -> tuple[float, float]:
        """Root point of the pulmonary vessels of lung ``i``."""
        a = self.anat
        u = a.mediastinum_u + 0.02 if i == 0 else 0.1
        return SIGNS[i] * u, a.hilum_y[i]

"""Longitudinal disease: which finding a patient develops, from which study on, how it evolves, and how it looks.

About a third of patients develop one finding (cardiomegaly, pleural effusion,
consolidation, nodule/mass, pneumothorax or atelectasis; cardiomegaly sometimes
with a later effusion). Its place and shape are fixed per patient; only its
severity changes from study to study. Acute findings may resolve and then stay
resolved; chronic ones persist and progress. Labels use the ChestX-ray14 names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from reid_core.data.phantom.raster import F32, Grid, dome, ramp, resample_rows_cols
from reid_core.data.phantom.registry import registrar
from reid_core.data.phantom.thorax import SIGNS, Thorax

KINDS: tuple[str, ...] = ("cardiomegaly", "effusion", "consolidation", "nodule", "mass", "pneumothorax", "atelectasis")
_KIND_P = (0.22, 0.2, 0.15, 0.13, 0.07, 0.1, 0.13)
ACUTE = {"effusion", "consolidation", "pneumothorax", "atelectasis"}
CM = 0.05  # body units per centimetre
LESION_MU = 4.0  # attenuation per body unit of solid lesion replacing aerated lung (slightly boosted)


@dataclass(frozen=True)
class FindingState:
    """One finding in one study: ``severity`` in (0, 1]; place/shape fixed per patient (``seed``)."""

    kind: str
    severity: float
    side: int            # 0 right, 1 left, 2 both
    x: float
    y: float
    size: float          # body units (diameter of a nodule/mass, extent of a consolidation)
    seed: int

    @property
    def label(self) -> str:
        """ChestX-ray14 label: a nodule counts as a mass above 3 cm."""
        if self.kind in ("nodule", "mass"):
            return "Mass" if self.size > 3.0 * CM else "Nodule"
        return {"cardiomegaly": "Cardiomegaly", "effusion": "Effusion", "consolidation": "Consolidation",
                "pneumothorax": "Pneumothorax", "atelectasis": "Atelectasis"}[self.kind]


@dataclass(frozen=True)
class FindingCourse:
    """A patient's finding over time: ``severities[j]`` per study (0 before onset and after resolution)."""

    kind: str
    onset: int
    side: int
    x: float
    y: float
    size: float
    seed: int
    severities: tuple[float, ...]
    sizes: tuple[float, ...]

    def state(self, j: int) -> FindingState | None:
        if self.severities[j] <= 0:
            return None
        return FindingState(self.kind, self.severities[j], self.side, self.x, self.y, self.sizes[j], self.seed)


def _lung_point(rng: np.random.Generator, th: Thorax, side: int, y_lo: float, y_hi: float) -> tuple[float, float]:
    for _ in range(200):
        u, y = rng.uniform(0.15, th.width), rng.uniform(y_lo, y_hi)
        x = SIGNS[side] * u
        if th.inside_lung(np.array(x), np.array(y), margin=0.06) and not th.in_heart(x, y, margin=0.08):
            return float(x), float(y)
    return SIGNS[side] * 0.45, 0.0


def sample_courses(rng: np.random.Generator, th: Thorax, years: np.ndarray,
                   abnormal_fraction: float) -> tuple[FindingCourse, ...]:
    """Draw the finding courses of one patient whose studies are ``years`` after the first."""
    n = len(years)
    if rng.random() >= abnormal_fraction:
        return ()
    kind = str(rng.choice(KINDS, p=_KIND_P))
    onset = int(rng.integers(n))
    courses = [_course(rng, th, kind, onset, years)]
    if kind == "cardiomegaly" and onset < n - 1 and rng.random() < 0.35:
        courses.append(_course(rng, th, "effusion", int(rng.integers(onset + 1, n)), years))
    return tuple(courses)


def _course(rng: np.random.Generator, th: Thorax, kind: str, onset: int, years: np.ndarray) -> FindingCourse:
    n = len(years)
    side = int(rng.choice(3, p=(0.45, 0.35, 0.2))) if kind == "effusion" else int(rng.integers(2))
    x, y = _lung_point(rng, th, side % 2, float(np.mean(th.anat.apex_y)) + 0.15, float(np.mean(th.anat.dome_y)) - 0.05)
    sev = np.zeros(n)
    size = np.zeros(n)
    if kind in ("nodule", "mass"):
        d0 = rng.uniform(0.8, 2.6) * CM if kind == "nodule" else rng.uniform(3.2, 6.0) * CM
        growth = 0.0 if rng.random() < 0.5 else rng.uniform(0.05, 0.35)  # fraction per year
        for j in range(onset, n):
            size[j] = min(d0 * (1 + growth) ** (years[j] - years[onset]), 9 * CM)
            sev[j] = min(size[j] / (6 * CM), 1.0)
    elif kind == "cardiomegaly":
        s0, rate = rng.uniform(0.3, 0.8), rng.uniform(0.0, 0.05)
        for j in range(onset, n):
            sev[j] = min(s0 + rate * (years[j] - years[onset]), 1.0)
    else:
        s = rng.uniform(0.35, 0.95)
        p_resolve = {"effusion": 0.35, "consolidation": 0.55, "pneumothorax": 0.6, "atelectasis": 0.35}[kind]
        for j in range(onset, n):
            if j > onset and rng.random() < p_resolve:
                break
            sev[j] = s
            s = float(np.clip(s + rng.normal(0, 0.15), 0.2, 1.0))
        size[:] = rng.uniform(0.2, 0.32)
    return FindingCourse(kind=kind, onset=onset, side=side, x=x, y=y, size=float(size[onset]),
                         seed=int(rng.integers(2**31)), severities=tuple(np.round(sev, 4).tolist()),
                         sizes=tuple(np.round(size, 5).tolist()))


def cardiomegaly_scale(severity: float) -> tuple[float, float]:
    """Horizontal and vertical enlargement of the cardiac silhouette."""
    return 1.15 + 0.3 * severity, 1.05 + 0.12 * severity


@dataclass
class FindingEffects:
    """How a study's findings modify the patient's layers (all arrays canonical; ``None`` = no change)."""

    heart_scale: tuple[float, float] = (1.0, 1.0)
    opacity: np.ndarray | None = None      # share of the lung air replaced by fluid / tissue
    add: np.ndarray | None = None          # solid lesions: attenuation added inside the lungs
    air_gain: np.ndarray | None = None     # extra lucency (pneumothorax)
    vessel_mask: np.ndarray | None = None  # 0 where vessels vanish

    def _arr(self, name: str, n: int, fill: float) -> np.ndarray:
        if getattr(self, name) is None:
            setattr(self, name, np.full((n, n), fill, F32))
        return getattr(self, name)


FindingDrawer = Callable[[Grid, Thorax, FindingState, np.ndarray, FindingEffects], None]
FINDING_DRAWERS: dict[str, FindingDrawer] = {}


# @_draws(*kinds): how those findings modify a study's layers (grid, thorax, state, vessels, effects)
_draws = registrar(FINDING_DRAWERS, KINDS, "finding drawer")


def finding_effects(grid: Grid, th: Thorax, states: tuple[FindingState, ...], vessels: np.ndarray) -> FindingEffects:
    """Rasterise the findings of one study into layer modifiers (each kind's drawer from :data:`FINDING_DRAWERS`)."""
    fx = FindingEffects()
    for st in states:
        FINDING_DRAWERS[st.kind](grid, th, st, vessels, fx)
    if fx.opacity is not None:
        np.clip(fx.opacity, 0.0, 0.97, out=fx.opacity)
    return fx


@_draws("cardiomegaly")
def _draw_cardiomegaly(grid: Grid, th: Thorax, st: FindingState, vessels: np.ndarray, fx: FindingEffects) -> None:
    fx.heart_scale = cardiomegaly_scale(st.severity)


@_draws("effusion")
def _draw_effusion(grid: Grid, th: Thorax, st: FindingState, vessels: np.ndarray, fx: FindingEffects) -> None:
    for i in ((0, 1) if st.side == 2 else (st.side,)):
        _effusion(grid, th, i, st.severity, fx._arr("opacity", grid.n, 0.0))


@_draws("nodule", "mass")
def _draw_lesion(grid: Grid, th: Thorax, st: FindingState, vessels: np.ndarray, fx: FindingEffects) -> None:
    _nodule(grid, st, fx._arr("add", grid.n, 0.0))


@_draws("consolidation")
def _draw_consolidation(grid: Grid, th: Thorax, st: FindingState, vessels: np.ndarray, fx: FindingEffects) -> None:
    _consolidation(grid, st, vessels, fx._arr("opacity", grid.n, 0.0))


@_draws("pneumothorax")
def _draw_pneumothorax(grid: Grid, th: Thorax, st: FindingState, vessels: np.ndarray, fx: FindingEffects) -> None:
    n = grid.n
    _pneumothorax(grid, th, st, fx._arr("air_gain", n, 0.0), fx._arr("vessel_mask", n, 1.0), fx._arr("opacity", n, 0.0))


@_draws("atelectasis")
def _draw_atelectasis(grid: Grid, th: Thorax, st: FindingState, vessels: np.ndarray, fx: FindingEffects) -> None:
    _atelectasis(grid, th, st, fx._arr("opacity", grid.n, 0.0))


def _effusion(grid: Grid, th: Thorax, i: int, sev: float, out: np.ndarray) -> None:
    """Dependent fluid with a meniscus climbing the lateral wall; blunts the costophrenic angle."""
    a = th.anat
    y_cp = th.cp_y[i]
    top = y_cp - 0.08 - 0.7 * sev
    win = grid.window(0.0 if i else -1.2, 1.2 if i else 0.0, top - 0.25, y_cp + 0.2)
    y, x = grid.coords(win)
    u = SIGNS[i] * x
    span = max(th.width - a.dome_u[i] + 0.25, 0.2)
    meniscus = top + 0.12 + 0.1 * sev - (0.16 + 0.2 * sev) * np.clip((u - a.dome_u[i] + 0.25) / span, 0, 1) ** 1.6
    fluid = ramp(y - meniscus, 0.05) * ramp(th.lateral(np.minimum(y, y_cp), i) + 0.02 - u, 0.02) * ramp(u - 0.06, 0.04)
    rim = np.exp(-np.clip(th.lateral(y, i) - u, 0, None) / 0.025) * ramp(y - meniscus + 0.25 * sev, 0.1) * (u > 0.3)
    out[win] += (0.95 * np.maximum(fluid, 0.6 * rim)).astype(F32)


def _nodule(grid: Grid, st: FindingState, out: np.ndarray) -> None:
    """Round soft-tissue density (projected thickness of a sphere); masses get lobulated margins."""
    r = st.size / 2
    win = grid.window(st.x - 1.5 * r, st.x + 1.5 * r, st.y - 1.5 * r, st.y + 1.5 * r)
    y, x = grid.coords(win)
    ang = np.arctan2(y - st.y, x - st.x)
    rng = np.random.default_rng(st.seed)
    lob = 1.0 + (0.12 if st.kind == "mass" or st.size > 3 * CM else 0.04) * sum(
        rng.uniform(0.3, 1) * np.cos(k * ang + rng.uniform(0, 6.3)) for k in (3, 5, 7))
    d2 = ((x - st.x) ** 2 + (y - st.y) ** 2) / (r * lob) ** 2
    out[win] += (LESION_MU * 2 * r * dome(d2)).astype(F32)


def _consolidation(grid: Grid, st: FindingState, vessels: np.ndarray, out: np.ndarray) -> None:
    """Patchy airspace opacity with air bronchograms (the vessel pattern shows dark inside it)."""
    r = st.size * (0.6 + 0.4 * st.severity)
    win = grid.window(st.x - 1.6 * r, st.x + 1.6 * r, st.y - 1.6 * r, st.y + 1.6 * r)
    y, x = grid.coords(win)
    rng = np.random.default_rng(st.seed)
    noise = rng.standard_normal((12, 12)).astype(F32)
    ry = np.linspace(0, 11, y.shape[0], dtype=F32)
    rx = np.linspace(0, 11, x.shape[1], dtype=F32)
    patch = resample_rows_cols(noise, ry, rx)
    blob = np.exp(-(((x - st.x) ** 2 + (y - st.y) ** 2) / (r * r)))
    dens = np.clip((blob * (1.0 + 0.45 * patch) - 0.3) * 2.5, 0, 1) * (0.65 + 0.33 * st.severity)
    v = vessels[win]
    bronchogram = np.clip(v / (1.5 * np.percentile(v, 99.5) + 1e-6), 0, 1)
    out[win] += (dens * (1.0 - 0.35 * bronchogram)).astype(F32)


def _pneumothorax(grid: Grid, th: Thorax, st: FindingState, gain: np.ndarray, vmask: np.ndarray,
                  opacity: np.ndarray) -> None:
    """Apical-lateral rim of free air without lung markings, a visceral pleural line, a denser collapsed lung."""
    i = st.side % 2
    a = th.anat
    win = grid.window(0.0 if i else -1.2, 1.2 if i else 0.0, a.apex_y[i] - 0.05, th.cp_y[i] + 0.05)
    y, x = grid.coords(win)
    u = SIGNS[i] * x
    lung = th.lung_mask(x, y, i, 0.01)
    g = (0.03 + 0.22 * st.severity) * (1.0 + 0.8 * np.clip((th.mid_y[i] - y) / (th.mid_y[i] - a.apex_y[i]), 0, 1))
    dist = np.minimum(th.lateral(y, i) - u, y - th.apical(u, i))
    rim = ramp(g - dist, 0.01) * lung
    line = np.exp(-(((dist - g) / 0.006) ** 2)) * lung
    gain[win] += (0.12 * rim).astype(F32)
    vmask[win] *= (1.0 - rim).astype(F32)
    opacity[win] += (0.3 * line + 0.12 * st.severity * (1 - rim) * lung).astype(F32)


def _atelectasis(grid: Grid, th: Thorax, st: FindingState, out: np.ndarray) -> None:
    """Plate-like (discoid) band in the lower zone, with some basal volume loss when severe."""
    i = st.side % 2
    a = th.anat
    yb = a.dome_y[i] - 0.08 - 0.1 * (st.seed % 7) / 7
    win = grid.window(0.0 if i else -1.2, 1.2 if i else 0.0, yb - 0.15, th.cp_y[i] + 0.05)
    y, x = grid.coords(win)
    u = SIGNS[i] * x
    tilt = 0.15 * ((st.seed % 5) - 2) / 2
    u0, u1 = 0.22, 0.3 + 0.4 * th.width * (0.6 + 0.4 * st.severity)
    mid = 0.5 * (u0 + u1)
    centre = yb + tilt * (u - mid) - 0.25 * (u - mid) ** 2
    band = np.exp(-(((y - centre) / (0.007 + 0.007 * st.severity)) ** 2))
    band *= np.clip(np.sin(np.pi * np.clip((u - u0) / (u1 - u0), 0, 1)), 0, 1) ** 0.7
    base = ramp(y - th.diaphragm(u, i) + 0.06 + 0.1 * st.severity, 0.04) * ramp(0.45 - u, 0.1) * st.severity
    out[win] += ((0.45 * band + 0.5 * base) * th.lung_mask(x, y, i, 0.01)).astype(F32)

"""Patient identity: the anatomy factors fixed for a synthetic patient, and how they are sampled.

Units are normalised body units (image half-width ≈ 1 ≈ 20 cm, ``y`` down,
``x`` to the image right = patient left). Paired structures hold one value per
side as ``(right, left)`` — patient right is image left (``x < 0``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from reid_core.data.phantom.registry import registrar

MARK_KINDS: tuple[str, ...] = ("granuloma", "rib_fracture", "sternotomy", "clips", "pacemaker")
_MARK_P = (0.34, 0.24, 0.12, 0.17, 0.13)
_N_MARKS_P = (0.5, 0.3, 0.14, 0.06)
RARE_MARKS_P = (0.78, 0.16, 0.05, 0.01)  # hard phantom: most inpatients carry no distinctive permanent mark
Pair = tuple[float, float]


@dataclass(frozen=True)
class Mark:
    """A permanent idiosyncratic mark: ``kind`` at ``(x, y)``, with a ``size``, ``angle`` and extra ``param``.

    For ``rib_fracture`` the place is given along a rib instead: ``x`` is the side
    (-1 patient right, +1 left), ``y`` the fraction of the way from spine to
    lateral wall and ``param`` the rib number. ``param`` is the wire count for
    ``sternotomy``, the clip count for ``clips`` and the lead count for ``pacemaker``.
    """

    kind: str
    x: float
    y: float
    size: float = 1.0
    angle: float = 0.0
    param: int = 0

    def describe(self) -> str:
        return f"{self.kind}@({self.x:+.3f},{self.y:+.3f})"


@dataclass(frozen=True)
class PatientAnatomy:
    """Every identity factor of one synthetic patient (fixed over all studies)."""

    patient: int
    sex: str
    age: float                      # years at the first study
    thorax_half_width: float        # inner rib margin, widest point
    apex_y: Pair                    # lung apex top
    apex_u: Pair                    # lateral position of the apex dome
    apex_roundness: Pair            # super-ellipse exponent of the upper lateral wall
    dome_y: Pair                    # diaphragm dome tops (right usually higher)
    dome_u: Pair                    # lateral position of the dome peaks
    cp_drop: Pair                   # costophrenic angle below the dome top
    wall_bulge: Pair                # lateral wall convexity below the widest level
    body_depth: float               # soft-tissue attenuation scale (habitus)
    fat: float                      # lateral soft tissue outside the ribs
    breast: float                   # 0 for men
    breast_y: float
    breast_u: float
    neck_half_width: float
    shoulder_slope: float
    ctr: float                      # cardiothoracic ratio (PA, reference inspiration)
    heart_right_frac: float         # share of the heart right of the midline
    heart_elongation: float         # long/short axis ratio minus one
    heart_tilt: float               # long-axis angle, radians from vertical
    heart_lobe: Pair                # right-atrial / left-ventricular convexity
    mediastinum_u: float            # right paratracheal (SVC) border
    knob_size: float                # aortic knob prominence
    knob_y: float
    trachea_x: float
    trachea_w: float
    carina_y: float
    hilum_y: Pair
    rib_spacing: float
    rib_spacing_growth: float
    rib_curvature: float
    rib_thickness: float
    rib_top: float
    rib_anterior_slope: float
    rib_cc_u: float                 # costochondral junction
    rib_offsets: tuple[tuple[float, ...], tuple[float, ...]]
    rib_widths: tuple[tuple[float, ...], tuple[float, ...]]
    clavicle_y: Pair                # medial (sternal) end height
    clavicle_rise: Pair             # lateral end rise
    clavicle_u: Pair                # lateral end
    clavicle_w: float
    clavicle_bend: Pair
    spine_w: float
    spine_x: float
    scoliosis: float
    scoliosis_phase: float
    scapula_size: Pair
    humeral_r: float
    humeral_y: Pair
    bone_density: float
    vessel_gain: float
    vessel_seed: int
    texture_seed: int
    marks: tuple[Mark, ...] = field(default_factory=tuple)

    def factors(self) -> dict[str, object]:
        """A flat ``{id_<name>[_r|_l]: value}`` dict of the identity factors (for the sidecar table)."""
        out: dict[str, object] = {}
        for k, v in asdict(self).items():
            if k in ("patient", "marks"):
                continue
            if k in ("rib_offsets", "rib_widths"):
                for side, vals in zip("rl", v):
                    out[f"id_{k}_{side}"] = ",".join(f"{x:.4f}" for x in vals)
            elif isinstance(v, tuple):
                out[f"id_{k}_r"], out[f"id_{k}_l"] = float(v[0]), float(v[1])
            else:
                out[f"id_{k}"] = v
        out["id_thorax_height"] = float(np.mean(self.dome_y) + np.mean(self.cp_drop) - np.mean(self.apex_y))
        out["id_dome_difference"] = float(self.dome_y[1] - self.dome_y[0])  # > 0: right dome higher
        out["id_n_marks"] = len(self.marks)
        out["id_marks"] = ";".join(m.describe() for m in self.marks)
        return out

    def numeric_vector(self) -> np.ndarray:
        """Scalar identity factors as a float vector (for factor-space distance checks)."""
        vals = [v for k, v in self.factors().items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                and not k.endswith("_seed")]
        return np.asarray(vals, dtype=np.float64)


def _pair(rng: np.random.Generator, mean: float, sd: float, asym: float) -> Pair:
    """A (right, left) pair sharing a patient mean with a small independent side difference."""
    base = rng.normal(mean, sd)
    d = rng.normal(0.0, asym, 2)
    return float(base + d[0]), float(base + d[1])


def _clip(v: float, lo: float, hi: float) -> float:
    return float(min(max(v, lo), hi))


def sample_anatomy(rng: np.random.Generator, patient: int) -> PatientAnatomy:
    """Draw one patient's anatomy. Sex and age shift the priors (size, density, aortic unfolding)."""
    male = rng.random() < 0.55
    age = _clip(rng.normal(47.0, 16.0), 18.0, 85.0)
    old = max(age - 40.0, 0.0)
    width = _clip(rng.normal(0.745 if male else 0.70, 0.035), 0.62, 0.84)
    apex = _pair(rng, -0.70, 0.03, 0.012)
    dome_r = rng.normal(0.36, 0.045)
    dome_l = dome_r + rng.normal(0.05, 0.025)
    ctr = _clip(rng.normal(0.44 + 0.0012 * old, 0.035), 0.35, 0.53)
    marks = _sample_marks(rng, age, width, apex, (dome_r, dome_l))
    return PatientAnatomy(
        patient=int(patient), sex="M" if male else "F", age=round(age, 2),
        thorax_half_width=width,
        apex_y=apex,
        apex_u=_pair(rng, 0.29, 0.025, 0.01),
        apex_roundness=_pair(rng, 1.75, 0.15, 0.06),
        dome_y=(float(dome_r), float(dome_l)),
        dome_u=_pair(rng, 0.33, 0.035, 0.02),
        cp_drop=_pair(rng, 0.16, 0.025, 0.015),
        wall_bulge=_pair(rng, 0.06, 0.02, 0.01),
        body_depth=_clip(rng.normal(1.0, 0.07), 0.8, 1.25),
        fat=_clip(rng.normal(0.07, 0.025), 0.025, 0.15),
        breast=0.0 if male else _clip(rng.normal(0.6, 0.2), 0.15, 1.0),
        breast_y=rng.normal(0.0, 0.04), breast_u=rng.normal(0.52, 0.035),
        neck_half_width=_clip(rng.normal(0.27 if male else 0.23, 0.02), 0.18, 0.34),
        shoulder_slope=_clip(rng.normal(0.45, 0.08), 0.25, 0.7),
        ctr=ctr,
        heart_right_frac=_clip(rng.normal(0.36, 0.04), 0.25, 0.48),
        heart_elongation=_clip(rng.normal(0.42, 0.06), 0.25, 0.6),
        heart_tilt=float(np.deg2rad(rng.normal(47.0, 5.0))),
        heart_lobe=(rng.normal(0.05, 0.02), rng.normal(0.06, 0.025)),
        mediastinum_u=_clip(rng.normal(0.15, 0.014), 0.11, 0.19),
        knob_size=_clip(rng.normal(0.045 + 0.0009 * old, 0.014), 0.015, 0.11),
        knob_y=rng.normal(-0.37, 0.03),
        trachea_x=rng.normal(0.0, 0.01),
        trachea_w=_clip(rng.normal(0.05 if male else 0.044, 0.004), 0.035, 0.062),
        carina_y=rng.normal(-0.26, 0.03),
        hilum_y=(rng.normal(-0.08, 0.03), rng.normal(-0.13, 0.03)),
        rib_spacing=_clip(rng.normal(0.094, 0.006), 0.078, 0.11),
        rib_spacing_growth=_clip(rng.normal(0.04, 0.012), 0.01, 0.07),
        rib_curvature=_clip(rng.normal(0.5, 0.07), 0.3, 0.72),
        rib_thickness=_clip(rng.normal(0.46, 0.04), 0.35, 0.56),
        rib_top=rng.normal(0.0, 0.015),
        rib_anterior_slope=_clip(rng.normal(0.42, 0.06), 0.28, 0.58),
        rib_cc_u=_clip(rng.normal(0.30, 0.03), 0.22, 0.38),
        rib_offsets=(_series(rng, 0.0, 0.009), _series(rng, 0.0, 0.009)),
        rib_widths=(_series(rng, 1.0, 0.07), _series(rng, 1.0, 0.07)),
        clavicle_y=_pair(rng, -0.47, 0.03, 0.012),
        clavicle_rise=_pair(rng, 0.16, 0.035, 0.015),
        clavicle_u=_pair(rng, 0.71, 0.03, 0.015),
        clavicle_w=_clip(rng.normal(0.034 if male else 0.03, 0.003), 0.022, 0.042),
        clavicle_bend=_pair(rng, 0.012, 0.004, 0.003),
        spine_w=_clip(rng.normal(0.06 if male else 0.055, 0.004), 0.045, 0.072),
        spine_x=rng.normal(0.0, 0.008),
        scoliosis=float(rng.normal(0, 0.012) if rng.random() < 0.85 else rng.choice([-1, 1]) * rng.uniform(0.03, 0.06)),
        scoliosis_phase=rng.uniform(0, 2 * np.pi),
        scapula_size=_pair(rng, 1.0, 0.06, 0.02),
        humeral_r=_clip(rng.normal(0.12 if male else 0.105, 0.008), 0.085, 0.14),
        humeral_y=_pair(rng, -0.66, 0.03, 0.015),
        bone_density=_clip(rng.normal(1.0, 0.08) - 0.004 * old * (1.6 if not male else 1.0), 0.6, 1.3),
        vessel_gain=_clip(rng.normal(1.0, 0.12), 0.7, 1.35),
        vessel_seed=int(rng.integers(2**31)),
        texture_seed=int(rng.integers(2**31)),
        marks=marks,
    )


def _series(rng: np.random.Generator, mean: float, sd: float, n: int = 14) -> tuple[float, ...]:
    """One value per rib (ribs 1..14)."""
    return tuple(rng.normal(mean, sd, n).round(5).tolist())


@dataclass(frozen=True)
class _Site:
    """Where a patient's marks may go: thorax half-width, lung apex tops and diaphragm dome tops."""

    width: float
    apex: Pair
    dome: tuple[float, float]


MarkSampler = Callable[[np.random.Generator, str, float, _Site], Mark]
MARK_SAMPLERS: dict[str, MarkSampler] = {}


_samples = registrar(MARK_SAMPLERS, MARK_KINDS, "mark sampler")  # @_samples(kind): rng, kind, side, site → Mark


@_samples("granuloma")
def _granuloma(rng: np.random.Generator, kind: str, side: float, site: _Site) -> Mark:
    y = rng.uniform(site.apex[0] + 0.15, min(site.dome) - 0.05)
    u = rng.uniform(0.25, site.width - 0.1)
    return Mark(kind, side * u, y, size=rng.uniform(0.008, 0.018))


@_samples("rib_fracture")
def _rib_fracture(rng: np.random.Generator, kind: str, side: float, site: _Site) -> Mark:
    return Mark(kind, side, rng.uniform(0.4, 0.85), size=rng.uniform(0.8, 1.4), param=int(rng.integers(3, 10)))


@_samples("sternotomy")
def _sternotomy(rng: np.random.Generator, kind: str, side: float, site: _Site) -> Mark:
    return Mark(kind, rng.normal(0, 0.01), rng.uniform(-0.45, -0.38), size=rng.uniform(0.07, 0.09),
                angle=rng.normal(0, 0.04), param=int(rng.integers(5, 8)))


@_samples("clips")
def _clips(rng: np.random.Generator, kind: str, side: float, site: _Site) -> Mark:
    where = rng.integers(3)
    x, y = [(side * rng.uniform(0.55, 0.75), rng.uniform(-0.45, -0.2)),
            (side * rng.uniform(0.05, 0.2), rng.uniform(-0.35, 0.0)),
            (rng.uniform(-0.3, 0.3), rng.uniform(0.55, 0.8))][where]
    return Mark(kind, x, y, size=rng.uniform(0.04, 0.09), angle=rng.uniform(0, np.pi), param=int(rng.integers(2, 6)))


@_samples("pacemaker")
def _pacemaker(rng: np.random.Generator, kind: str, side: float, site: _Site) -> Mark:
    s = 1.0 if rng.random() < 0.85 else -1.0
    return Mark(kind, s * rng.uniform(0.38, 0.55), rng.uniform(-0.52, -0.42), size=rng.uniform(0.9, 1.15),
                angle=rng.normal(0, 0.25), param=int(rng.integers(1, 3)))


def sample_marks(rng: np.random.Generator, anat: PatientAnatomy,
                 n_marks_p: tuple[float, ...] = RARE_MARKS_P) -> tuple[Mark, ...]:
    """Permanent marks for an existing anatomy (``n_marks_p``: probabilities of 0, 1, 2, … marks)."""
    return _sample_marks(rng, anat.age, anat.thorax_half_width, anat.apex_y, anat.dome_y, n_marks_p)


def _sample_marks(rng: np.random.Generator, age: float, width: float, apex: Pair,
                  dome: tuple[float, float], n_marks_p: tuple[float, ...] = _N_MARKS_P) -> tuple[Mark, ...]:
    """0–3 permanent marks at patient-specific places (each kind's sampler from :data:`MARK_SAMPLERS`)."""
    p = np.array(_MARK_P)
    if age > 60:
        p[2] *= 1.8
        p[4] *= 2.2
    p /= p.sum()
    n = int(rng.choice(len(n_marks_p), p=n_marks_p))
    kinds = rng.choice(MARK_KINDS, size=n, replace=False, p=p) if n else []
    site = _Site(width, apex, dome)
    marks = []
    for kind in kinds:
        side = float(rng.choice([-1.0, 1.0]))  # drawn for every kind, so each kind's draws keep their place
        marks.append(MARK_SAMPLERS[kind](rng, kind, side, site))
    return tuple(marks)


def aged_density(anat: PatientAnatomy, years: float) -> float:
    """Bone density ``years`` after the first study (slow loss, faster in older women)."""
    rate = 0.006 + (0.006 if anat.sex == "F" and anat.age + years > 50 else 0.0)
    return float(anat.bone_density * (1.0 - rate * years))


def aged_heart_scale(anat: PatientAnatomy, years: float) -> float:
    """Slow physiological growth of the cardiac silhouette with age."""
    return float(1.0 + 0.004 * years)


def aged_knob_scale(anat: PatientAnatomy, years: float) -> float:
    """Aortic unfolding: the knob grows slowly with age."""
    return float(1.0 + 0.025 * years)

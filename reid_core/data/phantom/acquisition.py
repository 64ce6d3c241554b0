"""Per-study nuisance: when a study happens and how the image is acquired (view, pose, exposure, devices).

None of this is identity: it varies from study to study of the same patient.
Magnitudes are realistic rather than destructive — a few degrees of rotation,
up to ~10 % translation and scale, AP magnification, exposure/processing
differences — so identity stays recoverable from anatomy. :data:`STANDARD` holds
the ranges of the standard phantom; :data:`HARD` (``difficulty="hard"``) widens
them to what mixed inpatient archives show (bedside films, source distances,
vendor processing with unsharp masking, more support devices).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from reid_core.data.phantom.devices import TUBE_KINDS
from reid_core.data.phantom.findings import ACUTE, FindingState

FIRST_DATE = dt.date(2004, 1, 1)
MAX_SPAN_DAYS = int(10 * 365.25)
EXTENDED: tuple[str, ...] = ("sid", "unsharp", "unsharp_radius")  # StudySpec fields only the hard phantom draws


@dataclass(frozen=True)
class AcquisitionRanges:
    """How widely one difficulty draws each nuisance factor (``sd`` of a clipped normal, ``lo``/``hi`` bounds).

    ``ap`` / ``icu`` are the (well, acutely ill) probabilities of a bedside AP film and,
    given AP, of support devices; ``tube_p`` the per-device probabilities then.
    ``extended`` draws :data:`EXTENDED` (after every other draw of the study).
    """

    ap: tuple[float, float] = (0.28, 0.6)
    icu: tuple[float, float] = (0.35, 0.7)
    tube_p: tuple[float, float, float, float] = (0.45, 0.5, 0.6, 0.7)  # in TUBE_KINDS order
    collimation_p: float = 0.2
    collimation_max: float = 0.06
    rotation: tuple[float, float] = (2.2, 6.0)           # sd, |max| (degrees)
    shift: tuple[float, float] = (0.06, 0.16)            # sd, |max|
    scale: tuple[float, float, float, float] = (1.04, 0.045, 0.9, 1.14)  # AP mean, sd, lo, hi (PA mean 1)
    aspect: tuple[float, float, float, float] = (0.97, 0.02, 0.92, 1.05)  # AP mean, sd, lo, hi (PA mean 1)
    obliquity: tuple[float, float] = (0.012, 0.03)
    inspiration: tuple[float, float, float, float] = (-0.07, 0.045, -0.16, 0.1)  # AP mean, sd, lo, hi
    kv: tuple[float, float] = (0.85, 1.15)
    scatter: tuple[float, float] = (0.04, 0.12)
    noise: tuple[float, float] = (0.004, 0.02)           # log-uniform
    blur: tuple[float, float] = (0.5, 1.3)
    gamma_sd: float = 0.12
    equalize: tuple[float, float] = (0.25, 0.5)
    window_sd: tuple[float, float] = (0.6, 0.3)
    soft_drift_sd: float = 0.02
    extended: bool = False
    sid: tuple[float, float] = (1.0, 1.0)                # uniform (bedside films vary the distance)
    unsharp_p: float = 0.0                               # share of films with unsharp masking
    unsharp: tuple[float, float] = (0.0, 0.0)            # strength, uniform
    unsharp_radius: tuple[float, float] = (4.0, 16.0)    # px at 256 px, log-uniform


STANDARD = AcquisitionRanges()
HARD = AcquisitionRanges(
    # bedside AP films and support devices at inpatient rates: about a third of films carry a device
    # (the order of the "Support Devices" label in MIMIC-CXR / CheXpert)
    ap=(0.45, 0.8), icu=(0.55, 0.85), tube_p=(0.45, 0.5, 0.6, 0.8),
    # what varies most between archives: source distance (magnification), collimation and vendor processing.
    # Pose (rotation, tilt, shift, scale, inspiration) keeps the standard ranges: wider pose on top of the
    # look-alike anatomy stalled learning (BENCHMARKS.md, "Phantom difficulty").
    collimation_p=0.4, collimation_max=0.1,
    kv=(0.8, 1.2), blur=(0.5, 1.5), gamma_sd=0.2, equalize=(0.15, 0.7), window_sd=(0.9, 0.5),
    extended=True, sid=(0.8, 1.2), unsharp_p=0.6, unsharp=(0.2, 1.0), unsharp_radius=(3.0, 16.0),
)


@dataclass(frozen=True)
class StudySpec:
    """Everything that is drawn per study (one frontal image per study)."""

    patient: int
    study: int
    date: dt.date
    time: str                  # HHMMSS
    years: float               # since the patient's first study
    age: float
    view: str                  # PA / AP
    modality: str              # DX / CR
    rotation: float            # degrees, in-plane
    shift_x: float             # body units (image half-width = 1)
    shift_y: float
    scale: float
    aspect: float              # vertical/horizontal scale (beam tilt)
    obliquity: float           # shift of the thoracic contents against the spine (body units)
    inspiration: float         # relative stretch of the lungs below the apices
    kv: float                  # attenuation (contrast) multiplier
    scatter: float             # scatter-to-primary ratio of the broad scatter halo
    noise: float               # relative quantum noise at 256 px
    blur: float                # detector blur, px at 256 px
    gamma: float
    equalize: float            # strength of the large-scale dynamic-range compression
    window: tuple[float, float]  # percentile shifts of the display window
    collimation: tuple[float, float, float, float]  # left, right, top, bottom margins (fractions)
    collimation_value: float
    marker: str                # 'L' or 'R'
    marker_pos: tuple[float, float]
    tubes: tuple[str, ...]
    gastric_bubble: float      # size of the gastric air bubble (0 = none)
    soft_drift: float          # weight change (soft-tissue multiplier)
    findings: tuple[FindingState, ...] = field(default_factory=tuple)
    sid: float = 1.0           # source-image distance relative to the standard one (heart magnification)
    unsharp: float = 0.0       # unsharp-masking strength of the detector processing (0 = none)
    unsharp_radius: float = 0.0  # its blur radius, px at 256 px

    @property
    def image_id(self) -> str:
        return f"P{self.patient:05d}_s{self.study:02d}"

    @property
    def labels(self) -> str:
        """ChestX-ray14 ``Finding Labels`` of this image (``No Finding`` when normal)."""
        names = sorted({f.label for f in self.findings})
        return "|".join(names) if names else "No Finding"

    def factors(self, extended: bool = False) -> dict[str, object]:
        """Flat nuisance columns ``acq_*`` for the sidecar table (findings are added by the generator).

        ``extended`` adds the factors only the hard phantom varies (:data:`EXTENDED`);
        without it the columns are those of the standard phantom's table.
        """
        out: dict[str, object] = {}
        for k, v in asdict(self).items():
            if k in ("patient", "study", "date", "time", "years", "age", "view", "findings"):
                continue
            if k in EXTENDED and not extended:
                continue
            if isinstance(v, tuple) and k != "tubes":
                for idx, val in enumerate(v):
                    out[f"acq_{k}_{idx}"] = val
            elif k == "tubes":
                out["acq_tubes"] = "|".join(v)
            else:
                out[f"acq_{k}"] = v
        return out


def n_studies_of(rng: np.random.Generator, n_studies: int | tuple[int, int]) -> int:
    """Number of studies of a patient: fixed, or drawn from ``[lo, hi]`` with a long tail."""
    if isinstance(n_studies, (int, np.integer)):
        return int(n_studies)
    lo, hi = n_studies
    k = np.arange(lo, hi + 1)
    p = 0.78 ** (k - lo)
    return int(rng.choice(k, p=p / p.sum()))


def sample_dates(rng: np.random.Generator, n: int) -> tuple[list[dt.date], list[str]]:
    """Study dates over up to ten years (clusters of close follow-ups and long gaps) and times of day."""
    first = FIRST_DATE + dt.timedelta(days=int(rng.integers(0, 3650)))
    gaps = np.where(rng.random(n - 1) < 0.35, rng.integers(1, 15, n - 1), rng.lognormal(5.5, 1.0, n - 1))
    days = np.concatenate([[0.0], np.cumsum(np.maximum(gaps, 1.0))])
    if days[-1] > MAX_SPAN_DAYS:
        days = days * (MAX_SPAN_DAYS / days[-1])
    days = np.maximum.accumulate(np.round(days)).astype(int)
    times = [f"{int(rng.integers(7, 23)):02d}{int(rng.integers(60)):02d}{int(rng.integers(60)):02d}" for _ in range(n)]
    return [first + dt.timedelta(days=int(d)) for d in days], times


def sample_study(rng: np.random.Generator, patient: int, study: int, date: dt.date, time: str, years: float,
                 age: float, findings: tuple[FindingState, ...],
                 ranges: AcquisitionRanges = STANDARD) -> StudySpec:
    """Draw the acquisition of one study (acutely ill patients are imaged AP more often).

    The draw order is fixed whatever ``ranges``: :data:`STANDARD` reproduces the
    standard phantom bit for bit; extended factors are drawn last.
    """
    r = ranges
    sick = any(f.kind in ACUTE for f in findings)
    ap = rng.random() < r.ap[int(sick)]
    icu = ap and rng.random() < r.icu[int(sick)]
    tubes: tuple[str, ...] = ()
    if icu:
        p = dict(zip(TUBE_KINDS, r.tube_p))
        tubes = tuple(k for k in TUBE_KINDS if rng.random() < p[k])
    coll = tuple(float(v) for v in np.where(rng.random(4) < r.collimation_p,
                                            rng.uniform(0.0, r.collimation_max, 4), 0.0))
    marker = "L" if rng.random() < 0.75 else "R"
    mx = rng.uniform(0.7, 0.92) if marker == "L" else rng.uniform(0.08, 0.3)
    spec = StudySpec(
        patient=patient, study=study, date=date, time=time, years=round(years, 4), age=round(age, 2),
        view="AP" if ap else "PA",
        modality="CR" if (ap and rng.random() < 0.6) else "DX",
        rotation=float(np.clip(rng.normal(0, r.rotation[0]), -r.rotation[1], r.rotation[1])),
        shift_x=float(np.clip(rng.normal(0, r.shift[0]), -r.shift[1], r.shift[1])),
        shift_y=float(np.clip(rng.normal(0.0, r.shift[0]), -r.shift[1], r.shift[1])),
        scale=float(np.clip(rng.normal(r.scale[0] if ap else 1.0, r.scale[1]), r.scale[2], r.scale[3])),
        aspect=float(np.clip(rng.normal(r.aspect[0] if ap else 1.0, r.aspect[1]), r.aspect[2], r.aspect[3])),
        obliquity=float(np.clip(rng.normal(0, r.obliquity[0]), -r.obliquity[1], r.obliquity[1])),
        inspiration=float(np.clip(rng.normal(r.inspiration[0] if ap else 0.0, r.inspiration[1]),
                                  r.inspiration[2], r.inspiration[3])),
        kv=float(rng.uniform(*r.kv)),
        scatter=float(rng.uniform(*r.scatter) * (1.5 if ap else 1.0)),
        noise=float(np.exp(rng.uniform(np.log(r.noise[0]), np.log(r.noise[1])))),
        blur=float(rng.uniform(*r.blur)),
        gamma=float(np.exp(rng.normal(0, r.gamma_sd))),
        equalize=float(rng.uniform(*r.equalize)),
        window=(float(rng.normal(0, r.window_sd[0])), float(rng.normal(0, r.window_sd[1]))),
        collimation=coll,  # type: ignore[arg-type]
        collimation_value=float(rng.uniform(0.75, 1.0)),
        marker=marker,
        marker_pos=(float(mx), float(rng.uniform(0.05, 0.22))),
        tubes=tubes,
        gastric_bubble=float(rng.uniform(0.5, 1.2) if rng.random() < 0.8 else 0.0),
        soft_drift=float(np.clip(rng.normal(1.0 + 0.0, r.soft_drift_sd) * (1 + rng.normal(0, 0.004) * years),
                                 0.9, 1.12)),
        findings=findings,
    )
    if not r.extended:
        return spec
    sharpen = rng.random() < r.unsharp_p
    strength, radius = float(rng.uniform(*r.unsharp)), float(np.exp(rng.uniform(*np.log(r.unsharp_radius))))
    return replace(spec, sid=float(rng.uniform(*r.sid)), unsharp=strength if sharpen else 0.0,
                   unsharp_radius=radius if sharpen else 0.0)

"""Per-study nuisance: when a study happens and how the image is acquired (view, pose, exposure, devices).

None of this is identity: it varies from study to study of the same patient.
Magnitudes are realistic rather than destructive — a few degrees of rotation,
up to ~10 % translation and scale, AP magnification, exposure/processing
differences — so identity stays recoverable from anatomy.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import numpy as np

from reid_core.data.phantom.devices import TUBE_KINDS
from reid_core.data.phantom.findings import ACUTE, FindingState

FIRST_DATE = dt.date(2004, 1, 1)
MAX_SPAN_DAYS = int(10 * 365.25)


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

    @property
    def image_id(self) -> str:
        return f"P{self.patient:05d}_s{self.study:02d}"

    @property
    def labels(self) -> str:
        """ChestX-ray14 ``Finding Labels`` of this image (``No Finding`` when normal)."""
        names = sorted({f.label for f in self.findings})
        return "|".join(names) if names else "No Finding"

    def factors(self) -> dict[str, object]:
        """Flat nuisance columns ``acq_*`` for the sidecar table (findings are added by the generator)."""
        out: dict[str, object] = {}
        for k, v in asdict(self).items():
            if k in ("patient", "study", "date", "time", "years", "age", "view", "findings"):
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
                 age: float, findings: tuple[FindingState, ...]) -> StudySpec:
    """Draw the acquisition of one study (acutely ill patients are imaged AP more often)."""
    sick = any(f.kind in ACUTE for f in findings)
    ap = rng.random() < (0.6 if sick else 0.28)
    icu = ap and rng.random() < (0.7 if sick else 0.35)
    tubes: tuple[str, ...] = ()
    if icu:
        p = {"et_tube": 0.45, "ng_tube": 0.5, "central_line": 0.6, "ecg_leads": 0.7}
        tubes = tuple(k for k in TUBE_KINDS if rng.random() < p[k])
    coll = tuple(float(v) for v in np.where(rng.random(4) < 0.2, rng.uniform(0.0, 0.06, 4), 0.0))
    marker = "L" if rng.random() < 0.75 else "R"
    mx = rng.uniform(0.7, 0.92) if marker == "L" else rng.uniform(0.08, 0.3)
    return StudySpec(
        patient=patient, study=study, date=date, time=time, years=round(years, 4), age=round(age, 2),
        view="AP" if ap else "PA",
        modality="CR" if (ap and rng.random() < 0.6) else "DX",
        rotation=float(np.clip(rng.normal(0, 2.2), -6, 6)),
        shift_x=float(np.clip(rng.normal(0, 0.06), -0.16, 0.16)),
        shift_y=float(np.clip(rng.normal(0.0, 0.06), -0.16, 0.16)),
        scale=float(np.clip(rng.normal(1.04 if ap else 1.0, 0.045), 0.9, 1.14)),
        aspect=float(np.clip(rng.normal(0.97 if ap else 1.0, 0.02), 0.92, 1.05)),
        obliquity=float(np.clip(rng.normal(0, 0.012), -0.03, 0.03)),
        inspiration=float(np.clip(rng.normal(-0.07 if ap else 0.0, 0.045), -0.16, 0.1)),
        kv=float(rng.uniform(0.85, 1.15)),
        scatter=float(rng.uniform(0.04, 0.12) * (1.5 if ap else 1.0)),
        noise=float(np.exp(rng.uniform(np.log(0.004), np.log(0.02)))),
        blur=float(rng.uniform(0.5, 1.3)),
        gamma=float(np.exp(rng.normal(0, 0.12))),
        equalize=float(rng.uniform(0.25, 0.5)),
        window=(float(rng.normal(0, 0.6)), float(rng.normal(0, 0.3))),
        collimation=coll,  # type: ignore[arg-type]
        collimation_value=float(rng.uniform(0.75, 1.0)),
        marker=marker,
        marker_pos=(float(mx), float(rng.uniform(0.05, 0.22))),
        tubes=tubes,
        gastric_bubble=float(rng.uniform(0.5, 1.2) if rng.random() < 0.8 else 0.0),
        soft_drift=float(np.clip(rng.normal(1.0 + 0.0, 0.02) * (1 + rng.normal(0, 0.004) * years), 0.9, 1.12)),
        findings=findings,
    )

"""PhantomGenerator: deterministic random access to synthetic patients, their studies and images.

Every random draw comes from a ``np.random.SeedSequence`` keyed by
``(seed; patient, purpose, study)``, so a patient never depends on which other
patients are generated: patients ``[5, 9]`` alone reproduce bit-identically
the same patients of a 20-patient run.

``difficulty="hard"`` keeps every draw of the standard phantom and adds its own
from further streams: the patient's template index (``_TEMPLATE_OF``), the
templates' anatomy (``_TEMPLATE``, keyed by template index) and the patient's
marks (``_MARKS``); its studies use the wide :data:`~.acquisition.HARD` ranges.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Iterable

import numpy as np
import pandas as pd

from reid_core.data.manifest import finalize_manifest
from reid_core.data.phantom.acquisition import HARD, STANDARD, StudySpec, n_studies_of, sample_dates, sample_study
from reid_core.data.phantom.anatomy import PatientAnatomy, aged_density, sample_anatomy, sample_marks
from reid_core.data.phantom.difficulty import Difficulty, check_difficulty
from reid_core.data.phantom.devices import draw_tubes
from reid_core.data.phantom.findings import CM, FindingCourse, cardiomegaly_scale, sample_courses
from reid_core.data.phantom.layers import PatientLayers, build_layers
from reid_core.data.phantom.render import heart_magnification, render_study
from reid_core.data.phantom.thorax import Thorax
from reid_core.data.phantom.twins import blend_anatomy, template_of

DATASET = "phantom"
_ANATOMY, _SCHEDULE, _FINDINGS, _ACQUISITION, _RENDER = range(5)
_TEMPLATE_OF, _TEMPLATE, _MARKS = 5, 6, 7  # hard phantom only


def patient_id(i: int) -> str:
    """Canonical patient id of patient index ``i`` (``P00000``)."""
    return f"P{i:05d}"


def nih_name(i: int, j: int) -> str:
    """ChestX-ray14 file name of study ``j`` of patient ``i`` (patient numbers start at 1)."""
    return f"{i + 1:08d}_{j:03d}.png"


def image_path(i: int, j: int, fmt: str = "nih") -> str:
    """Path of an image relative to the dataset root in the ``nih`` or ``dicom`` layout."""
    if fmt == "nih":
        return f"images/{nih_name(i, j)}"
    if fmt == "dicom":
        return f"dicom/{patient_id(i)}/{patient_id(i)}_s{j:02d}.dcm"
    raise ValueError(f"unknown phantom layout {fmt!r}; expected 'nih' or 'dicom'")


class PhantomGenerator:
    """Synthetic frontal chest radiographs of synthetic patients.

    ``seed`` fixes the population, ``size`` the square output in pixels,
    ``n_studies`` the studies per patient (an int, or a ``(lo, hi)`` range drawn
    with a long tail), ``abnormal_fraction`` the share of patients who develop a
    finding, ``difficulty`` ``"standard"`` or ``"hard"`` (see :mod:`.difficulty`).
    """

    def __init__(self, seed: int = 0, size: int = 256, n_studies: int | tuple[int, int] = (1, 10),
                 abnormal_fraction: float = 1 / 3, cache_patients: int = 2,
                 difficulty: Difficulty = "standard") -> None:
        if size < 32:
            raise ValueError(f"phantom size must be at least 32 px, got {size}")
        if isinstance(n_studies, tuple) and not (1 <= n_studies[0] <= n_studies[1]):
            raise ValueError(f"n_studies range must satisfy 1 <= lo <= hi, got {n_studies}")
        if isinstance(n_studies, int) and n_studies < 1:
            raise ValueError(f"n_studies must be >= 1, got {n_studies}")
        self.seed = int(seed)
        self.size = int(size)
        self.n_studies = n_studies
        self.abnormal_fraction = float(abnormal_fraction)
        self.difficulty: Difficulty = check_difficulty(difficulty)
        self._hard = self.difficulty == "hard"
        self._templates: dict[int, PatientAnatomy] = {}
        self._cache_size = max(int(cache_patients), 1)
        self._layers: OrderedDict[int, PatientLayers] = OrderedDict()
        self._meta: OrderedDict[int, tuple[PatientAnatomy, list[StudySpec], tuple[FindingCourse, ...]]] = OrderedDict()

    def settings(self) -> dict[str, object]:
        """The options that determine every image (saved next to exported datasets; ``difficulty`` when hard)."""
        out: dict[str, object] = {
            "generator": "cxr-reid phantom", "version": 1, "seed": self.seed, "size": self.size,
            "n_studies": list(self.n_studies) if isinstance(self.n_studies, tuple) else self.n_studies,
            "abnormal_fraction": self.abnormal_fraction}
        if self._hard:
            out["difficulty"] = self.difficulty
        return out

    def rng(self, patient: int, purpose: int, study: int = 0) -> np.random.Generator:
        """The independent random stream of one (patient, purpose, study)."""
        if patient < 0 or study < 0:
            raise ValueError(f"patient and study indices must be non-negative, got {patient}, {study}")
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(patient, purpose, study)))

    def _patient_meta(self, i: int) -> tuple[PatientAnatomy, list[StudySpec], tuple[FindingCourse, ...]]:
        if i in self._meta:
            self._meta.move_to_end(i)
            return self._meta[i]
        anat = sample_anatomy(self.rng(i, _ANATOMY), i)
        if self._hard:
            anat = self._hard_anatomy(i, anat)
        ranges = HARD if self._hard else STANDARD
        sched = self.rng(i, _SCHEDULE)
        n = n_studies_of(sched, self.n_studies)
        dates, times = sample_dates(sched, n)
        years = np.array([(d - dates[0]).days / 365.25 for d in dates])
        courses = sample_courses(self.rng(i, _FINDINGS), Thorax(anat), years, self.abnormal_fraction)
        specs = []
        for j in range(n):
            states = tuple(s for s in (c.state(j) for c in courses) if s is not None)
            specs.append(sample_study(self.rng(i, _ACQUISITION, j), i, j, dates[j], times[j], float(years[j]),
                                      anat.age + float(years[j]), states, ranges))
        self._meta[i] = (anat, specs, courses)
        while len(self._meta) > 64:
            self._meta.popitem(last=False)
        return self._meta[i]

    def template_index(self, i: int) -> int:
        """The anatomy template of hard patient ``i`` (-1 for the standard phantom, which has none)."""
        return template_of(self.rng(i, _TEMPLATE_OF)) if self._hard else -1

    def template(self, t: int) -> PatientAnatomy:
        """Anatomy template ``t`` of the hard phantom (its own stream, independent of every patient)."""
        if t not in self._templates:
            self._templates[t] = sample_anatomy(self.rng(t, _TEMPLATE), -1 - t)
        return self._templates[t]

    def _hard_anatomy(self, i: int, own: PatientAnatomy) -> PatientAnatomy:
        anat = blend_anatomy(own, self.template(self.template_index(i)))
        return replace(anat, marks=sample_marks(self.rng(i, _MARKS), anat))

    def patient(self, i: int) -> PatientAnatomy:
        """Identity factors of patient ``i``."""
        return self._patient_meta(i)[0]

    def studies(self, i: int) -> list[StudySpec]:
        """Per-study specifications (dates, acquisition nuisance, findings) of patient ``i``."""
        return list(self._patient_meta(i)[1])

    def courses(self, i: int) -> tuple[FindingCourse, ...]:
        """The longitudinal finding courses of patient ``i`` (empty when the patient stays normal)."""
        return self._patient_meta(i)[2]

    def layers(self, i: int) -> PatientLayers:
        """Canonical attenuation layers of patient ``i`` (cached for the most recent patients)."""
        if i in self._layers:
            self._layers.move_to_end(i)
            return self._layers[i]
        layers = build_layers(self.patient(i), int(round(self.size * 1.2)), 1.2)
        self._layers[i] = layers
        while len(self._layers) > self._cache_size:
            self._layers.popitem(last=False)
        return layers

    def render_spec(self, spec: StudySpec) -> np.ndarray:
        """Render an arbitrary (possibly edited, e.g. ``dataclasses.replace``-d) study spec."""
        return render_study(self.layers(spec.patient), self.patient(spec.patient), spec, self.size,
                            self.rng(spec.patient, _RENDER, spec.study))

    def render_edited(self, spec: StudySpec, anatomy: PatientAnatomy | None = None,
                      show_tubes: bool = True) -> np.ndarray:
        """:meth:`render_spec` of an edited patient or study, the study's render stream unchanged.

        ``anatomy`` replaces the patient's (e.g. marks removed): its layers are built
        afresh on the same grid and never cached. ``show_tubes=False`` draws the
        study's transient devices from the render stream but leaves them out, so
        the film keeps the noise of the study that had them.
        """
        layers = self.layers(spec.patient)
        if anatomy is not None:
            layers = build_layers(anatomy, layers.grid.n, layers.grid.extent)
        rng = self.rng(spec.patient, _RENDER, spec.study)
        if not show_tubes and spec.tubes:
            draw_tubes(layers.grid, layers.thorax, spec.tubes, rng)  # consumed as compose would, not shown
            spec = replace(spec, tubes=())
        return render_study(layers, anatomy or self.patient(spec.patient), spec, self.size, rng)

    def render(self, i: int, j: int) -> np.ndarray:
        """Image of study ``j`` of patient ``i``: ``(size, size)`` float32 in [0, 1]."""
        specs = self.studies(i)
        if not 0 <= j < len(specs):
            raise IndexError(f"patient {i} has {len(specs)} studies; study {j} does not exist")
        return self.render_spec(specs[j])

    def render_with_factors(self, i: int, j: int) -> tuple[np.ndarray, dict[str, object]]:
        """The image and its ground-truth row (identity factors, nuisance, findings)."""
        return self.render(i, j), self.factor_rows(i)[j]

    def factor_rows(self, i: int) -> list[dict[str, object]]:
        """Ground-truth rows (one per study) of patient ``i``, without rendering anything."""
        anat, specs, _ = self._patient_meta(i)
        ident = anat.factors()
        hard = {"difficulty": self.difficulty, "id_template": self.template_index(i)} if self._hard else {}
        th = Thorax(anat)
        rows = []
        for s in specs:
            main = max(s.findings, key=lambda f: f.severity, default=None)
            cm = next((f for f in s.findings if f.kind == "cardiomegaly"), None)
            hs = cardiomegaly_scale(cm.severity)[0] if cm else 1.0
            mag = heart_magnification(anat, s.view, s.sid)
            rows.append({
                "image_id": s.image_id, "patient_id": patient_id(i), "phantom_patient": i, "study_order": s.study,
                "study_date": pd.Timestamp(s.date), "study_time": s.time, "years_since_first": s.years,
                "view": s.view, "sex": anat.sex, "age": s.age, "findings": s.labels,
                "finding_kinds": "|".join(f.kind for f in s.findings),
                "finding_severity": main.severity if main else 0.0,
                "finding_side": main.side if main else -1,
                "finding_size_cm": (main.size / CM if main and main.kind in ("nodule", "mass") else 0.0),
                "finding_x": main.x if main else np.nan, "finding_y": main.y if main else np.nan,
                "heart_magnification": mag, "apparent_ctr": anat.ctr * mag * hs,
                "heart_width": 2 * th.width * anat.ctr * mag * hs,
                "bone_density_now": aged_density(anat, s.years),
                **hard, **ident, **s.factors(extended=self._hard),
            })
        return rows

    def factors_table(self, patients: Iterable[int]) -> pd.DataFrame:
        """Sidecar ground-truth table (one row per image) of the given patients."""
        return pd.DataFrame([r for i in patients for r in self.factor_rows(i)])

    def manifest(self, patients: Iterable[int], fmt: str = "nih") -> pd.DataFrame:
        """Canonical manifest of the given patients; ``path`` follows the ``fmt`` export layout.

        Extra columns ``phantom_patient`` / ``phantom_study`` (int indices) let a loader
        render a row directly (:func:`render_image`) instead of reading ``path``.
        """
        rows = []
        for i in patients:
            for s in self.studies(i):
                rows.append({"image_id": s.image_id, "path": image_path(i, s.study, fmt), "patient_id": patient_id(i),
                             "study_order": s.study, "study_date": pd.Timestamp(s.date), "view": s.view,
                             "sex": self.patient(i).sex, "age": s.age, "findings": s.labels, "dataset": DATASET,
                             "phantom_patient": i, "phantom_study": s.study})
        if not rows:
            return finalize_manifest(pd.DataFrame({"image_id": [], "path": [], "patient_id": []}), dataset=DATASET)
        return finalize_manifest(pd.DataFrame(rows), dataset=DATASET)


_GENERATORS: OrderedDict[tuple[int, int, str], PhantomGenerator] = OrderedDict()


def render_image(seed: int, patient: int, study: int, size: int = 256, difficulty: Difficulty = "standard") -> np.ndarray:
    """Render one phantom image by index (default generator options), reusing a per-process generator.

    Used by loaders that render manifest rows on the fly (``phantom_patient``,
    ``phantom_study`` columns); rows of the same patient in a row reuse its layers.
    """
    key = (int(seed), int(size), check_difficulty(difficulty))
    gen = _GENERATORS.get(key)
    if gen is None:
        gen = _GENERATORS[key] = PhantomGenerator(seed=seed, size=size, difficulty=difficulty)
        while len(_GENERATORS) > 4:
            _GENERATORS.popitem(last=False)
    return gen.render(int(patient), int(study))

"""Film variants for a shortcut audit: the same studies with one thing taken away or held fixed.

A :class:`Variant` edits a study (and, for marks, the patient) before it is
rendered. Every variant of a film draws from that study's render stream
(:meth:`PhantomGenerator.render_edited`), so two variants of a film differ only
by what the edit changed. The variants of :func:`audit_variants`:

* ``as_is``: the film as generated;
* ``no_marks``: the patient's permanent marks (granulomas, healed fractures,
  sternotomy wires, clips, pacemaker) removed from the anatomy;
* ``no_devices``: the study's transient ICU devices (tubes, lines, ECG leads) removed;
* ``no_marks_no_devices``: both;
* ``no_findings``: the study's findings removed (the patient imaged healthy);
* ``pinned:<factor>``: one acquisition factor set to one neutral value on
  every film (:data:`NEUTRAL`, else the factor's median over the audited films);
* ``pinned:all_acquisition``: every acquisition factor pinned at once.

The acquisition factors are read off :class:`StudySpec`'s fields, so a field a
later phantom adds is audited too (pinned to its median): every field that is
not bookkeeping (:data:`NOT_ACQUISITION`), devices or findings. Fields sharing a
leading word form one factor (``shift_x`` + ``shift_y`` → ``shift``,
``marker`` + ``marker_pos`` → ``marker``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Sequence

import numpy as np

from reid_core.data.phantom.acquisition import StudySpec
from reid_core.data.phantom.generator import PhantomGenerator

AS_IS = "as_is"
PINNED = "pinned:"
ALL_ACQUISITION = "all_acquisition"
DEVICES_FIELD, FINDINGS_FIELD = "tubes", "findings"
NOT_ACQUISITION = frozenset({"patient", "study", "date", "time", "years", "age", "modality"})
"""StudySpec fields that are not acquisition nuisance: who, when, the patient's age (it drives ageing
of the anatomy) and the DICOM modality tag (metadata, not rendered)."""

NEUTRAL: dict[str, Any] = {
    "view": "PA", "rotation": 0.0, "shift_x": 0.0, "shift_y": 0.0, "scale": 1.0, "aspect": 1.0,
    "obliquity": 0.0, "inspiration": 0.0, "kv": 1.0, "gamma": 1.0, "window": (0.0, 0.0),
    "collimation": (0.0, 0.0, 0.0, 0.0), "marker": "L", "marker_pos": (0.81, 0.135),
    "gastric_bubble": 0.85, "soft_drift": 1.0, "sid": 1.0, "unsharp": 0.0,
}
"""Physically neutral values (no pose change, unit exposure, no collimation, an upright PA film with the
left marker at its usual place, the reference source distance, no unsharp masking); other fields are
pinned to their median over the audited films."""


@dataclass(frozen=True)
class Variant:
    """One way to render every audited film: spec fields to overwrite, marks and devices kept or not."""

    name: str
    description: str
    set_fields: Mapping[str, Any] = field(default_factory=dict)
    marks: bool = True
    devices: bool = True

    def edit(self, spec: StudySpec) -> StudySpec:
        """``spec`` with this variant's fields overwritten (devices are left to the renderer)."""
        return replace(spec, **self.set_fields) if self.set_fields else spec

    def render(self, gen: PhantomGenerator, spec: StudySpec) -> np.ndarray:
        """The film of ``spec`` under this variant: ``(size, size)`` float32 in [0, 1]."""
        anat = gen.patient(spec.patient)
        edited = None if self.marks or not anat.marks else replace(anat, marks=())
        return gen.render_edited(self.edit(spec), edited, show_tubes=self.devices)


def acquisition_fields(spec_type: type = StudySpec) -> tuple[str, ...]:
    """The acquisition fields of ``spec_type``, in declaration order."""
    skip = NOT_ACQUISITION | {DEVICES_FIELD, FINDINGS_FIELD}
    return tuple(f.name for f in fields(spec_type) if f.name not in skip)


def factor_groups(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Fields grouped into factors: names sharing their leading word (before ``_``) form one factor."""
    lead = Counter(n.split("_")[0] for n in names)
    groups: dict[str, list[str]] = {}
    for n in names:
        key = n.split("_")[0] if lead[n.split("_")[0]] > 1 else n
        groups.setdefault(key, []).append(n)
    return {k: tuple(v) for k, v in groups.items()}


def _typical(values: list[Any]) -> Any:
    """Median of numbers (element-wise for tuples of numbers), else the most common value."""
    first = values[0]
    if isinstance(first, (int, float, np.number)) and not isinstance(first, bool):
        return float(np.median(np.asarray(values, dtype=np.float64)))
    if isinstance(first, tuple) and first and all(isinstance(v, (int, float)) for v in first):
        return tuple(float(v) for v in np.median(np.asarray(values, dtype=np.float64), axis=0))
    counts = Counter(repr(v) for v in values)
    best = max(counts.values())
    return next(v for v in values if counts[repr(v)] == best)


def neutral_values(specs: Sequence[StudySpec], names: Sequence[str]) -> dict[str, Any]:
    """The value each field is pinned to: :data:`NEUTRAL`, else its typical value over ``specs``."""
    if not specs:
        raise ValueError("need at least one study to derive neutral acquisition values")
    return {n: NEUTRAL[n] if n in NEUTRAL else _typical([getattr(s, n) for s in specs]) for n in names}


def audit_variants(specs: Sequence[StudySpec]) -> list[Variant]:
    """Every variant of the audit (``as_is`` first), pinned values derived from ``specs``."""
    names = acquisition_fields(type(specs[0]) if specs else StudySpec)
    neutral = neutral_values(specs, names)
    out = [
        Variant(AS_IS, "the films as generated"),
        Variant("no_marks", "permanent marks removed from the patients", marks=False),
        Variant("no_devices", "ICU tubes, lines and ECG leads removed", devices=False),
        Variant("no_marks_no_devices", "marks and devices removed", marks=False, devices=False),
        Variant("no_findings", "findings removed (patients imaged healthy)", {FINDINGS_FIELD: ()}),
    ]
    for factor, group in factor_groups(names).items():
        pinned = {n: neutral[n] for n in group}
        out.append(Variant(PINNED + factor, "pinned: " + _describe(pinned), pinned))
    out.append(Variant(PINNED + ALL_ACQUISITION, "every acquisition factor pinned", neutral))
    return out


def _describe(values: Mapping[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, tuple):
            return "(" + ", ".join(fmt(x) for x in v) + ")"
        return str(v)
    return ", ".join(f"{k}={fmt(v)}" for k, v in values.items())

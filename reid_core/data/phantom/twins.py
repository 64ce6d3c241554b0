"""Shared anatomy templates ("twins") of the hard phantom.

Every hard patient belongs to one of :data:`N_TEMPLATES` templates. A template
is a full anatomy drawn from its own stream; the patient's anatomy is the
template plus a small deformation towards the patient's own draw,
``template + λ·(own − template)`` for every numeric identity factor (per-rib
series element by element). Patients of one template look alike at a glance
(thorax shape, heart, habitus) and differ only in fine anatomy, as look-alike
strangers in a large archive do; a whole-image resemblance is no longer
enough to tell them apart.

The lung texture and vessel seeds stay the patient's own: the branching of
pulmonary vessels and the fine parenchymal pattern are individual (they differ
even between identical twins), so identity remains learnable from fine detail.
Sex comes from the template (look-alikes share it); age stays the patient's own.
"""
from __future__ import annotations

from dataclasses import fields, replace

import numpy as np

from reid_core.data.phantom.anatomy import PatientAnatomy

N_TEMPLATES = 48
TWIN_LAMBDA = 0.7
OWN_FIELDS = frozenset({"patient", "age", "sex", "vessel_seed", "texture_seed", "marks"})


def template_of(rng: np.random.Generator, n_templates: int = N_TEMPLATES) -> int:
    """The template index of one patient (uniform; drawn from the patient's own stream)."""
    return int(rng.integers(n_templates))


def _mix(template: object, own: object, lam: float) -> object:
    if isinstance(template, tuple):
        return tuple(_mix(t, o, lam) for t, o in zip(template, own))  # type: ignore[arg-type]
    return float(template + lam * (own - template))  # type: ignore[operator]


def blend_anatomy(own: PatientAnatomy, template: PatientAnatomy, lam: float = TWIN_LAMBDA) -> PatientAnatomy:
    """``template`` deformed by ``lam`` towards ``own`` (numeric factors); seeds, age and marks stay ``own``'s.

    ``lam`` = 0 gives the template, 1 the patient's own anatomy. Convex blends of
    in-range factors stay in range. Breast size follows the template's sex.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"twin deformation lambda must be in [0, 1], got {lam}")
    values = {f.name: _mix(getattr(template, f.name), getattr(own, f.name), lam)
              for f in fields(PatientAnatomy) if f.name not in OWN_FIELDS}
    if template.sex == "M":
        values["breast"] = 0.0
    elif own.sex == "M":  # a man's own draw has no breast size: keep the template's
        values["breast"] = template.breast
    values["rib_offsets"] = _round_series(values["rib_offsets"])
    values["rib_widths"] = _round_series(values["rib_widths"])
    return replace(own, sex=template.sex, **values)


def _round_series(series: object) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(round(v, 5) for v in side) for side in series)  # type: ignore[union-attr]

"""Phantom film variants (shortcut audit, issue 18): each differs from the film as generated only by its edit."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest

from reid_core.data.phantom import render
from reid_core.data.phantom.acquisition import StudySpec
from reid_core.data.phantom.devices import draw_marks
from reid_core.data.phantom.generator import PhantomGenerator
from reid_core.data.phantom.layers import build_layers
from reid_core.data.phantom.variants import (NEUTRAL, PINNED, Variant, acquisition_fields, audit_variants,
                                             factor_groups)

SIZE = 64


@pytest.fixture(scope="module")
def gen() -> PhantomGenerator:
    return PhantomGenerator(seed=1, size=SIZE)


def _variant(specs: list[StudySpec], name: str) -> Variant:
    return next(v for v in audit_variants(specs) if v.name == name)


def _first(gen: PhantomGenerator, want) -> StudySpec:
    return next(s for i in range(60) for s in gen.studies(i) if want(gen.patient(i), s))


@pytest.fixture
def at_detector(monkeypatch) -> list[tuple[np.ndarray, dict]]:
    """What each render hands its detector: the attenuation image and the render stream's state."""
    seen: list[tuple[np.ndarray, dict]] = []
    inner = render.detector

    def spy(a, spec, rng):
        seen.append((a.copy(), rng.bit_generator.state))
        return inner(a, spec, rng)

    monkeypatch.setattr(render, "detector", spy)
    return seen


def _only_removed(gen: PhantomGenerator, spec: StudySpec, variant: Variant, seen: list) -> np.ndarray:
    """Render ``spec`` as is and under ``variant``; check the noise stream is the same and the variant only
    takes attenuation away. Returns the attenuation taken away (output frame)."""
    seen.clear()
    gen.render_spec(spec)
    variant.render(gen, spec)
    (a, state_a), (b, state_b) = seen
    assert state_a == state_b  # the detector noise is drawn from the same point of the same stream
    assert (a - b >= -1e-6).all()
    return a - b


def test_render_edited_without_edits_is_render_spec(gen):
    spec = _first(gen, lambda anat, s: bool(s.tubes))
    assert np.array_equal(gen.render_edited(spec), gen.render_spec(spec))


def test_no_marks_changes_the_layers_exactly_where_the_marks_are(gen):
    marked = _first(gen, lambda anat, s: bool(anat.marks))
    anat = gen.patient(marked.patient)
    with_marks = gen.layers(marked.patient)
    without = build_layers(replace(anat, marks=()), with_marks.grid.n)
    marks = draw_marks(with_marks.grid, with_marks.thorax, anat.marks)
    for name in ("bone", "metal", "inner"):
        changed = getattr(with_marks, name) != getattr(without, name)
        assert not (changed & (getattr(marks, name) == 0)).any(), name
    assert any((getattr(with_marks, n) != getattr(without, n)).any() for n in ("bone", "metal", "inner"))
    for name in ("soft", "air", "heart", "knob", "vessels", "lungs"):
        assert np.array_equal(getattr(with_marks, name), getattr(without, name)), name


def test_no_marks_changes_films_of_marked_patients_only(gen, at_detector):
    plain = _first(gen, lambda anat, s: not anat.marks)
    variant = _variant([plain], "no_marks")
    assert np.array_equal(variant.render(gen, plain), gen.render_spec(plain))
    for kind in ("granuloma", "rib_fracture", "pacemaker"):
        marked = _first(gen, lambda anat, s: any(m.kind == kind for m in anat.marks))
        removed = _only_removed(gen, marked, variant, at_detector)
        assert 0 < (removed > 1e-6).mean() < 0.2, kind
        # the display window (99th percentile) may follow a bright mark, so the film changes beyond it
        assert not np.array_equal(variant.render(gen, marked), gen.render_spec(marked))


def test_marks_removal_leaves_the_generator_cache_alone(gen):
    marked = _first(gen, lambda anat, s: bool(anat.marks))
    before = gen.layers(marked.patient)
    _variant([marked], "no_marks").render(gen, marked)
    assert gen.layers(marked.patient) is before and gen.patient(marked.patient).marks


def test_no_devices_changes_films_with_devices_only(gen, at_detector):
    bare = _first(gen, lambda anat, s: not s.tubes)
    variant = _variant([bare], "no_devices")
    assert np.array_equal(variant.render(gen, bare), gen.render_spec(bare))
    for kind in ("et_tube", "ng_tube", "central_line", "ecg_leads"):
        tubed = _first(gen, lambda anat, s: kind in s.tubes)
        removed = _only_removed(gen, tubed, variant, at_detector)
        assert 0 < (removed > 1e-6).mean() < 0.5, kind
        assert not np.array_equal(variant.render(gen, tubed), gen.render_spec(tubed))


def test_pinning_rotation_sets_rotation_zero_and_nothing_else(gen):
    specs = [s for i in range(6) for s in gen.studies(i)]
    variant = _variant(specs, PINNED + "rotation")
    for s in specs:
        edited = variant.edit(s)
        assert edited.rotation == 0.0 and replace(edited, rotation=s.rotation) == s


def test_factor_groups_join_fields_sharing_a_leading_word():
    groups = factor_groups(acquisition_fields())
    assert groups["shift"] == ("shift_x", "shift_y")
    assert groups["marker"] == ("marker", "marker_pos")
    assert groups["collimation"] == ("collimation", "collimation_value")
    assert groups["gastric_bubble"] == ("gastric_bubble",) and "soft_drift" in groups
    assert not {"patient", "study", "tubes", "findings", "modality"} & set(acquisition_fields())


@dataclass(frozen=True)
class _LaterSpec(StudySpec):
    grid_ratio: float = 0.0


def test_a_field_a_later_phantom_adds_is_audited_at_its_median(gen):
    specs = [_LaterSpec(**{**s.__dict__, "grid_ratio": float(k)})
             for k, s in enumerate(gen.studies(0) + gen.studies(1))]
    variant = _variant(specs, PINNED + "grid_ratio")
    assert variant.set_fields == {"grid_ratio": float(np.median(np.arange(len(specs))))}
    everything = _variant(specs, PINNED + "all_acquisition").set_fields
    assert everything["rotation"] == NEUTRAL["rotation"] and "grid_ratio" in everything

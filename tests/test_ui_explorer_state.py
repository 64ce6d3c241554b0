"""The explorer's state, without Streamlit: chart events → actions, overlay marks, and state in the URL."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reid_core.ui import map_actions, map_marks, projection, url_state

COORDS = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
IDS = ["a", "b", "c"]


def test_a_click_inspects_a_region_collects_an_empty_event_clears():
    click = {"selection": {"points": [{"customdata": ["b"]}], "box": [], "lasso": []}}
    assert map_actions.map_action(click, COORDS, IDS, regions=False) == map_actions.MapAction("click", ("b",))
    assert map_actions.map_action(click, COORDS, IDS, regions=False).focus == "b"
    box = {"selection": {"points": [{"customdata": ["a"]}, {"customdata": ["b"]}],
                         "box": [{"x": [-1, 2], "y": [-1, 2]}], "lasso": []}}
    act = map_actions.map_action(box, COORDS, IDS, regions=False)
    assert act.kind == "select" and act.ids == ("a", "b") and act.focus is None
    # a box around a single point both collects it and inspects it (clicks do not arrive in box/lasso mode)
    one = {"selection": {"points": [{"customdata": ["c"]}], "box": [{"x": [4, 6], "y": [4, 6]}], "lasso": []}}
    assert map_actions.map_action(one, COORDS, IDS, regions=True) == map_actions.MapAction("select", ("c",))
    assert map_actions.map_action(one, COORDS, IDS, regions=True).focus == "c"
    # a sampled map: the region selects every point inside, drawn or not
    sampled = {"selection": {"points": [], "box": [{"x": [-1, 2], "y": [-1, 2]}], "lasso": []}}
    assert map_actions.map_action(sampled, COORDS, IDS, regions=True).ids == ("a", "b")
    for empty in (None, {"selection": {"points": [], "box": [], "lasso": []}}):
        assert map_actions.map_action(empty, COORDS, IDS, regions=False).kind == "clear"


def test_highlight_traces_mark_selection_neighbours_focus_and_a_directed_patient_timeline():
    frame = pd.DataFrame({"image_id": ["x2", "x0", "y0", "x1"], "patient_id": ["X", "X", "Y", "X"],
                          "study_order": [2, 0, 0, 1]})
    coords = np.array([[2.0, 2.0], [0.0, 0.0], [9.0, 9.0], [1.0, 1.0]])
    traces = map_marks.highlight_traces(coords, frame, selection=["y0", "nope"], focus="x1",
                                        neighbours=["x0", "x2"], patient="X")
    by_name = {t.name: t for t in traces}
    assert set(by_name) == {"selection (1)", "patient X: 3 films in study order", "neighbours (2)", "inspected: x1"}
    timeline = by_name["patient X: 3 films in study order"]
    assert list(timeline.x) == [0.0, 1.0, 2.0]  # in study order, not row order
    assert list(timeline.text) == ["1 first", "2", "3"] and timeline.marker.symbol[0] == "square"
    assert all(t.customdata is None and t.hoverinfo == "skip" for t in traces)  # clicks reach the real points
    assert [t.name for t in traces][-1] == "inspected: x1"  # drawn last, on top
    three = map_marks.highlight_traces(np.c_[coords, coords[:, :1]], frame, focus="x1", patient="X")
    assert {t.type for t in three} == {"scatter3d"} and three[-1].marker.symbol == "diamond"
    assert map_marks.highlight_traces(coords, frame) == []


def test_pca_axis_titles_carry_the_explained_variance(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) * np.array([6.0, 3.0, 1.0, 1.0, 1.0, 1.0])
    share = projection.explained_variance(x, 3)
    assert share[0] > share[1] > share[2] > 0 and share.sum() < 1
    total = np.var(x - x.mean(0), axis=0).sum()
    coords = projection.project(x, "pca", 2)
    assert share[:2] == pytest.approx(coords.var(axis=0) / total, rel=1e-4)  # the variance each axis carries
    assert projection.axis_titles("pca", 2, share)[0] == f"PC1 ({100 * share[0]:.1f} % of variance)"
    assert projection.axis_titles("umap", 3) == ("UMAP 1", "UMAP 2", "UMAP 3")
    assert projection.explained_variance(np.ones((5, 3)), 2).tolist() == [0.0, 0.0]  # no variance, no share


def test_url_fields_parse_what_they_accept_and_only_what_changed():
    fields = (url_state.UrlField("id", "focus", url_state.choice(["p0_0", "p1_0"])),
              url_state.UrlField("dims", "dims", url_state.choice((2, 3), int)),
              url_state.UrlField("k", "k", url_state.int_in(1, 24)),
              url_state.UrlField("alpha", "alpha", url_state.float_in(-3.0, 3.0)))
    params = {"id": "p1_0", "dims": "3", "k": "99", "alpha": "nan", "other": "x"}
    assert url_state.parse_params(params, fields) == {"focus": "p1_0", "dims": 3}  # k, alpha out of range: skipped
    assert url_state.parse_params({"id": "../../etc"}, fields) == {}
    written = {"id": "p0_0", "dims": "3"}
    assert url_state.changed(params, written, fields) == {"id", "k", "alpha"}  # dims is what the page wrote
    assert url_state.changed(params, None, fields) == {"id", "dims", "k", "alpha"}  # on arrival: everything
    assert url_state.parse_params(params, fields, only={"id"}) == {"focus": "p1_0"}
    out = url_state.encode({"focus": "p0_0", "dims": 2, "k": None, "alpha": 1.5}, fields)
    assert out == {"id": "p0_0", "dims": "2", "alpha": "1.5"}
    assert url_state.parse_params(out, fields) == {"focus": "p0_0", "dims": 2, "alpha": 1.5}  # a round trip


def test_hover_thumbnails_are_small_jpegs_and_stop_at_the_limit():
    import base64
    import io

    from PIL import Image

    from reid_core.ui import thumbs

    film = (np.arange(256 * 200) % 251).astype(np.uint8).reshape(256, 200)
    url = thumbs.data_url(film)
    assert url.startswith("data:image/jpeg;base64,")
    im = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert im.format == "JPEG" and max(im.size) == thumbs.HOVER_SIDE and im.size[0] < im.size[1]  # aspect kept
    got = thumbs.hover_thumbnails(["a", "b", "c"], lambda i: None if i == "b" else film)
    assert set(got) == {"a", "c"}  # no pixels, no preview
    assert thumbs.hover_thumbnails(["a", "b"], lambda i: film, limit=1) is None

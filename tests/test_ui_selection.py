"""Large maps: the drawn sample, point-in-polygon, and box/lasso regions → every image id inside."""
from __future__ import annotations

import numpy as np

from reid_core.ui import selection


def test_drawn_rows_is_a_fixed_sorted_sample_only_above_the_limit():
    assert selection.drawn_rows(100, limit=100) is None
    rows = selection.drawn_rows(1000, limit=50)
    assert len(rows) == 50 and len(set(rows)) == 50 and np.all(np.diff(rows) > 0) and rows.max() < 1000
    assert np.array_equal(rows, selection.drawn_rows(1000, limit=50))  # the same map on every rerun
    assert len(selection.drawn_rows(selection.MAX_DRAWN_POINTS + 1)) == selection.MAX_DRAWN_POINTS


def test_inside_polygon_square_and_concave():
    pts = np.array([[0.5, 0.5], [1.5, 0.5], [-0.1, 0.2], [0.5, 1.5], [1.5, 1.5], [0.9, 0.1]])
    square = selection.inside_polygon(pts, [0, 1, 1, 0], [0, 0, 1, 1])
    assert square.tolist() == [True, False, False, False, False, True]
    # an L: [0, 2] × [0, 1] plus [0, 1] × [1, 2]; (1.5, 1.5) lies in the notch, outside
    ell_x, ell_y = [0, 2, 2, 1, 1, 0, 0], [0, 0, 1, 1, 2, 2, 0]  # closed explicitly (first vertex repeated)
    assert selection.inside_polygon(pts, ell_x, ell_y).tolist() == [True, True, False, True, False, True]
    assert not selection.inside_polygon(pts, [0, 1], [0, 1]).any()  # fewer than 3 vertices: no area


def test_ids_in_regions_unions_boxes_and_lassos_over_all_points():
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 5.0], [0.2, 4.0]])
    ids = ["a", "b", "c", "d", "e"]
    box = {"xref": "x", "yref": "y", "x": [2.5, 0.5], "y": [0.5, 2.5]}  # reversed corners are fine
    lasso = {"xref": "x", "yref": "y", "x": [-1, 1, -1], "y": [3, 4, 5]}
    assert selection.ids_in_regions({"selection": {"box": [box], "lasso": []}}, coords, ids) == ["b", "c"]
    assert selection.ids_in_regions({"selection": {"box": [], "lasso": [lasso]}}, coords, ids) == ["e"]
    both = {"selection": {"box": [box], "lasso": [lasso], "points": [{"customdata": ["a"]}]}}
    assert selection.ids_in_regions(both, coords, ids) == ["b", "c", "e"]
    click = {"selection": {"box": [], "lasso": [], "points": [{"customdata": ["d"]}]}}
    assert selection.ids_in_regions(click, coords, ids) is None and selection.ids_in_regions(None, coords, ids) is None


def test_event_image_ids_regions_on_sampled_maps_customdata_otherwise():
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    ids = ["a", "b", "c"]
    box = {"x": [0.5, 1.5], "y": [0.5, 1.5]}
    lasso_event = {"selection": {"box": [box], "lasso": [], "points": [{"customdata": ["a", "P0"]}]}}
    assert selection.event_image_ids(lasso_event, coords, ids, regions=True) == ["b"]  # every point inside
    assert selection.event_image_ids(lasso_event, coords, ids, regions=False) == ["a"]  # only what was drawn
    click = {"selection": {"box": [], "lasso": [], "points": [{"customdata": ["c"]}, {"customdata": ["zz"]}]}}
    assert selection.event_image_ids(click, coords, ids, regions=True) == ["c"]  # unknown ids dropped
    assert selection.event_image_ids(None, coords, ids, regions=True) == []

"""Large embedding maps: draw a fixed sample of the points, select every point inside a box or lasso.

A WebGL scatter of 10^5 points is slow to *select* in a browser without a GPU:
plotly re-tests and redraws every marker at each mouse move of a lasso, and the
selection event carries ~180 bytes per selected point back to the server. Above
:data:`MAX_DRAWN_POINTS` the explorer therefore draws a fixed random sample
(:func:`drawn_rows`) and, for box and lasso selections, tests *all* points
against the regions Streamlit returns with the event
(``selection.box`` / ``selection.lasso``, in data coordinates) with
:func:`ids_in_regions`: the selection still holds every point inside, not only
the drawn ones. Clicks keep reading the clicked point's id from ``customdata``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from reid_core.ui import figures

MAX_DRAWN_POINTS = 20_000


def drawn_rows(n: int, limit: int | None = None, seed: int = 0) -> np.ndarray | None:
    """Sorted rows of a fixed random sample of ``limit`` (default :data:`MAX_DRAWN_POINTS`) of ``n`` points,
    or None when all ``n`` are drawn."""
    limit = MAX_DRAWN_POINTS if limit is None else limit
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def inside_polygon(points: np.ndarray, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """Boolean mask of ``points`` (N×2) inside the polygon with vertices ``(xs[i], ys[i])`` (even–odd rule).

    The polygon is closed implicitly; vertices may or may not repeat the first one.
    """
    px, py = np.asarray(points[:, 0], float), np.asarray(points[:, 1], float)
    vx, vy = np.asarray(xs, float), np.asarray(ys, float)
    inside = np.zeros(len(px), bool)
    if len(vx) < 3:
        return inside
    for x0, y0, x1, y1 in zip(vx, vy, np.roll(vx, -1), np.roll(vy, -1)):
        if y0 == y1:
            continue  # a horizontal edge never crosses the horizontal ray
        crosses = (y0 > py) != (y1 > py)
        x_at = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (px < x_at)
    return inside


def ids_in_regions(event: Mapping[str, Any] | None, coords: np.ndarray, image_ids: Sequence[str]) -> list[str] | None:
    """Image ids (in row order) of the 2-D ``coords`` inside the event's boxes or lassos; None without regions.

    ``event`` is what ``st.plotly_chart(..., on_select=...)`` returns; a click-only
    selection has no region and gives None (read its point's ``customdata`` instead).
    """
    selection = (event.get("selection") if hasattr(event, "get") else None) or {}
    boxes, lassos = selection.get("box") or [], selection.get("lasso") or []
    if not boxes and not lassos:
        return None
    coords = np.asarray(coords, float)
    mask = np.zeros(len(coords), bool)
    for box in boxes:
        (x0, x1), (y0, y1) = sorted(box["x"][:2]), sorted(box["y"][:2])
        mask |= (coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)
    for lasso in lassos:
        mask |= inside_polygon(coords, lasso["x"], lasso["y"])
    ids = np.asarray(image_ids, dtype=object)
    return [str(i) for i in ids[mask]]


def event_image_ids(event: Mapping[str, Any] | None, coords: np.ndarray, image_ids: Sequence[str],
                    regions: bool) -> list[str]:
    """The image ids a chart event selects among ``image_ids`` (aligned with ``coords``).

    ``regions`` (a sampled 2-D map): a box or lasso selects every point inside it
    (:func:`ids_in_regions`); otherwise, and for clicks, the selected points'
    ``customdata`` ids (:func:`reid_core.ui.figures.selected_ids`).
    """
    inside = ids_in_regions(event, coords, image_ids) if regions else None
    if inside is not None:
        return inside
    known = set(image_ids)
    return [i for i in figures.selected_ids(event) if i in known]

"""Marks laid over the embedding map: the selection, the inspected image and its neighbours, one patient's films.

Each mark is its own trace with no ``customdata`` and no hover, so clicks and selections still reach the
points underneath and are read through their ids (:func:`reid_core.ui.figures.selected_ids` skips points
without an id). One patient's films are joined in study order with arrow heads pointing forward in time
(2-D) and numbered 1, 2, … from the first study, which is marked apart.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

_SYMBOL_3D = {"star": "diamond", "arrow": "circle"}
SELECTION_COLOUR, FOCUS_COLOUR, NEIGHBOUR_COLOUR, PATIENT_COLOUR = "#222222", "#d62728", "#ff7f0e", "#1f1f8f"


def _rows(frame: pd.DataFrame, ids: Sequence[str]) -> np.ndarray:
    pos = pd.Index(frame["image_id"].astype(str)).get_indexer([str(i) for i in ids])
    return pos[pos >= 0]


def _points(coords: np.ndarray, rows: np.ndarray, name: str, marker: dict, mode: str = "markers",
            text: list[str] | None = None, line: dict | None = None) -> go.BaseTraceType:
    common = dict(mode=mode, name=name, hoverinfo="skip", showlegend=True, text=text)
    if line is not None:
        common["line"] = line
    if coords.shape[1] == 3:  # Scatter3d has fewer symbols and no marker angles
        marker = {k: v for k, v in marker.items() if k not in ("angleref", "standoff")}
        symbol = marker.get("symbol")
        marker["symbol"] = ([_SYMBOL_3D.get(s, s) for s in symbol] if isinstance(symbol, list)
                            else _SYMBOL_3D.get(symbol, symbol))
        return go.Scatter3d(x=coords[rows, 0], y=coords[rows, 1], z=coords[rows, 2], marker=marker, **common)
    return go.Scatter(x=coords[rows, 0], y=coords[rows, 1], marker=marker, textposition="top center", **common)


def highlight_traces(coords: np.ndarray, frame: pd.DataFrame, selection: Sequence[str] = (),
                     focus: str | None = None, neighbours: Sequence[str] = (),
                     patient: str | None = None) -> list[go.BaseTraceType]:
    """Overlay traces (in drawing order) for the map of ``coords`` (aligned with ``frame``'s rows).

    ``selection``: ringed; ``neighbours``: orange rings; ``focus``: a red star (a diamond in 3-D);
    ``patient``: that patient's films in study order, numbered, first study a square, arrows forward in time.
    Ids not on the map are ignored.
    """
    coords = np.asarray(coords, dtype=float)
    traces: list[go.BaseTraceType] = []
    size = 11 if coords.shape[1] == 2 else 6
    rows = _rows(frame, selection)
    if len(rows):
        traces.append(_points(coords, rows, f"selection ({len(rows)})",
                              {"symbol": "circle-open", "size": size, "color": SELECTION_COLOUR,
                               "line": {"width": 1.5}}))
    if patient is not None:
        mine = frame.assign(_row=np.arange(len(frame)))
        mine = mine[mine["patient_id"].astype(str) == str(patient)]
        mine = mine.sort_values(["study_order", "image_id"], kind="stable")
        rows = mine["_row"].to_numpy()
        if len(rows):
            labels = [f"{k + 1}" + (" first" if k == 0 else "") for k in range(len(rows))]
            symbols = ["square"] + ["arrow"] * (len(rows) - 1)
            traces.append(_points(coords, rows, f"patient {patient}: {len(rows)} films in study order",
                                  {"symbol": symbols, "size": [size + 3] * len(rows), "color": PATIENT_COLOUR,
                                   "angleref": "previous", "standoff": 4},
                                  mode="lines+markers+text", text=labels,
                                  line={"color": PATIENT_COLOUR, "width": 2}))
    rows = _rows(frame, neighbours)
    if len(rows):
        traces.append(_points(coords, rows, f"neighbours ({len(rows)})",
                              {"symbol": "circle-open", "size": size + 5, "color": NEIGHBOUR_COLOUR,
                               "line": {"width": 2.5}}))
    rows = _rows(frame, [focus] if focus is not None else [])
    if len(rows):
        traces.append(_points(coords, rows, f"inspected: {focus}",
                              {"symbol": "star", "size": size + 9, "color": FOCUS_COLOUR,
                               "line": {"width": 1, "color": "white"}}))
    return traces

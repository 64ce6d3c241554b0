"""Plotly figures of the app, and plotly selections mapped back to image ids.

Every point of the embedding scatter carries its ``image_id`` first in ``customdata``
(``[image_id, patient_id, study_order, findings]``); :func:`selected_ids` reads a selection through that id and
never through per-trace point indices, which change whenever the traces are
split differently (another colour-by, another category order).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from reid_core.ui.tables import color_values

MAX_LEGEND_CATEGORIES = 25  # more categories (e.g. patients) share one trace, coloured by code, no legend
LINE_PATIENT_LIMIT = 500  # patients whose studies are joined by a line, at most
PALETTE = qualitative.Plotly + qualitative.D3 + qualitative.Set2
MARKER_SIZE_2D, MARKER_SIZE_3D = 6, 3
# Above this many points 2-D markers shrink to MARKER_SIZE_2D_DENSE: less overplotting, and fewer pixels for
# every redraw while a lasso is dragged (a software-WebGL browser spent 25 % less time per drag at 100k points).
DENSE_POINTS, MARKER_SIZE_2D_DENSE = 10_000, 3
# Up to this many points a 2-D map is SVG (``Scatter``): no WebGL context to set up, which a browser without a GPU
# pays on every visit (explorer page switch 1.17 s with WebGL vs 0.53 s with SVG at 96 points); above, WebGL.
SVG_MAX_POINTS = 2_000


def _scatter_2d(n_points: int) -> type[go.Scatter] | type[go.Scattergl]:
    """The 2-D trace type of a map of ``n_points``: SVG up to :data:`SVG_MAX_POINTS`, WebGL above."""
    return go.Scatter if n_points <= SVG_MAX_POINTS else go.Scattergl


HOVER_COLUMNS: tuple[str, ...] = ("image_id", "patient_id", "study_order", "findings")
_HOVER = ("<b>%{customdata[0]}</b><br>patient %{customdata[1]}, study %{customdata[2]}<br>%{customdata[3]}"
          "<extra></extra>")


def _customdata(frame: pd.DataFrame) -> np.ndarray:
    """N×4 object array: ``[image_id, patient_id, study_order, findings]`` (the id first: selections read it)."""
    cols = [frame[c].astype(str).to_numpy() if c in frame.columns else np.full(len(frame), "")
            for c in HOVER_COLUMNS]
    return np.stack(cols, axis=1).astype(object) if len(frame) else np.empty((0, len(HOVER_COLUMNS)), object)


def _trace(coords: np.ndarray, mask: np.ndarray, custom: np.ndarray, name: str, marker: dict[str, Any],
           showlegend: bool = True) -> go.BaseTraceType:
    """One marker trace of the rows in ``mask``; SVG or WebGL by the size of the whole map (``coords``)."""
    sel = np.flatnonzero(mask)
    common = dict(mode="markers", name=name, customdata=custom[sel], hovertemplate=_HOVER, showlegend=showlegend)
    if coords.shape[1] == 3:
        return go.Scatter3d(x=coords[sel, 0], y=coords[sel, 1], z=coords[sel, 2],
                            marker={"size": MARKER_SIZE_3D, **marker}, **common)
    size = MARKER_SIZE_2D if len(coords) <= DENSE_POINTS else MARKER_SIZE_2D_DENSE
    return _scatter_2d(len(coords))(x=coords[sel, 0], y=coords[sel, 1], marker={"size": size, **marker}, **common)


def patient_lines(coords: np.ndarray, frame: pd.DataFrame, limit: int = LINE_PATIENT_LIMIT) -> go.BaseTraceType | None:
    """One line trace joining each patient's images in study order (first ``limit`` patients with ≥ 2 images)."""
    order = frame.assign(_row=np.arange(len(frame))).sort_values(["patient_id", "study_order", "image_id"])
    counts = order.groupby("patient_id", sort=False)["_row"].transform("size")
    order = order[counts.to_numpy() >= 2]
    keep = order["patient_id"].drop_duplicates().head(limit)
    order = order[order["patient_id"].isin(set(keep))]
    if order.empty:
        return None
    xs: list[list[float | None]] = [[] for _ in range(coords.shape[1])]
    symbols: list[str] = []
    for _, rows in order.groupby("patient_id", sort=False)["_row"]:
        for axis in range(coords.shape[1]):
            xs[axis].extend(coords[rows.to_numpy(), axis].tolist() + [None])
        symbols.extend(["circle-open"] + ["arrow"] * (len(rows) - 1) + ["circle"])
    colour = "rgba(120,120,120,0.45)"
    style = dict(mode="lines", name="patient timelines", hoverinfo="skip", showlegend=True,
                 line={"color": colour, "width": 1})
    if coords.shape[1] == 3:
        return go.Scatter3d(x=xs[0], y=xs[1], z=xs[2], **style)
    trace = _scatter_2d(len(coords))
    if trace is go.Scatter:  # SVG: arrow heads point forward in time, a ring marks each first study
        style.update(mode="lines+markers", name="patient timelines (→ later study)",
                     marker={"symbol": symbols, "size": 7, "angleref": "previous", "color": "rgba(90,90,90,0.7)"})
    return trace(x=xs[0], y=xs[1], **style)


def embedding_scatter(coords: np.ndarray, frame: pd.DataFrame, color_by: str = "patient",
                      connect_patients: bool = False, title: str | None = None,
                      draw_rows: np.ndarray | None = None, axis_titles: tuple[str, ...] | None = None,
                      overlays: list[go.BaseTraceType] | None = None, ui_revision: str = "") -> go.Figure:
    """Scatter of ``coords`` coloured by one metadata column: 2-D SVG up to :data:`SVG_MAX_POINTS` points,
    WebGL (``Scattergl``) above, ``Scatter3d`` in 3-D.

    ``frame`` is aligned with ``coords`` row by row and has at least ``image_id``,
    ``patient_id``, ``study_order`` and the colour column. Each point's
    ``customdata`` is ``[image_id, patient_id, study_order, findings]`` (the hover text reads it too).
    ``draw_rows``: draw only these rows (a sample of a big map, see :mod:`reid_core.ui.selection`); the
    axes still span every point, so a lasso around the whole plot encloses the undrawn ones too.
    ``axis_titles``: one per axis (e.g. ``PC1 (41.2 % of variance)``); ``overlays``: traces drawn on top
    (:func:`reid_core.ui.map_marks.highlight_traces`). The map opens in pan mode: there a click selects a point.
    ``ui_revision``: zoom and camera persist across reruns whatever it is; the drag mode persists only while it
    stays the same, so a page that changes it after a box/lasso selection returns the map to pan mode, where the
    next click inspects a point again (clicks do not reach the app in box/lasso mode).
    """
    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3) or len(coords) != len(frame):
        raise ValueError(f"coords must be N×2 or N×3 aligned with {len(frame)} rows, got {coords.shape}")
    full_coords = None
    if draw_rows is not None:
        full_coords, coords, frame = coords, coords[draw_rows], frame.iloc[draw_rows].reset_index(drop=True)
    ids = frame["image_id"].astype(str).to_numpy()
    custom = _customdata(frame)
    values, numeric = color_values(frame, color_by)
    traces: list[go.BaseTraceType] = []
    if connect_patients:
        line = patient_lines(coords, frame)
        if line is not None:
            traces.append(line)
    if numeric:
        known = np.isfinite(values)
        if known.any():
            traces.append(_trace(coords, known, custom, color_by,
                                 {"color": values[known], "colorscale": "Viridis", "showscale": True,
                                  "colorbar": {"title": {"text": color_by}}}, showlegend=False))
        if (~known).any():
            traces.append(_trace(coords, ~known, custom, f"{color_by} unknown", {"color": "lightgrey"}))
    else:
        cats, codes = np.unique(values.astype(str), return_inverse=True)
        if len(cats) <= MAX_LEGEND_CATEGORIES:
            for k, cat in enumerate(cats):
                traces.append(_trace(coords, codes == k, custom, cat, {"color": PALETTE[k % len(PALETTE)]}))
        else:
            # small integers on a stepped colour scale: plotly checks a number array far faster than 10^5 colour
            # strings, and each selected point echoes its colour back (an integer, not a 17-digit fraction)
            k = len(PALETTE)
            steps = [[pos, c] for j, c in enumerate(PALETTE) for pos in (j / k, (j + 1) / k)]
            traces.append(_trace(coords, np.ones(len(ids), bool), custom, f"{len(cats)} {color_by}s",
                                 {"color": (codes % k).astype(np.int16), "colorscale": steps, "cmin": -0.5,
                                  "cmax": k - 0.5}, showlegend=False))
    fig = go.Figure(traces + list(overlays or []))
    fig.update_layout(title=title, height=620, margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
                      legend={"itemsizing": "constant", "title": {"text": color_by}}, dragmode="pan",
                      uirevision=f"embedding{ui_revision}")
    # zoom and camera persist across reruns, independently of the drag mode
    if coords.shape[1] == 3:
        fig.update_layout(scene={"uirevision": "embedding", "dragmode": "turntable"})  # drag rotates
    else:
        fig.update_layout(xaxis={"uirevision": "embedding"}, yaxis={"uirevision": "embedding"})
    if full_coords is not None and len(full_coords):
        lo, hi = np.min(full_coords, axis=0), np.max(full_coords, axis=0)
        pad = 0.05 * np.maximum(hi - lo, 1e-9)
        ranges = [[float(a - p), float(b + p)] for a, b, p in zip(lo, hi, pad)]
        if coords.shape[1] == 3:
            fig.update_layout(scene={f"{ax}axis": {"range": r} for ax, r in zip("xyz", ranges)})
        else:
            fig.update_layout(xaxis={"range": ranges[0]}, yaxis={"range": ranges[1]})
    if axis_titles:
        if coords.shape[1] == 3:
            fig.update_layout(scene={f"{ax}axis": {"title": {"text": t}} for ax, t in zip("xyz", axis_titles)})
        else:
            fig.update_xaxes(title_text=axis_titles[0], automargin=True)
            fig.update_yaxes(title_text=axis_titles[1], automargin=True)
    return fig


def selected_ids(event: Mapping[str, Any] | None) -> list[str]:
    """Image ids of a ``st.plotly_chart(..., on_select=...)`` event, in selection order, without repeats.

    Reads ``event["selection"]["points"][*]["customdata"]`` (``[image_id, ...]`` or a bare id);
    points without customdata (timeline lines) are ignored.
    """
    if not event:
        return []
    selection = event.get("selection") if hasattr(event, "get") else None
    points = (selection or {}).get("points") or []
    out: dict[str, None] = {}
    for point in points:
        cd = point.get("customdata") if hasattr(point, "get") else None
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is None or (isinstance(cd, float) and np.isnan(cd)):
            continue
        out[str(cd)] = None
    return list(out)


# ---------------------------------------------------------------------------- smaller figures
def bar_figure(counts: pd.Series, title: str, x_title: str | None = None, y_title: str = "count",
               height: int = 300) -> go.Figure:
    fig = go.Figure(go.Bar(x=[str(i) for i in counts.index], y=counts.to_numpy()))
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title=x_title or counts.index.name, yaxis_title=y_title)
    return fig


def drift_figure(baseline_id: str, drift: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Drift from the baseline against years since it; abnormal studies in red with their findings."""
    d = drift.sort_values("years_since_baseline")
    x = np.r_[0.0, d["years_since_baseline"].to_numpy(float)]
    y = np.r_[0.0, d["drift"].to_numpy(float)]
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", line={"color": "grey"}, name="drift", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", marker={"size": 11, "color": "steelblue",
                             "symbol": "star"}, name="baseline (No Finding)", customdata=[[baseline_id]],
                             hovertemplate=f"baseline {baseline_id}<extra></extra>"))
    for abnormal, colour, name, symbol in ((False, "steelblue", "no finding", "circle"),
                                           (True, "crimson", "finding", "x")):
        part = d[d["abnormal"].to_numpy(bool) == abnormal]
        if part.empty:
            continue
        fig.add_trace(go.Scatter(
            x=part["years_since_baseline"], y=part["drift"], mode="markers+text" if abnormal else "markers",
            marker={"size": 10, "color": colour, "symbol": symbol}, name=name,
            text=part["findings"].str.replace("|", ", ") if abnormal else None, textposition="top center",
            customdata=part[["image_id", "findings"]].to_numpy(),
            hovertemplate="%{customdata[0]}<br>%{x:.2f} y, drift %{y:.3f}<br>%{customdata[1]}<extra></extra>"))
    fig.update_layout(title=title, height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title="years since baseline (study steps when undated)",
                      yaxis_title="embedding distance from baseline")
    return fig


def training_curves(train: pd.DataFrame, val: pd.DataFrame) -> go.Figure:
    """Loss (and learning rate) per logged step, and validation retrieval metrics per validation."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation"),
                        specs=[[{"secondary_y": True}, {}]])
    if not train.empty and "loss" in train:
        fig.add_trace(go.Scatter(x=train["step"], y=train["loss"], mode="lines", name="loss"), row=1, col=1)
        if "lr" in train:
            fig.add_trace(go.Scatter(x=train["step"], y=train["lr"], mode="lines", name="learning rate",
                                     line={"dash": "dot"}), row=1, col=1, secondary_y=True)
    for col in ("map_at_r", "precision_at_1", "r_precision"):
        if not val.empty and col in val:
            fig.add_trace(go.Scatter(x=val["step"], y=val[col], mode="lines+markers", name=f"val {col}"),
                          row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(rangemode="tozero", row=1, col=1, secondary_y=True, title_text="learning rate")  # no lr < 0
    fig.update_yaxes(range=[0, 1.02], row=1, col=2, title_text="validation score")  # scores live in [0, 1]
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def database_size_figure(curve: list[dict[str, Any]] | pd.DataFrame) -> go.Figure:
    """Top-1 accuracy as distractor patients join the gallery (``report.json``'s ``database_size_curve``)."""
    c = pd.DataFrame(curve)
    fig = go.Figure()
    if not c.empty:
        fig.add_trace(go.Scatter(x=c["gallery_size"], y=c["precision_at_1"], mode="lines+markers", name="P@1",
                                 customdata=c[["n_distractor_patients"]].to_numpy() if "n_distractor_patients" in c
                                 else None,
                                 hovertemplate="gallery %{x} images<br>P@1 %{y:.3f}<extra></extra>"))
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10}, title="database-size curve",
                      xaxis_title="gallery size (images)", yaxis={"title": "P@1", "range": [0, 1.02]},
                      xaxis_type="log")
    return fig


def roc_figure(roc: Mapping[str, Any], point: Any | None = None, title: str = "ROC on held-out pairs") -> go.Figure:
    """The stored ROC (``fpr``/``tpr``/``thresholds`` lists) with the chance line and, if given, the operating
    point (an object with ``fpr``, ``tpr``, ``threshold``, ``sensitivity``, ``specificity``) marked."""
    fig = go.Figure([
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", hoverinfo="skip",
                   line={"color": "lightgrey", "dash": "dash"}),
        go.Scatter(x=roc["fpr"], y=roc["tpr"], mode="lines", name="verifier", line={"color": "steelblue"},
                   customdata=np.asarray(roc["thresholds"], dtype=float),
                   hovertemplate="p ≥ %{customdata:.3f}<br>FPR %{x:.3f}, TPR %{y:.3f}<extra></extra>"),
    ])
    if point is not None:
        fig.add_trace(go.Scatter(
            x=[point.fpr], y=[point.tpr], mode="markers", name=f"threshold {point.threshold:.2f}",
            marker={"size": 13, "color": "crimson", "symbol": "x"},
            hovertemplate=(f"p ≥ {point.threshold:.2f}<br>sensitivity {point.sensitivity:.3f}<br>"
                           f"specificity {point.specificity:.3f}<extra></extra>")))
    fig.update_layout(title=title, height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"title": "false positive rate (1 − specificity)", "range": [0, 1]},
                      yaxis={"title": "true positive rate (sensitivity)", "range": [0, 1.02]},
                      legend={"x": 0.55, "y": 0.05})
    return fig


def det_figure(galleries: list[dict[str, Any]]) -> go.Figure:
    """FNIR against FPIR (both log) per gallery size, FRVT-style, from ``report["identification"]["galleries"]``;
    each FNIR-at-FPIR operating point is marked. Rates of 0 are left off (no place on a log axis)."""
    fig = go.Figure()
    for k, g in enumerate(x for x in galleries if "det" in x):
        det = pd.DataFrame(g["det"])
        det = det[(det["fpir"] > 0) & (det["fnir"] > 0)]
        colour = PALETTE[k % len(PALETTE)]
        fig.add_trace(go.Scatter(x=det["fpir"], y=det["fnir"], mode="lines", name=f"gallery {g['gallery_size']:,}",
                                 line={"color": colour}, customdata=det["distance_threshold"],
                                 hovertemplate="FPIR %{x:.4f}<br>FNIR %{y:.3f}<br>d < %{customdata:.3f}"
                                               "<extra></extra>"))
        pts = [p for p in g.get("fnir_at_fpir", []) if p.get("fnir") and p.get("fpir")]
        if pts:
            fig.add_trace(go.Scatter(x=[p["fpir"] for p in pts], y=[p["fnir"] for p in pts], mode="markers",
                                     marker={"color": colour, "size": 10, "symbol": "x"}, showlegend=False,
                                     hovertemplate="FNIR %{y:.3f} at FPIR %{x:.4f}<extra></extra>"))
    fig.update_layout(title="DET: 1:N identification", height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"title": "FPIR (non-mated searches answered)", "type": "log"},
                      yaxis={"title": "FNIR (mated searches missed)", "type": "log"})
    return fig


def reliability_figure(calibration: Mapping[str, Any], sets: tuple[str, ...]) -> go.Figure:
    """Observed share of same-patient pairs against mean p_same per bin, one line per pair set."""
    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated", hoverinfo="skip",
                                line={"color": "lightgrey", "dash": "dash"})])
    for k, name in enumerate(sets):
        rows = pd.DataFrame((calibration.get(name) or {}).get("reliability") or [])
        if rows.empty:
            continue
        fig.add_trace(go.Scatter(x=rows["confidence"], y=rows["frequency"], mode="lines+markers",
                                 name=name.replace("_", " "), customdata=rows["n"],
                                 marker={"size": np.clip(4 + 2 * np.log1p(rows["n"]), 4, 16),
                                         "color": PALETTE[k % len(PALETTE)]},
                                 hovertemplate="mean p_same %{x:.3f}<br>observed %{y:.3f}<br>%{customdata} pairs"
                                               "<extra></extra>"))
    fig.update_layout(title="reliability of p_same", height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"title": "mean p_same in the bin", "range": [0, 1]},
                      yaxis={"title": "observed share of same-patient pairs", "range": [0, 1.02]})
    return fig

"""Embedding explorer: PCA / UMAP map of the embeddings, selections → gallery, a point → its neighbours.

State: the inspected image is the picker's key (``explorer_focus``), which a click on the map also sets (a
pan/zoom click through the chart's selection, a box/lasso or 3-D click through ``_map_events``), so the last
action wins and the picker always names what is shown; the box/lasso selection is kept as ids
(``_explorer_selection``) and redrawn on every new figure (recolouring, another projection). The URL carries
projection, dimensions, colour, inspected image, patient and k.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from pages._map_events import clicked, map_events
from pages._shared import aligned_embeddings, current_workspace, hover_thumbs, image_grid, index, linked_table
from pages._shared import projection, report, require, sync_url, verifier, write_url
from reid_core.ui.explain import p_same_explanation
from reid_core.ui.figures import LINE_PATIENT_LIMIT, embedding_scatter
from reid_core.ui.map_actions import map_action
from reid_core.ui.map_marks import highlight_traces
from reid_core.ui.projection import DIMS, METHODS
from reid_core.ui.selection import drawn_rows
from reid_core.ui.tables import COLOR_OPTIONS, caption, display_frame, neighbour_table, selection_csv
from reid_core.ui.url_state import UrlField, choice, int_in
from reid_core.ui.workspaces import PAGE_NEEDS, missing_artefacts

MAX_TABLE_ROWS = 1000
MAX_K = 24
CHART, FOCUS, SELECTION, EVENTS = "explorer_scatter", "explorer_focus", "_explorer_selection", "explorer_events"


def _on_map(coords: np.ndarray, image_ids: list[str], regions: bool) -> None:
    """The chart's selection callback: a click inspects, a box/lasso collects, a deselect clears."""
    action = map_action(st.session_state.get(CHART), coords, image_ids, regions)
    if action.kind in ("select", "clear"):
        st.session_state[SELECTION] = list(action.ids)
    if action.focus is not None:
        st.session_state[FOCUS] = action.focus


def _on_click() -> None:
    """A click the chart's selection does not report (box/lasso mode, 3-D): inspect that image."""
    image_id = clicked(EVENTS)
    if image_id is not None:
        st.session_state[FOCUS] = image_id


def _clear_selection() -> None:
    st.session_state[SELECTION] = []


ws = current_workspace()
st.title("Embedding explorer")

if require(ws, PAGE_NEEDS["explorer"], "The explorer"):
    m, emb = aligned_embeddings(ws)
    all_ids = m["image_id"].astype(str).tolist()
    patients = sorted(m["patient_id"].astype(str).unique())
    fields = (UrlField("proj", "explorer_method", choice(METHODS)),
              UrlField("dims", "explorer_dims", choice(DIMS, int)),
              UrlField("colour", "explorer_colour", choice(COLOR_OPTIONS)), UrlField("id", FOCUS, choice(all_ids)),
              UrlField("patient", "explorer_patient", choice(patients)), UrlField("k", "explorer_k", int_in(1, MAX_K)))
    sync_url("explore", fields)

    c = st.columns([1, 1, 1.4, 1.4])
    method = c[0].radio("Projection", METHODS, format_func=str.upper, horizontal=True, key="explorer_method")
    dims = c[1].radio("Dimensions", DIMS, format_func=lambda d: f"{d}-D", horizontal=True, key="explorer_dims")
    colour = c[2].selectbox("Colour by", COLOR_OPTIONS, key="explorer_colour")
    timelines = c[3].toggle("Join each patient's studies in time order", key="explorer_timelines")

    with st.spinner(f"computing the {method.upper()} projection (once; cached in the workspace)…"):
        proj = projection(ws, method, dims)
    pos = pd.Index(proj.image_ids).get_indexer(m["image_id"])
    keep = pos >= 0
    frame = m[keep].reset_index(drop=True)
    coords = proj.coords[pos[keep]]
    frame_ids = frame["image_id"].astype(str).tolist()
    drawn = drawn_rows(len(frame))  # None: every point is drawn
    regions = drawn is not None and dims == 2

    c = st.columns([1.2, 1.2, 1])
    patient = c[0].selectbox("Find a patient", patients, index=None, key="explorer_patient",
                             placeholder="patient id: highlights their films in study order")
    if st.session_state.get(FOCUS) not in set(frame_ids):
        st.session_state.pop(FOCUS, None)
    focus = c[1].selectbox("Image to inspect (or click a point)", frame_ids, index=None, key=FOCUS,
                           placeholder="choose an image id")
    k = c[2].slider("neighbours (k)", 1, max(1, min(MAX_K, len(frame) - 1)), min(8, max(1, len(frame) - 1)),
                    key="explorer_k")

    no_index = missing_artefacts(ws, ("index",))
    dist = nn = None
    if focus is not None and not no_index:
        dist, nn = index(ws).search_id(focus, k)
    known = set(frame_ids)
    selected = [i for i in st.session_state.get(SELECTION, []) if i in known]
    # on a sampled big map only the drawn points get a ring (a 100k-point overlay would double the figure)
    chosen = set(selected)
    ringed = selected if drawn is None else [frame_ids[r] for r in drawn if frame_ids[r] in chosen]
    marks = highlight_traces(coords, frame, selection=ringed, focus=focus,
                             neighbours=[str(i) for i in nn if i is not None] if nn is not None else (),
                             patient=patient)
    # a new selection or inspected point changes the revision: the map returns to pan mode, where clicks work
    revision = f"{focus}|{len(selected)}|{hash(tuple(selected))}"
    fig = embedding_scatter(coords, frame, colour, connect_patients=timelines, draw_rows=drawn,
                            axis_titles=proj.axis_titles, overlays=marks, ui_revision=revision)
    thumbs = hover_thumbs(ws, frame_ids if drawn is None else [frame_ids[r] for r in drawn])
    preview = "hover a point to preview its film" if thumbs else "hover a point to read it"
    if dims == 2:
        st.plotly_chart(fig, key=CHART, on_select=partial(_on_map, coords, frame_ids, regions),
                        selection_mode=("points", "box", "lasso"), width="stretch")
        st.caption(f"{len(frame):,} images of {frame['patient_id'].nunique():,} patients; {method.upper()} of the "
                   f"{emb.shape[1]}-d embeddings. Click a point for its nearest neighbours (searched in the original "
                   f"embedding space, not on this map); {preview}. Box or lasso (mode bar) collects a gallery; "
                   "double-click clears it.")
    else:
        st.plotly_chart(fig, key=f"{CHART}_3d", width="stretch")
        st.caption(f"{len(frame):,} images of {frame['patient_id'].nunique():,} patients; {method.upper()} of the "
                   f"{emb.shape[1]}-d embeddings in 3-D: drag to rotate, scroll to zoom, {preview}; choose an "
                   "image above to inspect it (marked on the map). Plotly has no box or lasso selection in 3-D, "
                   "and its 3-D clicks do not reliably reach the app: switch to 2-D to click or collect a gallery.")
    map_events(EVENTS, thumbs, _on_click)
    if drawn is not None:
        note = "; a box or lasso selects every point inside it, drawn or not" if dims == 2 else ""
        st.caption(f"drawing a fixed random {len(drawn):,} of the {len(frame):,} points, for speed{note}")
    if timelines and frame["patient_id"].nunique() > LINE_PATIENT_LIMIT:
        st.caption(f"timelines are drawn for the first {LINE_PATIENT_LIMIT} patients only")
    write_url("explore", fields)

    # ---- a single image and its neighbours
    st.subheader("Nearest neighbours")
    if focus is None:
        st.caption("Click a point, or choose an image to inspect above." if dims == 2 else
                   "Choose an image to inspect above.")
    elif no_index:
        st.warning(f"No index yet — run `{no_index[0].command}`")
    else:
        probs = verifier(ws).predict_proba(dist) if ws.verifier_path.exists() else None
        row = frame[frame["image_id"] == focus].iloc[0]
        table = neighbour_table(m, nn, dist, probs, query_patient=str(row["patient_id"]))
        left, right = st.columns([1, 3])
        with left:
            image_grid(ws, display_frame(m, [focus]), ncols=1, captions=[f"query: {caption(row)}"])
        with right:
            linked_table(ws, table, key="explorer_neighbours")
            if probs is not None:
                st.caption(p_same_explanation(verifier(ws).fit_stats, report(ws)))
        caps = [f"#{r.rank} d={r.distance:.3f} · {caption(r._asdict())}" for r in table.itertuples()]
        image_grid(ws, table, ncols=6, captions=caps, flags=table["true_patient"].tolist())

    # ---- a box / lasso selection (kept as ids: it survives recolouring and switching projection)
    if selected:
        st.subheader(f"Selection: {len(selected)} images")
        rows = pd.Index(frame_ids).get_indexer(selected)
        with_emb = st.checkbox("include the embeddings in the export", key="explorer_export_emb")
        emb_rows = emb[pd.Index(all_ids).get_indexer(selected)] if with_emb else None
        # a callable: the CSV is built when the button is clicked, not on every rerun (1.7 s at 100k ids)
        c = st.columns([2, 1])
        c[0].download_button("Export the selected ids with their map coordinates (CSV)",
                             partial(selection_csv, m, selected, coords[rows], proj.axis_titles, emb_rows),
                             file_name="selection.csv", mime="text/csv", key="explorer_export")
        c[1].button("Clear selection", on_click=_clear_selection, key="explorer_clear")
        shown = display_frame(m, selected[:MAX_TABLE_ROWS])
        linked_table(ws, shown, key="explorer_selection")
        if len(selected) > MAX_TABLE_ROWS:  # a 100k-row table would cost seconds per rerun; the CSV has them all
            st.caption(f"the table shows the first {MAX_TABLE_ROWS:,} of {len(selected):,}; the CSV export has all")
        image_grid(ws, display_frame(m, selected), ncols=6, key="explorer_gallery")
    else:
        st.caption("No selection yet: use the box or lasso tool on the map to collect images"
                   + (" (in 2-D)." if dims == 3 else "."))

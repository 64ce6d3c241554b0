"""Embedding explorer: PCA / UMAP map of the embeddings, selections → gallery, a point → its neighbours."""
from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from pages._shared import aligned_embeddings, current_workspace, image_grid, index, projection, report, require
from pages._shared import verifier
from reid_core.ui.explain import p_same_explanation
from reid_core.ui.figures import LINE_PATIENT_LIMIT, embedding_scatter
from reid_core.ui.selection import drawn_rows, event_image_ids
from reid_core.ui.tables import COLOR_OPTIONS, caption, display_frame, neighbour_table, selection_csv
from reid_core.ui.workspaces import PAGE_NEEDS, missing_artefacts

MAX_TABLE_ROWS = 1000

ws = current_workspace()
st.title("Embedding explorer")

if require(ws, PAGE_NEEDS["explorer"], "The explorer"):
    m, emb = aligned_embeddings(ws)
    c = st.columns([1, 1, 1.4, 1.4])
    method = c[0].radio("Projection", ("pca", "umap"), format_func=str.upper, horizontal=True, key="explorer_method")
    dims = c[1].radio("Dimensions", (2, 3), format_func=lambda d: f"{d}-D", horizontal=True, key="explorer_dims")
    colour = c[2].selectbox("Colour by", COLOR_OPTIONS, key="explorer_colour")
    timelines = c[3].toggle("Join each patient's studies in time order", key="explorer_timelines")

    with st.spinner(f"computing the {method.upper()} projection (once; cached in the workspace)…"):
        proj = projection(ws, method, dims)
    pos = pd.Index(proj.image_ids).get_indexer(m["image_id"])
    keep = pos >= 0
    frame = m[keep].reset_index(drop=True)
    coords = proj.coords[pos[keep]]
    drawn = drawn_rows(len(frame))  # None: every point is drawn
    fig = embedding_scatter(coords, frame, colour, connect_patients=timelines, draw_rows=drawn)
    event = st.plotly_chart(fig, key="explorer_scatter", on_select="rerun",
                            selection_mode=("box", "lasso", "points"), width="stretch")
    st.caption(f"{len(frame):,} images of {frame['patient_id'].nunique():,} patients; {method.upper()} of the "
               f"{emb.shape[1]}-d embeddings. Box/lasso-select points for a gallery, click one for its nearest "
               "neighbours (searched in the original embedding space, not on this map).")
    if drawn is not None:
        note = "; a box or lasso selects every point inside it, drawn or not" if dims == 2 else ""
        st.caption(f"drawing a fixed random {len(drawn):,} of the {len(frame):,} points, for speed{note}")
    ids = event_image_ids(event, coords, frame["image_id"].tolist(), regions=drawn is not None and dims == 2)
    if timelines and frame["patient_id"].nunique() > LINE_PATIENT_LIMIT:
        st.caption(f"timelines are drawn for the first {LINE_PATIENT_LIMIT} patients only")

    # ---- a single image and its neighbours
    st.subheader("Nearest neighbours")
    picked = st.selectbox("Image to inspect (or click a point)", frame["image_id"].tolist(), index=None,
                          placeholder="choose an image id", key="explorer_focus")
    focus = ids[0] if len(ids) == 1 else picked
    no_index = missing_artefacts(ws, ("index",))
    if focus is None:
        st.caption("Click a point, or choose an image id above.")
    elif no_index:
        st.warning(f"No index yet — run `{no_index[0].command}`")
    else:
        k = st.slider("neighbours (k)", 1, max(1, min(24, len(frame) - 1)), min(8, max(1, len(frame) - 1)),
                      key="explorer_k")
        dist, nn = index(ws).search_id(focus, k)
        probs = verifier(ws).predict_proba(dist) if ws.verifier_path.exists() else None
        row = frame[frame["image_id"] == focus].iloc[0]
        table = neighbour_table(m, nn, dist, probs, query_patient=str(row["patient_id"]))
        left, right = st.columns([1, 3])
        with left:
            image_grid(ws, display_frame(m, [focus]), ncols=1, captions=[f"query: {caption(row)}"])
        with right:
            st.dataframe(table, hide_index=True, width="stretch", key="explorer_neighbours")
            if probs is not None:
                st.caption(p_same_explanation(verifier(ws).fit_stats, report(ws)))
        caps = [f"#{r.rank} d={r.distance:.3f} · {caption(r._asdict())}" for r in table.itertuples()]
        image_grid(ws, table, ncols=6, captions=caps, flags=table["true_patient"].tolist())

    # ---- a box / lasso selection
    if len(ids) > 1:
        st.subheader(f"Selection: {len(ids)} images")
        selected = display_frame(m, ids)
        # a callable: the CSV is built when the button is clicked, not on every rerun (1.7 s at 100k ids)
        st.download_button("Export the selected ids (CSV)", partial(selection_csv, m, ids), file_name="selection.csv",
                           mime="text/csv", key="explorer_export")
        st.dataframe(selected.head(MAX_TABLE_ROWS), hide_index=True, width="stretch", key="explorer_selection")
        if len(selected) > MAX_TABLE_ROWS:  # a 100k-row table would cost seconds per rerun; the CSV has them all
            st.caption(f"the table shows the first {MAX_TABLE_ROWS:,} of {len(selected):,}; the CSV export has all")
        image_grid(ws, selected, ncols=6)
    elif len(ids) == 1:
        st.download_button("Export the selected id (CSV)", partial(selection_csv, m, ids), file_name="selection.csv",
                           mime="text/csv", key="explorer_export")
    else:
        st.caption("No selection yet: use the box or lasso tool on the map to collect images.")

"""Retrieval gallery: the k workspace images closest to a query (a workspace image or an upload)."""
from __future__ import annotations

import streamlit as st

from pages._shared import aligned_embeddings, current_workspace, image_grid, index, query_picker, require, show_query
from pages._shared import linked_table, report, sync_url, verifier, write_url
from reid_core.ui.defaults import first_query_with_mates, own_films_found
from reid_core.ui.explain import p_same_explanation
from reid_core.ui.tables import caption, neighbour_table
from reid_core.ui.url_state import UrlField, choice, int_in
from reid_core.ui.workspaces import PAGE_NEEDS

ws = current_workspace()
st.title("Retrieval gallery")

if require(ws, PAGE_NEEDS["retrieval"], "Retrieval"):
    m, _ = aligned_embeddings(ws)
    idx = index(ws)
    has_verifier = ws.verifier_path.exists()
    if not has_verifier:
        st.info(f"No verifier yet, so no same-patient probabilities: run `cxr-reid evaluate --workspace {ws.root}`")
    k_max = max(1, min(50, len(idx) - 1))
    fields = (UrlField("q", "search_query_id", choice(m["image_id"].tolist())),
              UrlField("k", "search_k", int_in(1, k_max)))
    if "search_query_id" in sync_url("search", fields):  # a linked image is a workspace image
        st.session_state["search_query_source"] = "workspace"
    left, right = st.columns([2, 1])
    with left:
        query = query_picker(ws, "Query", "search_query", m["image_id"].tolist(),
                             default_index=first_query_with_mates(m))
    with right:
        k = st.slider("results (k)", 1, k_max, min(10, max(1, len(idx) - 1)), key="search_k")
    write_url("search", fields)
    if query is None:
        st.info("Choose or upload a query image.")
    else:
        if query["image_id"] is not None:
            dist, ids = idx.search_id(query["image_id"], k)
            patient = str(query["row"]["patient_id"])
        else:
            d2, i2 = idx.search(query["vector"][None, :], k)
            dist, ids, patient = d2[0], i2[0], None
        probs = verifier(ws).predict_proba(dist) if has_verifier else None
        table = neighbour_table(m, ids, dist, probs, query_patient=patient)
        q_col, t_col = st.columns([1, 3])
        with q_col:
            show_query(query, "query")
        with t_col:
            if query["caveats"]:
                st.warning("Out of distribution: the query does not look like this workspace's radiographs "
                           "(reasons above). These results are shown, not vouched for.")
            if patient is not None:
                st.markdown(own_films_found(m, query["image_id"], table).sentence() + f" (patient `{patient}`)")
                styled = table.style.apply(
                    lambda r: ["background-color: rgba(46, 204, 113, 0.25)" if r["true_patient"] else ""] * len(r),
                    axis=1)
                linked_table(ws, styled, key="search_table", rows=table)
            else:
                st.caption("uploaded query: its patient is unknown, so no result is marked as the true patient")
                linked_table(ws, table, key="search_table")
        if probs is not None:
            st.caption(p_same_explanation(verifier(ws).fit_stats, report(ws)))
        caps = []
        for r in table.itertuples():
            p = f" p={r.p_same:.2f}" if probs is not None else ""
            caps.append(f"#{r.rank} d={r.distance:.3f}{p} · {caption(r._asdict())}")
        flags = table["true_patient"].tolist() if patient is not None else None
        image_grid(ws, table, ncols=5, captions=caps, flags=flags, key="search_gallery")

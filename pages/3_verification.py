"""Pair verification: are two radiographs (from the workspace or uploaded) of the same patient?"""
from __future__ import annotations

import math

import streamlit as st

from pages._shared import aligned_embeddings, current_workspace, query_picker, require, show_query, verifier
from reid_core.ui.workspaces import PAGE_NEEDS

ws = current_workspace()
st.title("Pair verification")

if require(ws, PAGE_NEEDS["verification"], "Verification"):
    m, _ = aligned_embeddings(ws)
    ver = verifier(ws)
    ids = m["image_id"].tolist()
    # default pair: the first two images of the first patient with two (a "same" pair to start from)
    first = m.groupby("patient_id").head(2).index[:2].tolist() if len(m) > 1 else [0, 0]
    left, right = st.columns(2)
    with left:
        a = query_picker(ws, "Image A", "verify_a", ids, default_index=first[0])
    with right:
        b = query_picker(ws, "Image B", "verify_b", ids, default_index=first[1] if len(first) > 1 else 0)

    threshold = st.slider("Decision threshold on the same-patient probability", 0.01, 0.99, 0.5, 0.01,
                          key="verify_threshold",
                          help=f"the verifier was fitted with {ver.threshold:g}; raise it for fewer false matches")
    if a is None or b is None:
        st.info("Choose or upload two images.")
    else:
        left, right = st.columns(2)
        with left:
            show_query(a, "A")
        with right:
            show_query(b, "B")
        result = ver.verify(a["vector"], b["vector"])
        same = result.probability >= threshold
        c = st.columns(3)
        c[0].metric("embedding distance", f"{result.distance:.4f}")
        c[1].metric("same-patient probability", f"{result.probability:.3f}")
        c[2].metric("threshold", f"{threshold:.2f}")
        decision = (f"Decision: :green[**SAME patient**] (p = {result.probability:.3f} ≥ {threshold:.2f})" if same
                    else f"Decision: :red[**DIFFERENT patients**] (p = {result.probability:.3f} < {threshold:.2f})")
        st.markdown(f"#### {decision}")
        if a["row"] is not None and b["row"] is not None:
            truth = str(a["row"]["patient_id"]) == str(b["row"]["patient_id"])
            st.caption("recorded: " + ("same patient" if truth else "different patients")
                       + (" — the decision agrees" if truth == same else " — the decision disagrees"))
        if not ver.coef < 0:
            st.warning("This verifier's probability does not fall with distance (an undertrained embedder?): "
                       "its decisions are not meaningful. Train longer, then re-run `cxr-reid embed` and "
                       "`cxr-reid evaluate`.")
        else:
            d_cut = (math.log(threshold / (1 - threshold)) - ver.intercept) / ver.coef
            st.caption(f"at this threshold, pairs closer than {d_cut:.4f} are called the same patient")

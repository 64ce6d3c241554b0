"""Pair verification: are two radiographs (from the workspace or uploaded) of the same patient?

Below the decision: the verifier's test ROC with this threshold's operating point, and saliency maps
(the gradient of the pair's embedding distance with respect to each image).
"""
from __future__ import annotations

import math

import streamlit as st

from pages._shared import (
    aligned_embeddings,
    current_workspace,
    query_picker,
    report,
    require,
    saliency,
    show_query,
    sync_url,
    verifier,
    write_url,
)
from reid_core.ui.defaults import first_same_patient_pair
from reid_core.ui.explain import p_same_explanation
from reid_core.ui.figures import roc_figure
from reid_core.ui.overlay import heat_overlay
from reid_core.ui.url_state import UrlField, choice, float_in
from reid_core.ui.verification import report_roc, threshold_operating_point
from reid_core.ui.workspaces import PAGE_NEEDS

ws = current_workspace()
st.title("Pair verification")

if require(ws, PAGE_NEEDS["verification"], "Verification"):
    m, _ = aligned_embeddings(ws)
    ver = verifier(ws)
    ids = m["image_id"].tolist()
    first = first_same_patient_pair(m)  # start on a same-patient pair
    fields = (UrlField("a", "verify_a_id", choice(ids)), UrlField("b", "verify_b_id", choice(ids)),
              UrlField("t", "verify_threshold", float_in(0.01, 0.99), default=0.5))
    for key in sync_url("verify", fields):  # a linked image is a workspace image
        if key.endswith("_id"):
            st.session_state[key.replace("_id", "_source")] = "workspace"
    left, right = st.columns(2)
    with left:
        a = query_picker(ws, "Image A", "verify_a", ids, default_index=first[0])
    with right:
        b = query_picker(ws, "Image B", "verify_b", ids, default_index=first[1] if len(first) > 1 else 0)

    threshold = st.slider("Decision threshold on the same-patient probability", 0.01, 0.99, 0.5, 0.01,
                          key="verify_threshold",
                          help=f"the verifier was fitted with {ver.threshold:g}; raise it for fewer false matches")
    write_url("verify", fields)
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
        if a["caveats"] or b["caveats"]:
            st.warning("Out of distribution: this decision involves an upload that does not look like this "
                       "workspace's radiographs (reasons above). It is shown, not vouched for.")
        st.caption(p_same_explanation(ver.fit_stats, report(ws)))
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

    st.subheader("ROC on held-out pairs")
    rep = report(ws)
    roc = report_roc(rep)
    if roc is None:
        st.info("report.json has no test ROC yet (it is written by a newer evaluation): run "
                f"`cxr-reid evaluate --workspace {ws.root}`")
    else:
        point = threshold_operating_point(rep, threshold)
        c = st.columns([2, 1])
        with c[0]:
            st.plotly_chart(roc_figure(roc, point), width="stretch", key="verify_roc")
        with c[1]:
            st.metric("sensitivity", f"{point.sensitivity:.3f}")
            st.metric("specificity", f"{point.specificity:.3f}")
            st.caption(f"on {roc['n_positive']} same-patient and {roc['n_negative']} random different-patient "
                       "held-out pairs, "
                       f"deciding p ≥ {threshold:.2f}"
                       + ("" if point.exact else f" (nearest stored threshold {point.stored_threshold:.3f})"))

    if a is not None and b is not None:
        st.subheader("Saliency: what drives the distance")
        if not (ws.embedder_weights_path).exists():
            st.info(f"Saliency needs the trained embedder: run `cxr-reid train --workspace {ws.root}`")
        elif a["image"] is None or b["image"] is None:
            st.info(f"Saliency needs the pixels of both images: run `cxr-reid prepare --workspace {ws.root}`")
        else:
            sal = saliency(ws, a["image"], b["image"])
            left, right = st.columns(2)
            left.image(heat_overlay(a["image"], sal.map_a), caption="A: |∂ distance / ∂ pixel|", width="stretch")
            right.image(heat_overlay(b["image"], sal.map_b), caption="B: |∂ distance / ∂ pixel|", width="stretch")
            st.caption(f"Gradient magnitude of the embedding distance ({sal.distance:.4f}, recomputed from these "
                       "pixels) with respect to each image, smoothed and scaled to its maximum: bright regions "
                       "move the two embeddings the most.")

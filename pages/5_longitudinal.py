"""Longitudinal: a patient's studies in time order and their embedding drift from a normal baseline."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._shared import aligned_embeddings, current_workspace, drift, drift_auc, image_grid, require, sync_url
from pages._shared import linked_table, write_url
from reid_core.ui.figures import drift_figure
from reid_core.ui.tables import format_ci, longitudinal_patients, patient_studies
from reid_core.ui.url_state import UrlField, choice
from reid_core.ui.workspaces import PAGE_NEEDS, embedder_summary

ws = current_workspace()
st.title("Longitudinal drift")
st.caption("Baseline: a patient's earliest study labelled No Finding. Drift: the embedding distance of each later "
           "study from it. An identity embedding ignores acquisition, so drift beyond a patient's usual scatter "
           "hints that something in the chest changed.")

if require(ws, PAGE_NEEDS["longitudinal"], "Drift"):
    summary = embedder_summary(ws)
    if summary is not None and summary.train_findings != "normal":
        st.info("This embedder was trained on every film, abnormal ones included: that teaches it to see through "
                "findings, which mutes drift. For drift studies train one on normal films only: "
                f"`cxr-reid train --workspace {ws.root} --set train_findings=normal` (on the phantom: drift AUC "
                "0.81 instead of 0.72; re-identification from abnormal films drops, so keep both).")
    m, _ = aligned_embeddings(ws)
    table = drift(ws)
    auc = drift_auc(ws)
    c = st.columns(4)
    c[0].metric("matched drift AUC", format_ci(auc["auc"], auc["auc_ci_low"], auc["auc_ci_high"]),
                help="abnormal vs still-normal follow-ups, compared only within the same time-since-baseline bin; "
                     f"95% CI from {auc['n_boot']} patient-bootstrap replicates over {auc['n_patients']} patients "
                     "(every film of this workspace: the embedder may have seen some)")
    c[1].metric("follow-ups with a finding", auc["n_abnormal"])
    c[2].metric("follow-ups still normal", auc["n_normal"])
    c[3].metric("patients with a baseline", table["patient_id"].nunique() if len(table) else 0)
    if auc["per_bin"]:
        with st.expander("AUC per time-since-baseline bin"):
            st.dataframe(pd.DataFrame(auc["per_bin"]), hide_index=True, width="stretch")

    patients = longitudinal_patients(m, table)
    if not patients:
        st.info("No patient has more than one image in this workspace.")
    else:
        fields = (UrlField("patient", "longitudinal_patient", choice(patients)),)
        sync_url("drift", fields)
        pid = st.selectbox(f"Patient ({len(patients)} with follow-ups)", patients, key="longitudinal_patient")
        write_url("drift", fields)
        studies = patient_studies(m, pid)
        st.subheader(f"{pid}: {len(studies)} studies")
        image_grid(ws, studies, ncols=min(6, max(len(studies), 1)))
        mine = table[table["patient_id"].astype(str) == pid].sort_values("years_since_baseline")
        if mine.empty:
            st.info(f"{pid} has no later study after a study labelled No Finding, so there is no baseline to "
                    "measure drift from.")
        else:
            base = str(mine["baseline_id"].iloc[0])
            st.plotly_chart(drift_figure(base, mine, title=f"drift of {pid} from baseline {base}"),
                            width="stretch", key="longitudinal_drift_plot")
            linked_table(ws, mine.drop(columns=["patient_id"]), key="longitudinal_drift_table", rows=mine)

"""Model report: which images were evaluated, the metrics with n and CI, 1:N identification, calibration of
p_same, training curves, the database-size curve, the pixel baseline, and every section of report.json."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from pages._shared import current_workspace, require
from reid_core.errors import CxrReidError
from reid_core.ui.explain import METRIC_HELP, evaluated_all_unseen, evaluation_sentence, training_source
from reid_core.ui.figures import database_size_figure, det_figure, reliability_figure, training_curves
from reid_core.ui.report_view import calibration_table, identification_table, report_sections
from reid_core.ui.tables import format_ci, load_report, metrics_table, read_train_log
from reid_core.ui.workspaces import PAGE_NEEDS, embedder_summary, file_key

ws = current_workspace()
st.title("Model report")


@st.cache_data(show_spinner=False, max_entries=8)
def _train_log(path: str, mtime_ns: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_train_log(path)


@st.cache_data(show_spinner=False, max_entries=8)
def _report(path: str, mtime_ns: int) -> dict:
    return load_report(path)


st.subheader("Training")
log_path = ws.embedder_dir / "train_log.jsonl"
summary = embedder_summary(ws)
if summary is not None:
    st.markdown(f"`{summary.backbone}` → {summary.embedding_dim}-d, {summary.image_size} px"
                + (f"; {summary.steps} steps" if summary.steps is not None else "")
                + (f" in {summary.elapsed_s / 60:.1f} min" if summary.elapsed_s else ""))
if log_path.exists():
    train, val = _train_log(*file_key(log_path))
    if train.empty and val.empty:
        st.info("The training log is empty.")
    else:
        st.plotly_chart(training_curves(train, val), width="stretch", key="report_training")
        card = ws.embedder_card_path
        st.caption(training_source(card.read_text() if card.exists() else None))
        if val.empty:
            st.caption("no validation during training (val_every larger than the run)")
else:
    st.info(f"No training log yet: run `cxr-reid train --workspace {ws.root}`")

st.subheader("Evaluation")
if require(ws, PAGE_NEEDS["report"], "The evaluation"):
    try:
        report = _report(*file_key(ws.report_path))
    except CxrReidError as exc:
        st.error(f"report.json is unreadable ({exc}); re-run `cxr-reid evaluate --workspace {ws.root}`")
        st.stop()
    st.info("Evaluated: " + evaluation_sentence(report)
            + (". The model card's numbers come from the embedder's own test split (other patients, other "
               "data), so they differ from these." if evaluated_all_unseen(report) else "."))
    table = metrics_table(report)
    shown = pd.DataFrame({
        "section": table["section"], "metric": table["metric"],
        "value [95% CI]": [format_ci(v, lo, hi) for v, lo, hi in table[["value", "ci_low", "ci_high"]].to_numpy()],
        "n": table["n"],
        "pixel baseline": [format_ci(v, float("nan"), float("nan")) for v in table["pixel baseline"]],
        "meaning": table["meaning"],
    })
    st.dataframe(shown, hide_index=True, width="stretch", key="report_metrics")
    v = report.get("verification", {}) or {}
    st.caption(f"verification on {v.get('n_pairs', '?')} random pairs ({v.get('n_positive_pairs', '?')} "
               f"same-patient) of {v.get('n_patients', '?')} patients, {v.get('protocol', 'verifier fitted on val')}; "
               f"CIs from {v.get('n_boot', '?')} patient-bootstrap replicates")
    with st.expander("metrics as numbers (CSV)"):
        st.download_button("Download the table", table.to_csv(index=False), file_name="report_metrics.csv",
                           mime="text/csv", key="report_export")
        st.dataframe(table, hide_index=True, width="stretch")

    st.subheader("1:N identification at gallery scale")
    ident = report.get("identification") or {}
    if ident:
        st.caption(ident.get("protocol", "") + ". rank-1: " + METRIC_HELP["rank-1"] + "; FNIR at FPIR: "
                   + METRIC_HELP["FNIR at FPIR"] + ".")
        st.dataframe(identification_table(report), hide_index=True, width="stretch", key="report_identification")
        if any("det" in g for g in ident.get("galleries") or []):
            st.plotly_chart(det_figure(ident["galleries"]), width="stretch", key="report_det")
    else:
        st.caption(f"report.json has no 1:N identification yet: re-run `cxr-reid evaluate --workspace {ws.root}`")

    st.subheader("Calibration of p_same")
    cal = report.get("calibration") or {}
    if cal:
        st.caption(f"p_same fitted on {cal.get('fit_pairs', '?')} pairs; {cal.get('protocol', '')}. ECE: "
                   + METRIC_HELP["ECE"] + ".")
        st.dataframe(calibration_table(report), hide_index=True, width="stretch", key="report_calibration")
        st.plotly_chart(reliability_figure(cal, ("random", "search_results", "nearest_neighbour")), width="stretch",
                        key="report_reliability")
    else:
        st.caption(f"report.json has no calibration yet: re-run `cxr-reid evaluate --workspace {ws.root}`")

    curve = report.get("database_size_curve") or []
    if curve:
        st.plotly_chart(database_size_figure(curve), width="stretch", key="report_dbsize")
        st.caption("P@1 of the test-split queries as films of other patients join the gallery")
    base = report.get("baseline")
    st.subheader("Pixel baseline")
    if base:
        st.markdown(f"Same protocol on raw pixels: *{base.get('method', '')}*. The embedder should beat it "
                    "on every line of the table above.")
    else:
        st.caption("report.json has no pixel baseline (evaluated with the baseline turned off)")
    diag = (report.get("diagnosis") or {}).get("per_finding_auc") or {}
    if diag:
        st.subheader("Neighbour-vote diagnosis")
        st.caption(METRIC_HELP["neighbour-vote mean AUC"])
        st.dataframe(pd.Series(diag, name="ROC AUC").rename_axis("finding").reset_index(), hide_index=True)
    st.subheader("Everything in report.json")
    for key, title, content in report_sections(report):
        with st.expander(f"{key}: {title}"):
            st.json(content, expanded=False)
    st.download_button("Download report.json", json.dumps(report, indent=2, sort_keys=True), file_name="report.json",
                       mime="application/json", key="report_json")

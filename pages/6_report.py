"""Model report: training curves, the evaluation table with CIs, the database-size curve, the pixel baseline."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from pages._shared import current_workspace, require
from reid_core.ui.figures import database_size_figure, training_curves
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
        if val.empty:
            st.caption("no validation during training (val_every larger than the run)")
else:
    st.info(f"No training log yet: run `cxr-reid train --workspace {ws.root}`")

st.subheader("Evaluation (test split)")
if require(ws, PAGE_NEEDS["report"], "The evaluation"):
    try:
        report = _report(*file_key(ws.report_path))
    except (OSError, ValueError) as exc:
        st.error(f"report.json is unreadable ({exc}); re-run `cxr-reid evaluate --workspace {ws.root}`")
        st.stop()
    table = metrics_table(report)
    shown = pd.DataFrame({
        "section": table["section"], "metric": table["metric"],
        "value [95% CI]": [format_ci(v, lo, hi) for v, lo, hi in table[["value", "ci_low", "ci_high"]].to_numpy()],
        "pixel baseline": [format_ci(v, float("nan"), float("nan")) for v in table["pixel baseline"]],
    })
    st.dataframe(shown, hide_index=True, width="stretch", key="report_metrics")
    v = report.get("verification", {}) or {}
    st.caption(f"{report.get('n_test_images', '?')} test images of {report.get('n_test_patients', '?')} patients; "
               f"verification on {v.get('n_pairs', '?')} pairs ({v.get('n_positive_pairs', '?')} same-patient), "
               f"CIs from {v.get('n_boot', '?')} patient-bootstrap replicates")
    with st.expander("metrics as numbers (CSV)"):
        st.download_button("Download the table", table.to_csv(index=False), file_name="report_metrics.csv",
                           mime="text/csv", key="report_export")
        st.dataframe(table, hide_index=True, width="stretch")

    curve = report.get("database_size_curve") or []
    if curve:
        st.plotly_chart(database_size_figure(curve), width="stretch", key="report_dbsize")
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
        st.dataframe(pd.Series(diag, name="ROC AUC").rename_axis("finding").reset_index(), hide_index=True)
    with st.expander("report.json"):
        st.code(json.dumps(report, indent=2, sort_keys=True)[:20000], language="json")

"""Overview: what the workspace holds (dataset, models, headline metrics), what is still to build, what is optional."""
from __future__ import annotations

import streamlit as st

from pages._shared import current_workspace, manifest, require
from reid_core.errors import CxrReidError
from reid_core.ui.figures import bar_figure
from reid_core.ui.explain import evaluated_all_unseen, evaluation_sentence, headline_texts, split_chart
from reid_core.ui.tables import dataset_summary, load_report
from reid_core.ui.workspaces import OPTIONAL_ARTEFACTS, PAGE_NEEDS, build_commands, embedder_summary, optional_sentence
from reid_core.ui.workspaces import status_frame

ws = current_workspace()
st.title("Overview")


def _report_or_none() -> dict | None:
    try:
        return load_report(ws.report_path) if ws.report_path.exists() else None
    except CxrReidError:
        return None


st.caption(f"workspace `{ws.root}`")

if ws.root.is_dir():
    status = status_frame(ws)
    missing = [a for a in ws.status() if not a.exists and a.name not in OPTIONAL_ARTEFACTS]
    with st.expander("Artefacts", expanded=bool(missing)):
        st.dataframe(status, hide_index=True, width="stretch")
    if missing:
        st.subheader("Still to build")
        st.markdown("Missing: " + ", ".join(f"**{a.name}**" for a in missing) + ". Run, in order:")
        st.code("\n".join(build_commands(missing)), language="bash")
    st.caption(optional_sentence(ws))

if require(ws, PAGE_NEEDS["overview"], "The dataset summary"):
    m = manifest(ws)
    s = dataset_summary(m)
    st.subheader("Dataset")
    c = st.columns(5)
    c[0].metric("patients", f"{s.n_patients:,}")
    c[1].metric("images", f"{s.n_images:,}")
    c[2].metric("images / patient", f"{s.n_images / max(s.n_patients, 1):.2f}")
    c[3].metric("datasets", ", ".join(s.datasets.index) or "—")
    c[4].metric("median age", "—" if s.age_median is None else f"{s.age_median:.0f}")
    if s.follow_up_days is not None:
        st.caption(f"dates are days from each patient's first study; the longest follow-up is "
                   f"{s.follow_up_days} days"
                   + (f" (calendar dates {m['calendar_date'].min()} to {m['calendar_date'].max()}, shown because "
                      "the workspace was prepared with --real-dates)" if "calendar_date" in m else ""))
    left, right = st.columns(2)
    left.plotly_chart(bar_figure(s.studies_per_patient, "images per patient", y_title="patients"),
                      width="stretch", key="overview_spp")
    right.plotly_chart(bar_figure(s.findings, "findings", y_title="images"), width="stretch",
                       key="overview_findings")
    a, b, c2 = st.columns(3)
    a.plotly_chart(bar_figure(s.views, "views", y_title="images", height=260), width="stretch", key="overview_views")
    b.plotly_chart(bar_figure(s.sexes, "sex", y_title="images", height=260), width="stretch", key="overview_sex")
    counts, split_title = split_chart(s.splits, _report_or_none())
    c2.plotly_chart(bar_figure(counts, split_title, y_title="images", height=260), width="stretch",
                    key="overview_splits")

st.subheader("Models")
emb = embedder_summary(ws)
if emb is None:
    st.info(f"No trained embedder yet: run `cxr-reid train --workspace {ws.root}`")
else:
    st.markdown(f"**Embedder**: `{emb.backbone}`, {emb.embedding_dim}-d embedding, {emb.image_size} px input"
                + (f", {emb.steps} steps (best at step {emb.best_step})" if emb.steps is not None else ""))
    if (ws.embedder_dir / "MODEL_CARD.md").exists():
        with st.expander("Embedder model card"):
            st.markdown((ws.embedder_dir / "MODEL_CARD.md").read_text(encoding="utf-8"))
if (ws.generator_weights_path).exists():
    st.markdown("**GAN**: trained (`gan/G_ema.safetensors`)")
    if (ws.gan_dir / "MODEL_CARD.md").exists():
        with st.expander("GAN model card"):
            st.markdown((ws.gan_dir / "MODEL_CARD.md").read_text(encoding="utf-8"))
else:
    st.caption("GAN: optional, not trained (only the Counterfactuals page needs it)")
if ws.report_path.exists():
    rep = _report_or_none()
    if rep is None:
        st.error(f"report.json is unreadable; re-run `cxr-reid evaluate --workspace {ws.root}`")
    else:
        h = headline_texts(rep)
        cols = st.columns(len(h))
        for col, (name, value) in zip(cols, h.items()):
            col.metric(name, value)
        st.caption("value [95% CI] on " + evaluation_sentence(rep)
                   + (". The model card's figures are on the embedder's own test split (other patients), hence "
                      "the difference." if evaluated_all_unseen(rep) else "")
                   + " The Model report page has n, pairs and identification at gallery scale.")
else:
    st.info(f"No evaluation yet: run `cxr-reid evaluate --workspace {ws.root}`")

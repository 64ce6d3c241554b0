"""Counterfactuals: move a radiograph along the identity PCs with the conditioned generator and see what changes."""
from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from pages._gan import (base_image, encode_film, encode_upload, encoder, gan, grid, invert_upload, pc_meaning,
                        renderer)
from pages._shared import aligned_embeddings, current_workspace, require, sync_url, thumbnail, write_url
from reid_core.errors import CxrReidError
from gan import views as cf
from reid_core.ui.tables import caption
from reid_core.ui.upload import MAX_UPLOAD_MB, UPLOAD_TYPES
from reid_core.ui.url_state import UrlField, choice, float_in
from reid_core.ui.workspaces import PAGE_NEEDS

ws = current_workspace()
st.title("Counterfactuals")
st.markdown("The identity embedding of an image is moved along its principal directions (in units of each PC's "
            "standard deviation σ) and the conditioned StyleGAN2 generator re-renders it with everything else "
            "fixed: what changes is what that identity direction means to the embedder.")

if not require(ws, PAGE_NEEDS["counterfactuals"], "Counterfactuals"):
    st.stop()
try:
    G, pca = gan(ws)
except (CxrReidError, ValueError) as exc:
    st.error(f"Cannot open the generator: {exc}")
    st.stop()

try:
    E = encoder(ws)
except (CxrReidError, ValueError) as exc:
    st.warning(f"The generator's encoder cannot be used ({exc}); falling back to latent sampling and inversion.")
    E = None

m, emb = aligned_embeddings(ws)
n_sliders = min(cf.MAX_SLIDERS, pca.n_components)
slider_keys = [f"cf_pc{k}" for k in range(n_sliders)]
url_fields = (UrlField("id", "cf_image", choice(m["image_id"].tolist())),
              *(UrlField(f"pc{k + 1}", key, float_in(-cf.MAX_SIGMA, cf.MAX_SIGMA), default=0.0)
                for k, key in enumerate(slider_keys)))
if "cf_image" in sync_url("counterfactual", url_fields):  # a linked image is a workspace image
    st.session_state["cf_source"] = "workspace"


def _reset() -> None:
    for key in slider_keys:
        st.session_state[key] = 0.0


controls, shown = st.columns([1, 2])
with controls:
    source = st.radio("Image from", ("workspace", "upload"), horizontal=True, key="cf_source")
    subject, inverted = None, None
    if source == "workspace":
        image_id = st.selectbox("Image id", m["image_id"].tolist(), key="cf_image")
        pos = int(np.flatnonzero(m["image_id"].to_numpy() == image_id)[0])
        real = thumbnail(ws, image_id)
        subject = cf.Subject(c0=emb[pos], real=real, label=caption(m.iloc[pos]))
        if E is not None and real is not None:
            subject = cf.Subject(c0=emb[pos], real=real, label=caption(m.iloc[pos]),
                                 z=encode_film(ws, real, emb[pos], caption(m.iloc[pos])).subject.z)
    elif not (ws.embedder_weights_path).exists():
        st.warning(f"Using an upload needs the trained embedder: run `cxr-reid train --workspace {ws.root}`")
    elif E is not None:
        upload = st.file_uploader(f"DICOM, PNG or JPG (≤ {MAX_UPLOAD_MB} MB)", type=list(UPLOAD_TYPES),
                                  max_upload_size=MAX_UPLOAD_MB, key="cf_upload")
        if upload is not None:
            try:
                encoded = encode_upload(ws, upload.name, upload.getvalue())
                subject = encoded.subject
                st.caption(f"encoded and reconstructed in {encoded.seconds * 1000:.0f} ms")
            except CxrReidError as exc:
                st.error(f"Cannot use this upload: {exc}")
    else:
        steps = st.slider("Inversion steps", 10, 500, 100, 10, key="cf_invert_steps",
                          help="more steps reconstruct the upload more faithfully, and take longer")
        upload = st.file_uploader(f"DICOM, PNG or JPG (≤ {MAX_UPLOAD_MB} MB)", type=list(UPLOAD_TYPES),
                                  max_upload_size=MAX_UPLOAD_MB, key="cf_upload")
        if upload is not None:
            try:
                inverted = invert_upload(ws, upload.name, upload.getvalue(), steps)
                subject = inverted.subject
            except CxrReidError as exc:
                st.error(f"Cannot use this upload: {exc}")
    fixed_latent = inverted is not None or (subject is not None and subject.encoded)
    if E is None:
        seed = int(st.number_input("Seed (latent z)", 0, 2**31 - 1, 0, 1, key="cf_seed", disabled=fixed_latent))
        psi = st.slider("Truncation ψ", 0.0, 1.0, 0.7, 0.05, key="cf_psi", disabled=fixed_latent,
                        help="0: the condition's typical image; 1: the full variety of the latent")
    else:
        seed, psi = 0, 1.0
        st.caption("The film is encoded: its nuisance (pose, exposure, acquisition, findings) is kept and only the "
                   "identity moves.")
    st.markdown("**Identity PCs** (α in σ)")
    values = [st.slider(label, -cf.MAX_SIGMA, cf.MAX_SIGMA, 0.0, cf.SLIDER_STEP, key=key)
              for key, label in zip(slider_keys, cf.pc_labels(pca, n_sliders))]
    st.button("Reset the PCs", on_click=_reset, key="cf_reset")
    write_url("counterfactual", url_fields)

with shown:
    if subject is None:
        verb = "encode" if E is not None else "invert into the generator"
        st.info(f"Choose a workspace image, or upload one to {verb}.")
        st.stop()
    rend = renderer(ws, seed, psi)
    view = cf.render_view(rend, subject, cf.active_alphas(values), base_image(ws, seed, psi, subject))
    cols = st.columns(4)
    if subject.real is not None:
        cols[0].image(subject.real, caption="real image" + (" (at the generator's resolution)" if inverted else ""),
                      width="stretch", clamp=True)
    else:
        cols[0].caption(f"no prepared pixels to show: run `cxr-reid prepare --workspace {ws.root}`")
    cols[1].image(view.base, caption="reconstruction (all α = 0)" if subject.encoded else "base (all α = 0)",
                  width="stretch", clamp=True)
    cols[2].image(view.image, caption="counterfactual", width="stretch", clamp=True)
    cols[3].image(view.overlay, caption=f"|Δ| overlay (max {view.max_diff:.3f})", width="stretch")
    st.caption(f"counterfactual rendered in {view.render_ms:.0f} ms · {subject.label}"
               + (f" · inverted in {inverted.steps} steps ({inverted.seconds:.1f} s), pixel MSE "
                  f"{inverted.pixel_loss:.4f}; seed and ψ do not apply to an inverted latent" if inverted else ""))
    d = st.columns(3)
    d[0].download_button("Download PNG", cf.png_bytes(view.image), file_name="counterfactual.png",
                         mime="image/png", key="cf_png", on_click="ignore")
    gif_pc = d[1].selectbox("GIF sweep of", range(n_sliders), format_func=lambda k: f"PC{k + 1}", key="cf_gif_pc",
                            label_visibility="collapsed")
    d[2].download_button("Download GIF", partial(cf.sweep_gif, rend, subject, int(gif_pc)),
                         file_name=f"sweep_pc{int(gif_pc) + 1}.gif", mime="image/gif", key="cf_gif",
                         on_click="ignore")

if subject.encoded:
    st.subheader("Identity swap")
    st.caption("The same film (its nuisance code) rendered with another patient's identity embedding: what the "
               "generator draws as that patient's anatomy.")
    others = m[m["patient_id"] != m.iloc[pos]["patient_id"]] if source == "workspace" else m
    if not others.empty:
        swap_id = st.selectbox("Identity of", others["image_id"].tolist(), key="cf_swap")
        spos = int(np.flatnonzero(m["image_id"].to_numpy() == swap_id)[0])
        swapped = subject.with_identity(emb[spos], f"identity of {caption(m.iloc[spos])}")
        sw = st.columns(4)
        sw[0].image(view.base, caption="this film (reconstruction)", width="stretch", clamp=True)
        swap_img = base_image(ws, seed, psi, swapped)
        sw[1].image(swap_img, caption="with the other identity", width="stretch", clamp=True)
        other_real = thumbnail(ws, swap_id)
        if other_real is not None:
            sw[2].image(other_real, caption="a real film of that patient", width="stretch", clamp=True)
        sw[3].image(cf.render_view(rend, swapped, {}, view.base).overlay, caption="|Δ| to this film",
                    width="stretch")
    quality = cf.quality_table(ws)
    if quality is not None:
        st.subheader("How good the generator is")
        st.caption(quality.note)
        st.dataframe(quality.table, hide_index=True, width="stretch", key="cf_quality")

st.subheader("What each PC correlates with")
note, summary, r2 = pc_meaning(ws, n_sliders)
if summary is None:
    st.info(f"No table: {note}.")
else:
    st.caption(f"R² of a linear fit of each phantom factor on each PC's score over the {len(m)} embedded images; "
               f"{note}.")
    st.dataframe(summary, hide_index=True, width="stretch", key="cf_meaning")
    with st.expander("every factor × PC"):
        st.dataframe(r2.round(3), width="stretch")

st.subheader("PCs × α grid")
if st.toggle(f"Render the grid ({n_sliders} PCs × {len(cf.GRID_ALPHAS)} α)", value=False, key="cf_grid",
             help="one render per cell: seconds on a CPU at 128 px and above"):
    tiles = grid(ws, seed, psi, subject, tuple(range(n_sliders)))
    alphas = ", ".join(f"{a:+g}σ" for a in cf.GRID_ALPHAS)
    st.image(tiles, caption=f"rows PC1…PC{n_sliders}; columns α = {alphas}", width="stretch", clamp=True)
    st.download_button("Download the grid (PNG)", cf.png_bytes(tiles), file_name="pc_alpha_grid.png",
                       mime="image/png", key="cf_grid_png", on_click="ignore")

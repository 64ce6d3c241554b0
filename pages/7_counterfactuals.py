"""Counterfactuals (placeholder): identity-conditioned GAN edits arrive with the GAN issue."""
from __future__ import annotations

import streamlit as st

from pages._shared import current_workspace
from reid_core.ui.workspaces import build_commands, missing_artefacts

ws = current_workspace()
st.title("Counterfactuals")
st.markdown("Moving an image along the principal directions of the identity embedding with a conditioned "
            "StyleGAN2 generator, to see what the embedder attends to. This page is a placeholder.")
missing = missing_artefacts(ws, ("gan",))
if missing:
    st.info("The GAN is not trained yet for this workspace. Once `cxr-reid train-gan` exists (the GAN issue is "
            "in progress), build it with:")
    st.code("\n".join(build_commands(missing)), language="bash")
else:
    st.success(f"A trained generator is present (`{ws.gan_dir / 'G_ema.safetensors'}`); "
               "the counterfactual controls arrive with the GAN issue.")
    samples = ws.gan_dir / "samples.png"
    if samples.exists():
        st.image(str(samples), caption="training samples (gan/samples.png)")

"""Cached GAN resources of the counterfactual page (the work is in :mod:`gan.views`).

The generator + identity PCA and each (seed, ψ) renderer are ``st.cache_resource``
(one per process, shared by sessions); inversions of uploads, grids and the PC
meaning table are ``st.cache_data``. Keys carry the ``(path, mtime_ns)`` of the
files they come from, so a new ``cxr-reid train-gan`` or ``embed`` invalidates them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pages._shared import aligned_embeddings, embedder, manifest
from gan import views as cf
from reid_core.ui.upload import MAX_UPLOAD_MB, load_uploaded_image
from reid_core.ui.workspaces import file_key
from reid_core.workspace import Workspace

Key = tuple[str, int]


def _keys(ws: Workspace) -> tuple[str, Key, Key]:
    return str(ws.root), file_key(ws.generator_weights_path), file_key(ws.embeddings_path)


@st.cache_resource(show_spinner="loading the generator…", max_entries=2)
def _gan(root: str, gan_key: Key, emb_key: Key):
    return cf.open_generator_and_pca(Workspace(root))


def gan(ws: Workspace):
    """``(generator, identity PCA)`` of the workspace; raises CxrReidError subclasses."""
    return _gan(*_keys(ws))


@st.cache_resource(show_spinner=False, max_entries=2)
def _encoder(root: str, gan_key: Key, enc_key: Key):
    return cf.open_encoder(Workspace(root))


def encoder(ws: Workspace):
    """The generator's nuisance encoder (an autoencoder-trained generator), or None; raises CxrReidError subclasses."""
    return _encoder(str(ws.root), file_key(ws.generator_weights_path),
                    file_key(ws.encoder_weights_path))


@st.cache_data(show_spinner="encoding the film…", max_entries=64)
def _encode_film(root: str, gan_key: Key, emb_key: Key, enc_key: Key, image: np.ndarray, c0: np.ndarray,
                 label: str) -> cf.EncodedImage:
    G, _ = _gan(root, gan_key, emb_key)
    return cf.encode_image(G, _encoder(root, gan_key, enc_key), None, image, c0=c0, label=label)


def encode_film(ws: Workspace, image: np.ndarray, c0: np.ndarray, label: str) -> cf.EncodedImage:
    """A workspace film encoded with its stored identity embedding ``c0`` (cached per film)."""
    return _encode_film(*_keys(ws), file_key(ws.encoder_weights_path), image, c0, label)


def _embedder_and_upload(root: str, name: str, data: bytes):  # noqa: ANN202 - (Embedder, float32 image)
    """The workspace's embedder and the uploaded file read at its input size (CxrReidError subclasses if bad)."""
    model = embedder(Workspace(root))
    return model, load_uploaded_image(name, data, model.config.image_size, MAX_UPLOAD_MB)


@st.cache_data(show_spinner="encoding the upload…", max_entries=8)
def _encode_upload(root: str, gan_key: Key, emb_key: Key, enc_key: Key, weights_key: Key, name: str,
                   data: bytes) -> cf.EncodedImage:
    G, _ = _gan(root, gan_key, emb_key)
    model, image = _embedder_and_upload(root, name, data)
    return cf.encode_image(G, _encoder(root, gan_key, enc_key), model, image, label="uploaded image (encoded)")


def encode_upload(ws: Workspace, name: str, data: bytes) -> cf.EncodedImage:
    """The upload encoded (identity from the embedder, nuisance from the encoder); raises CxrReidError subclasses."""
    return _encode_upload(*_keys(ws), file_key(ws.encoder_weights_path),
                          file_key(ws.embedder_weights_path), name, data)


@st.cache_resource(show_spinner=False, max_entries=16)
def _renderer(root: str, gan_key: Key, emb_key: Key, seed: int, psi: float):
    G, pca = _gan(root, gan_key, emb_key)
    return cf.make_renderer(G, pca, seed, psi)


def renderer(ws: Workspace, seed: int, psi: float):
    return _renderer(*_keys(ws), int(seed), round(float(psi), 4))


@st.cache_data(show_spinner=False, max_entries=64)
def _base(root: str, gan_key: Key, emb_key: Key, seed: int, psi: float, c0: np.ndarray,
          ws_arr: np.ndarray | None, z: np.ndarray | None = None) -> np.ndarray:
    return cf.Subject(c0=c0, ws=ws_arr, z=z).render(_renderer(root, gan_key, emb_key, seed, psi), None)


def base_image(ws: Workspace, seed: int, psi: float, subject: cf.Subject) -> np.ndarray:
    """The subject rendered with every α = 0 (cached: a slider move then costs one render, not two)."""
    return _base(*_keys(ws), int(seed), round(float(psi), 4), subject.c0, subject.ws, subject.z)


@st.cache_data(show_spinner="inverting the upload into the generator…", max_entries=8)
def _invert(root: str, gan_key: Key, emb_key: Key, weights_key: Key, name: str, data: bytes,
            steps: int) -> cf.InvertedImage:
    G, _ = _gan(root, gan_key, emb_key)
    model, image = _embedder_and_upload(root, name, data)
    return cf.invert_image(G, model, image, steps)


def invert_upload(ws: Workspace, name: str, data: bytes, steps: int) -> cf.InvertedImage:
    """The upload inverted into the generator (cached per file and step count); raises CxrReidError subclasses."""
    return _invert(*_keys(ws), file_key(ws.embedder_weights_path), name, data, int(steps))


@st.cache_data(show_spinner="rendering the PCs × α grid…", max_entries=16)
def _grid(root: str, gan_key: Key, emb_key: Key, seed: int, psi: float, c0: np.ndarray, ws_arr: np.ndarray | None,
          pcs: tuple[int, ...], z: np.ndarray | None = None) -> np.ndarray:
    subject = cf.Subject(c0=c0, ws=ws_arr, z=z)
    return cf.grid_image(cf.alpha_grid(_renderer(root, gan_key, emb_key, seed, psi), subject, pcs))


def grid(ws: Workspace, seed: int, psi: float, subject: cf.Subject, pcs: tuple[int, ...]) -> np.ndarray:
    return _grid(*_keys(ws), int(seed), round(float(psi), 4), subject.c0, subject.ws, tuple(pcs), subject.z)


@st.cache_data(show_spinner="correlating the PCs with the phantom's anatomy…", max_entries=4)
def _meaning(root: str, gan_key: Key, emb_key: Key, manifest_key: Key,
             n_pcs: int) -> tuple[str, pd.DataFrame | None, pd.DataFrame | None]:
    ws = Workspace(root)
    _, pca = _gan(root, gan_key, emb_key)
    factors = cf.workspace_factors(ws, manifest(ws))
    if factors.table is None:
        return factors.note, None, None
    m, emb = aligned_embeddings(ws)
    try:
        summary, r2 = cf.pc_meaning(pca, emb, m["image_id"].tolist(), factors.table, n_pcs)
    except KeyError as exc:
        return f"{factors.note}, but it does not cover every image ({exc})", None, None
    return factors.note, summary, r2


def pc_meaning(ws: Workspace, n_pcs: int) -> tuple[str, pd.DataFrame | None, pd.DataFrame | None]:
    """``(note, summary, r2)``; the tables are None when the workspace has no phantom ground truth."""
    return _meaning(*_keys(ws), file_key(ws.manifest_path), int(n_pcs))

"""What every page shares: the chosen workspace, "what to run" notices, cached loaders, image widgets.

Models, the index, the verifier and the image store are ``st.cache_resource``
(one shared object per process); tables (manifest, embeddings, projections,
drift) are ``st.cache_data``. Every cached function takes the file's path and
``st_mtime_ns`` as arguments, so rewriting an artefact (a new ``cxr-reid embed``)
invalidates exactly what was built from it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import reid_core  # noqa: F401  (before anything that imports timm)
from reid_core.data.manifest import load_manifest
from reid_core.data.store import ImageStore
from reid_core.embed import EmbeddingTable
from reid_core.errors import CxrReidError
from reid_core.longitudinal import drift_table, matched_drift_auc_ci
from reid_core.ood import DistanceReference, raster_preview, upload_warnings
from reid_core.ui.dates import calendar_dates_shown, with_study_days
from reid_core.ui.projection import Projection, workspace_projection
from reid_core.ui.tables import caption, load_report
from reid_core.ui.thumbs import HOVER_LIMIT, hover_thumbnails
from reid_core.ui.upload import MAX_UPLOAD_MB, UPLOAD_TYPES, load_uploaded_image
from reid_core.ui.url_state import UrlField, changed, encode, parse_params
from reid_core.ui.workspaces import build_commands, default_workspace, file_key, missing_artefacts
from reid_core.workspace import Workspace

logging.getLogger("pydicom").setLevel(logging.CRITICAL)  # its log lines can quote header values (PHI)

WORKSPACE_KEY = "workspace"
MAX_THUMBNAILS = 36
# plain text, not an emoji: captions are plain text and emoji render as empty boxes without an emoji font
SAME_PATIENT_MARK = "[same patient]"
# where the sidebar looks for workspaces: $CXR_REID_WORKSPACES, else workspaces/ next to app.py
WORKSPACES = Path(os.environ.get("CXR_REID_WORKSPACES", Path(__file__).resolve().parents[1] / "workspaces"))


# ---------------------------------------------------------------------------- workspace + notices
def current_workspace() -> Workspace:
    """The workspace chosen in the sidebar (``st.session_state["workspace"]``), else the default one."""
    chosen = st.session_state.get(WORKSPACE_KEY)
    if not chosen:  # a page run on its own (tests, or before the sidebar ran): same default as the sidebar
        chosen = str(default_workspace(WORKSPACES))
        st.session_state[WORKSPACE_KEY] = chosen
    return Workspace(chosen)


def require(ws: Workspace, names: tuple[str, ...], what: str) -> bool:
    """True if ``ws`` has every artefact in ``names``; else a notice naming what is missing and what to run."""
    if not ws.root.is_dir():
        st.error(f"`{ws.root}` does not exist. Build the demo workspace with `cxr-reid demo`, or prepare "
                 f"your own with `cxr-reid prepare --workspace {ws.root} --dataset ...`, then pick it in the "
                 "sidebar.")
        return False
    missing = missing_artefacts(ws, names)
    if not missing:
        return True
    for a in missing:
        st.warning(f"{what}: no {a.name} yet — run `{a.command}`")
    st.code("\n".join(build_commands(missing)), language="bash")
    return False


def show_failure(ws_root: str, exc: CxrReidError) -> None:
    """What a page shows, instead of a traceback, when the workspace cannot give it what it needs.

    The typed error names the artefact and usually the command that rebuilds it; the page
    above it stays as far as it got, and the sidebar still works.
    """
    st.error(f"This page stopped: {exc}")
    st.caption(f"A workspace artefact is damaged or does not fit the others. Rebuild it with the command the "
               f"message names (the Overview page lists every artefact of `{ws_root}` and what writes it), "
               "or pick another workspace in the sidebar.")


def show_unexpected(ws_root: str, exc: Exception) -> None:
    """What a page shows when something unforeseen fails (a defect, or an artefact no check covers yet):
    the error's type and message, never a traceback (that goes to the server log); the sidebar still works."""
    st.error(f"This page stopped unexpectedly ({type(exc).__name__}: {str(exc)[:300]}).")
    st.caption(f"The full traceback is in the terminal that runs the app. If a file of `{ws_root}` was edited by "
               "hand, rebuild it with the command the Overview page lists; otherwise please report this.")


# ---------------------------------------------------------------------------- cached tables
@st.cache_data(show_spinner=False, max_entries=8)
def _manifest(path: str, mtime_ns: int, calendar: bool) -> pd.DataFrame:
    return with_study_days(load_manifest(path), calendar)


def manifest_key(ws: Workspace) -> tuple[str, int, bool]:
    """Cache key of the displayed manifest: the file, and whether calendar dates are shown."""
    return (*file_key(ws.manifest_path), calendar_dates_shown(ws))


def manifest(ws: Workspace) -> pd.DataFrame:
    """The manifest with ``study_day`` (days from each patient's first study) for display."""
    return _manifest(*manifest_key(ws))


@st.cache_data(show_spinner=False, max_entries=8)
def _aligned(m_key: tuple[str, int, bool], emb_key: tuple[str, int]) -> tuple[pd.DataFrame, np.ndarray]:
    m = _manifest(*m_key)
    table = EmbeddingTable.load(emb_key[0])
    m = m[m["image_id"].isin(set(table.image_ids))].reset_index(drop=True)
    return m, table.embeddings[table.rows_for(m["image_id"])]


def aligned_embeddings(ws: Workspace) -> tuple[pd.DataFrame, np.ndarray]:
    """(manifest rows that have an embedding, their embeddings in the same order)."""
    return _aligned(manifest_key(ws), file_key(ws.embeddings_path))


@st.cache_data(show_spinner=False, max_entries=16)
def _projection(root: str, emb_key: tuple[str, int], method: str, dims: int, seed: int) -> Projection:
    return workspace_projection(Workspace(root), method, dims, seed)


def projection(ws: Workspace, method: str, dims: int, seed: int = 0) -> Projection:
    return _projection(str(ws.root), file_key(ws.embeddings_path), method, dims, seed)


@st.cache_data(show_spinner=False, max_entries=8)
def _drift(m_key: tuple[str, int, bool], emb_key: tuple[str, int]) -> pd.DataFrame:
    m, emb = _aligned(m_key, emb_key)
    return drift_table(m, emb)


def drift(ws: Workspace) -> pd.DataFrame:
    return _drift(manifest_key(ws), file_key(ws.embeddings_path))


@st.cache_data(show_spinner=False, max_entries=8)
def _drift_auc(m_key: tuple[str, int, bool], emb_key: tuple[str, int]) -> dict:
    return matched_drift_auc_ci(_drift(m_key, emb_key))


def drift_auc(ws: Workspace) -> dict:
    """The workspace's matched drift AUC with its patient-bootstrap CI (cached with the embeddings)."""
    return _drift_auc(manifest_key(ws), file_key(ws.embeddings_path))


@st.cache_data(show_spinner=False, max_entries=8)
def _report(path: str, mtime_ns: int) -> dict:
    return load_report(path)


def report(ws: Workspace) -> dict | None:
    """``report.json`` (None when absent or unreadable)."""
    if not ws.report_path.exists():
        return None
    try:
        return _report(*file_key(ws.report_path))
    except CxrReidError:
        return None


# ---------------------------------------------------------------------------- cached resources
@st.cache_resource(show_spinner="loading the embedder…", max_entries=4)
def _embedder(directory: str, weights_key: tuple[str, int]):
    from reid_core.checkpoint import load_embedder

    return load_embedder(directory)


def embedder(ws: Workspace):
    key = file_key(ws.embedder_weights_path)
    return _embedder(str(Path(key[0]).parent), key)


@st.cache_resource(show_spinner=False, max_entries=4)
def _index(root: str, index_key: tuple[str, int]):
    from reid_core.retrieval import Index

    return Index.load(root)


def index(ws: Workspace):
    return _index(str(ws.root), file_key(ws.index_path))


@st.cache_resource(show_spinner=False, max_entries=4)
def _verifier(path: str, mtime_ns: int):
    from reid_core.verify import PairVerifier

    return PairVerifier.load(path)


def verifier(ws: Workspace):
    return _verifier(*file_key(ws.verifier_path))


@st.cache_resource(show_spinner=False, max_entries=4)
def _store(path: str, mtime_ns: int, m_key: tuple[str, int, bool]) -> ImageStore:
    return ImageStore(path, _manifest(*m_key))


def image_store(ws: Workspace) -> ImageStore | None:
    """The workspace's largest prepared image store, or None (thumbnails then say what to run)."""
    sizes = ws.image_sizes()
    if not sizes or not ws.manifest_path.exists():
        return None
    return _store(*file_key(ws.images_path(sizes[-1])), manifest_key(ws))


@st.cache_data(show_spinner=False, max_entries=64)
def _embed_upload(weights_key: tuple[str, int], name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    from reid_core.query import embed_query_images

    model = _embedder(str(Path(weights_key[0]).parent), weights_key)
    image = load_uploaded_image(name, data, model.config.image_size, MAX_UPLOAD_MB)
    return image, embed_query_images(model, [image])[0]


def embed_upload(ws: Workspace, name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(letterboxed uint8 image, embedding) of an uploaded file; raises CxrReidError subclasses."""
    return _embed_upload(file_key(ws.embedder_weights_path), name, data)


@st.cache_data(show_spinner=False, max_entries=8)
def _distance_reference(m_key: tuple[str, int, bool], emb_key: tuple[str, int]) -> DistanceReference | None:
    m, emb = _aligned(m_key, emb_key)
    if len(emb) < 2:
        return None
    return DistanceReference.from_embeddings(emb, m["patient_id"].to_numpy())


def upload_caveats(ws: Workspace, name: str, data: bytes, vector: np.ndarray) -> list[str]:
    """Why an upload may not be a frontal radiograph of this workspace's kind (:mod:`reid_core.ood`); [] if none."""
    m, emb = aligned_embeddings(ws)
    nearest = float(np.min(np.linalg.norm(emb - vector[None, :], axis=1))) if len(emb) else float("inf")
    reference = _distance_reference(manifest_key(ws), file_key(ws.embeddings_path))
    return upload_warnings(raster_preview(name, data), nearest, reference)


@st.cache_data(show_spinner="computing saliency maps…", max_entries=32)
def _saliency(weights_key: tuple[str, int], img_a: np.ndarray, img_b: np.ndarray):
    from reid_core.saliency import pair_saliency

    return pair_saliency(_embedder(str(Path(weights_key[0]).parent), weights_key), img_a, img_b)


def saliency(ws: Workspace, img_a: np.ndarray, img_b: np.ndarray):
    """:func:`reid_core.saliency.pair_saliency` of two images with the workspace's embedder (cached)."""
    return _saliency(file_key(ws.embedder_weights_path), img_a, img_b)


@st.cache_data(show_spinner=False, max_entries=4)
def _hover_thumbs(store_key: tuple[str, int], m_key: tuple[str, int, bool],
                  image_ids: tuple[str, ...]) -> dict[str, str] | None:
    store = _store(*store_key, m_key)

    def pixels(image_id: str) -> np.ndarray | None:
        try:
            return store[store.row_of(image_id)]
        except (KeyError, CxrReidError):
            return None

    return hover_thumbnails(image_ids, pixels)


def hover_thumbs(ws: Workspace, image_ids: list[str]) -> dict[str, str] | None:
    """Data-URL thumbnails of ``image_ids`` for the map's hover preview (None: too many, or no images)."""
    sizes = ws.image_sizes()
    if not sizes or not ws.manifest_path.exists() or len(image_ids) > HOVER_LIMIT:
        return None
    return _hover_thumbs(file_key(ws.images_path(sizes[-1])), manifest_key(ws), tuple(image_ids))


# ---------------------------------------------------------------------------- image widgets
def thumbnail(ws: Workspace, image_id: str) -> np.ndarray | None:
    store = image_store(ws)
    if store is None:
        return None
    try:
        return store[store.row_of(image_id)]
    except (KeyError, CxrReidError):
        return None


def open_links(ws: Workspace, image_id: str, patient_id: str | None) -> None:
    """One-click links that open ``image_id`` elsewhere: retrieval query, verification A or B, the patient's
    longitudinal view, the explorer (each a page link whose URL carries the state, so it can be shared too)."""
    base = {"ws": workspace_param(ws)}
    st.page_link("pages/4_retrieval.py", label="as retrieval query", icon=":material/image_search:",
                 query_params={**base, "q": image_id})
    st.page_link("pages/3_verification.py", label="as verification A", icon=":material/compare:",
                 query_params={**base, "a": image_id})
    st.page_link("pages/3_verification.py", label="as verification B", icon=":material/compare:",
                 query_params={**base, "b": image_id})
    if patient_id is not None:
        st.page_link("pages/5_longitudinal.py", label=f"patient {patient_id} over time", icon=":material/timeline:",
                     query_params={**base, "patient": patient_id})
    st.page_link("pages/2_explorer.py", label="on the map, with neighbours", icon=":material/scatter_plot:",
                 query_params={**base, "id": image_id})


def image_grid(ws: Workspace, rows: pd.DataFrame, ncols: int = 6, captions: list[str] | None = None,
               limit: int = MAX_THUMBNAILS, flags: list[bool] | None = None, key: str | None = None,
               links: bool = True) -> None:
    """Thumbnails of ``rows`` (manifest rows) with display captions; ``flags`` marks rows (e.g. true patient).

    ``key``: more than ``limit`` rows are paged (a page number under that key); without one only the first
    ``limit`` show. ``links``: an "Open…" menu under each thumbnail (:func:`open_links`).
    """
    if image_store(ws) is None:
        st.info(f"No prepared images to show: run `cxr-reid prepare --workspace {ws.root}`")
        return
    start = 0
    if len(rows) > limit:
        if key is None:
            st.caption(f"showing the first {limit} of {len(rows)} images")
        else:
            n_pages = -(-len(rows) // limit)
            page = int(st.number_input(f"gallery page (of {n_pages})", 1, n_pages, 1, 1, key=f"{key}_page"))
            start = (min(page, n_pages) - 1) * limit
            st.caption(f"images {start + 1}–{min(start + limit, len(rows))} of {len(rows)}")
    rows = rows.iloc[start:start + limit]
    cols = st.columns(ncols)
    for k, (_, row) in enumerate(rows.iterrows()):
        with cols[k % ncols]:
            img = thumbnail(ws, str(row["image_id"]))
            text = captions[start + k] if captions else caption(row)
            if flags is not None and flags[start + k]:
                text = f"{SAME_PATIENT_MARK} · " + text
            if img is not None:
                st.image(img, caption=text, width="stretch")
            else:
                st.caption(text)
            if links:
                with st.popover("Open…", width="stretch"):
                    pid = row.get("patient_id")
                    open_links(ws, str(row["image_id"]), None if pid is None or pd.isna(pid) else str(pid))


def linked_table(ws: Workspace, table: pd.DataFrame | Any, key: str, rows: pd.DataFrame | None = None) -> None:
    """``st.dataframe`` of ``table`` (a frame or a Styler) where choosing a row offers :func:`open_links` for it.

    ``rows``: the plain frame behind a Styler (its ``image_id`` / ``patient_id`` columns name the row).
    """
    plain = rows if rows is not None else table
    event = st.dataframe(table, hide_index=True, width="stretch", key=key, on_select="rerun",
                         selection_mode="single-row")
    chosen = list(getattr(getattr(event, "selection", None), "rows", None) or [])
    if not chosen or chosen[0] >= len(plain):
        st.caption("Choose a row (the box at its left) to open that image elsewhere.")
        return
    row = plain.iloc[chosen[0]]
    st.markdown(f"Open **{row['image_id']}**:")
    with st.container(horizontal=True):
        pid = row.get("patient_id")
        open_links(ws, str(row["image_id"]), None if pid is None or pd.isna(pid) else str(pid))


# ---------------------------------------------------------------------------- state in the URL
_URL_WRITTEN = "_url_written"


def workspace_param(ws: Workspace) -> str:
    """The workspace as the URL names it: its folder name under the workspaces root, else its full path."""
    root = ws.root.resolve()
    return root.name if root.parent == WORKSPACES.resolve() else str(root)


def sync_url(page: str, fields: tuple[UrlField, ...]) -> dict[str, Any]:
    """Before a page's widgets: URL parameters that changed since this page last wrote them (a shared link,
    a link from another page, back/forward) set their widget keys; invalid values are ignored.
    Returns ``{key: value}`` of what was set."""
    params = st.query_params.to_dict()
    written = st.session_state.get(_URL_WRITTEN, {}).get(page)
    applied = parse_params(params, fields, only=changed(params, written, fields))
    for key, value in applied.items():
        st.session_state[key] = value
    return applied


def write_url(page: str, fields: tuple[UrlField, ...]) -> None:
    """After a page's widgets: their values into the URL (reload and shared links restore the view)."""
    out = encode({f.key: st.session_state.get(f.key) for f in fields}, fields)
    for f in fields:
        if f.param in out:
            if st.query_params.get(f.param) != out[f.param]:
                st.query_params[f.param] = out[f.param]
        elif f.param in st.query_params:
            del st.query_params[f.param]
    st.session_state.setdefault(_URL_WRITTEN, {})[page] = out


def query_picker(ws: Workspace, label: str, key: str, options: list[str], default_index: int = 0,
                 allow_upload: bool = True) -> dict | None:
    """A query image from the workspace or an upload.

    Returns ``{"image_id", "row", "image", "vector", "source", "caveats"}`` (``image_id``/``row`` None for
    uploads; ``caveats``: why an upload may be out of distribution, also shown with ``st.warning``), or None
    when nothing usable is chosen; upload problems are shown with ``st.error``.
    """
    has_embedder = (ws.embedder_weights_path).exists()
    source = st.radio(f"{label} from", ("workspace", "upload"), horizontal=True, key=f"{key}_source",
                      disabled=not allow_upload)
    if source == "workspace":
        image_id = st.selectbox(f"{label}: image id", options, index=min(default_index, len(options) - 1),
                                key=f"{key}_id")
        if image_id is None:
            return None
        m, emb = aligned_embeddings(ws)
        pos = np.flatnonzero(m["image_id"].to_numpy() == image_id)
        if not len(pos):
            st.error(f"{image_id} has no embedding; re-run `cxr-reid embed --workspace {ws.root}`")
            return None
        return {"image_id": image_id, "row": m.iloc[pos[0]], "image": thumbnail(ws, image_id),
                "vector": emb[pos[0]], "source": "workspace", "caveats": []}
    if not has_embedder:
        st.warning(f"Uploads need the trained embedder: run `cxr-reid train --workspace {ws.root}`")
        return None
    upload = st.file_uploader(f"{label}: DICOM, PNG or JPG (≤ {MAX_UPLOAD_MB} MB)", type=list(UPLOAD_TYPES),
                              max_upload_size=MAX_UPLOAD_MB, key=f"{key}_upload")
    if upload is None:
        st.caption("Only the pixels of an upload are used; no DICOM header field is read out or shown.")
        return None
    try:
        image, vector = embed_upload(ws, upload.name, upload.getvalue())
    except CxrReidError as exc:
        st.error(f"Cannot use this upload: {exc}")
        return None
    caveats = upload_caveats(ws, upload.name, upload.getvalue(), vector)
    if caveats:
        st.warning(f"{label} may not be a frontal chest radiograph like this workspace's: " + "; ".join(caveats)
                   + ". Its results are shown, but do not trust them.")
    return {"image_id": None, "row": None, "image": image, "vector": vector, "source": "upload",
            "caveats": caveats}


def show_query(query: dict, title: str) -> None:
    """The query image with its display caption (uploads: the file name is not repeated)."""
    text = caption(query["row"]) if query["row"] is not None else "uploaded image (pixels only)"
    if query["image"] is not None:
        st.image(query["image"], caption=f"{title}: {text}", width="stretch")
    else:
        st.caption(f"{title}: {text}")

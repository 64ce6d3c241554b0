"""cxr-reid in the browser: ``streamlit run app.py``.

This file only sets up the page, the navigation over ``pages/`` and the shared
sidebar (the workspace picker). Every page reads the chosen workspace from
``st.session_state["workspace"]``; the work is done by ``reid_core``.
Workspaces are looked for under ``$CXR_REID_WORKSPACES`` (default: ``workspaces/``
next to this file); ``workspaces/demo`` (``cxr-reid demo``) is the default. The
sidebar opens typed-in folders only under that root unless the app was started
with ``CXR_REID_ANY_WORKSPACE=1``; ``.streamlit/config.toml`` binds 127.0.0.1.
A page that meets a damaged artefact (any :class:`~reid_core.errors.CxrReidError`)
shows the typed message instead of a traceback; the rest of the app keeps working.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import streamlit as st

import reid_core  # noqa: F401  (before anything that imports timm)
from pages._shared import WORKSPACE_KEY, WORKSPACES, show_failure, show_unexpected, workspace_param
from reid_core.errors import CxrReidError, WorkspaceError
from reid_core.ui.workspaces import ANY_WORKSPACE_ENV, default_workspace, list_workspaces, resolve_custom_workspace
from reid_core.workspace import Workspace

# url_paths differ on purpose from the names Streamlit derives from the file names ("overview" for
# 1_overview.py): before st.navigation has run once in a fresh server, a request for such a name would run
# the page file on its own, without this sidebar.
PAGES = [
    st.Page("pages/1_overview.py", title="Overview", icon=":material/dashboard:", url_path="summary", default=True),
    st.Page("pages/2_explorer.py", title="Embedding explorer", icon=":material/scatter_plot:", url_path="explore"),
    st.Page("pages/3_verification.py", title="Pair verification", icon=":material/compare:", url_path="verify"),
    st.Page("pages/4_retrieval.py", title="Retrieval gallery", icon=":material/image_search:", url_path="search"),
    st.Page("pages/5_longitudinal.py", title="Longitudinal", icon=":material/timeline:", url_path="drift"),
    st.Page("pages/6_report.py", title="Model report", icon=":material/analytics:", url_path="model"),
    st.Page("pages/7_counterfactuals.py", title="Counterfactuals", icon=":material/auto_fix_high:",
            url_path="counterfactual"),
]

page = st.navigation(PAGES)
# one browser-tab title per page ("Pair verification · cxr-reid"), set once the page is known
st.set_page_config(page_title=f"{page.title} · cxr-reid", page_icon=":material/radiology:", layout="wide")


def _workspace_from_url() -> str | None:
    """A link's ``?ws=`` (a folder name under the workspaces root, or a path where the app allows any) opens
    that workspace, under the same rule as the typed-in folder, when it differs from what the app last wrote.
    Returns why it was refused, if it was."""
    value = st.query_params.get("ws")
    if not value or value == st.session_state.get("_ws_written"):
        return None
    try:
        path = resolve_custom_workspace(value, WORKSPACES, allow_any=os.environ.get(ANY_WORKSPACE_ENV) == "1")
    except WorkspaceError as exc:
        return f"The link's workspace cannot be opened: {exc}"
    listed = WORKSPACES / path.name
    st.session_state[WORKSPACE_KEY] = str(listed if listed.resolve() == path else path)
    return None


def _use_custom_path() -> None:
    value = st.session_state.get("_workspace_custom", "").strip()
    st.session_state.pop("_workspace_refused", None)
    if not value:
        return
    try:
        st.session_state[WORKSPACE_KEY] = str(resolve_custom_workspace(
            value, WORKSPACES, allow_any=os.environ.get(ANY_WORKSPACE_ENV) == "1"))
    except WorkspaceError as exc:
        st.session_state["_workspace_refused"] = str(exc)


link_refused = _workspace_from_url()
with st.sidebar:
    current = st.session_state.get(WORKSPACE_KEY) or str(default_workspace(WORKSPACES))
    options = [str(p) for p in list_workspaces(WORKSPACES)]
    if current not in options:
        options.insert(0, current)
    choice = st.selectbox("Workspace", options, index=options.index(current),
                          format_func=lambda p: Path(p).name if Path(p).parent == WORKSPACES else p,
                          help=f"folders under {WORKSPACES}; build one with `cxr-reid demo`")
    st.text_input("…or a workspace folder", key="_workspace_custom", on_change=_use_custom_path,
                  placeholder="a folder under the workspaces root")
    for refused in (st.session_state.get("_workspace_refused"), link_refused):
        if refused:
            st.error(refused)
    st.session_state[WORKSPACE_KEY] = choice
    st.caption(f"`{choice}`")
# the workspace travels in the URL of every page (?ws=demo), so a shared link opens the same one
st.query_params["ws"] = st.session_state["_ws_written"] = workspace_param(Workspace(choice))

try:
    page.run()
except CxrReidError as exc:  # a corrupt or mismatched artefact: a message, never a traceback
    show_failure(st.session_state.get(WORKSPACE_KEY, ""), exc)
except Exception as exc:  # noqa: BLE001 - what no check foresaw: the page says so, the traceback goes to the log
    logging.getLogger("cxr_reid.app").exception("page %s failed", getattr(page, "title", page))
    show_unexpected(st.session_state.get(WORKSPACE_KEY, ""), exc)

"""The explorer map's hover previews and its clicks in box/lasso mode and in 3-D.

``st.plotly_chart`` tells Python of selections only, so these come from a small ``st.components.v2``
component (``_map_events.js``) that listens to plotly's own hover and click events on the page's chart:
a hover shows the film's thumbnail next to the pointer without a server round trip; a click where
Streamlit reports nothing (box/lasso drag modes, 3-D) comes back as the trigger value ``clicked``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

_component = st.components.v2.component(
    "cxr_reid_map_events", js=Path(__file__).with_name("_map_events.js").read_text(encoding="utf-8"))


def map_events(key: str, thumbs: dict[str, str] | None, on_click: Callable[[], None]) -> None:
    """Mount the listener for the page's plotly map: ``thumbs`` (image id → data URL) feed the hover preview
    (None: no previews); ``on_click`` runs when a click arrives, reading ``st.session_state[key].clicked``."""
    _component(key=key, data={"thumbs": thumbs or {}}, on_clicked_change=on_click)


def clicked(key: str) -> str | None:
    """The image id of the click that triggered this run, if any."""
    result = st.session_state.get(key)
    value = getattr(result, "clicked", None) if result is not None else None
    return str(value) if value else None

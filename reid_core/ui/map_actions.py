"""What a user did on the embedding map, read from a Streamlit plotly selection event.

Streamlit hands Python no plotly click event, only selections (streamlit/streamlit#8824): a click arrives as a
one-point selection in pan and zoom modes, and in box/lasso modes and in 3-D as nothing at all (Streamlit sets
plotly's ``clickmode`` to ``event`` there). The explorer therefore opens in pan mode; the clicks the chart does
not report reach it through a small listener component (``pages/_map_events.js``); and a box or lasso around
one point inspects that point like a click does.

:func:`map_action` names the action; the explorer keeps the result in ``st.session_state`` (the focus id and
the selected ids), so a new figure (another colour, another projection) re-draws the same selection from the
stored ids instead of losing it with the old chart's widget state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from reid_core.ui.selection import event_image_ids


@dataclass(frozen=True)
class MapAction:
    """``kind``: ``click`` (inspect ``ids[0]``), ``select`` (collect ``ids``; one id also inspects it) or
    ``clear`` (the selection was dropped: a double-click, a click on empty space)."""

    kind: Literal["click", "select", "clear"]
    ids: tuple[str, ...] = ()

    @property
    def focus(self) -> str | None:
        """The image to inspect after this action, if it names exactly one."""
        return self.ids[0] if len(self.ids) == 1 and self.kind in ("click", "select") else None


def _has_regions(event: Mapping[str, Any] | None) -> bool:
    selection = (event.get("selection") if hasattr(event, "get") else None) or {}
    return bool(selection.get("box") or selection.get("lasso"))


def map_action(event: Mapping[str, Any] | None, coords: np.ndarray, image_ids: Sequence[str],
               regions: bool) -> MapAction:
    """The action an ``st.plotly_chart(on_select=...)`` event stands for, in ids of ``image_ids``.

    ``regions``: the map is a drawn sample, so a box/lasso selects every point of ``coords`` inside it
    (:func:`reid_core.ui.selection.event_image_ids`).
    """
    ids = tuple(event_image_ids(event, coords, image_ids, regions=regions))
    if not ids:
        return MapAction("clear")
    if _has_regions(event) or len(ids) > 1:
        return MapAction("select", ids)
    return MapAction("click", ids)

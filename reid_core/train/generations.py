"""Two generations of a resume state: a save never destroys the last good one.

``<name>`` always holds the newest state; before it is overwritten, the current
one is verified (size, SHA-256, safetensors) and copied to ``<name>_prev``. A
crash, a kill or a full disk while writing therefore leaves either the new
state or the previous one complete, and loading falls back to ``<name>_prev``
(with a warning) when ``<name>`` does not verify. A torn ``<name>`` is never
copied over a good ``<name>_prev``. The cost: twice the disk, and one extra read
and write of the state per save.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from reid_core.checkpoint import load_checkpoint, load_state, save_checkpoint, save_state
from reid_core.errors import CheckpointError

__all__ = ["PREV_SUFFIX", "has_state", "load_newest_state", "save_state_generation"]

log = logging.getLogger(__name__)
PREV_SUFFIX = "_prev"


def has_state(folder: str | Path, name: str) -> bool:
    """Whether ``folder`` holds a record of the state ``name`` or of its previous generation."""
    folder = Path(folder)
    return any((folder / f"{stem}.json").is_file() for stem in (name, name + PREV_SUFFIX))


def save_state_generation(folder: str | Path, name: str, state: dict[str, Any]) -> None:
    """Keep the current state (if it verifies) as ``<name>_prev``, then write ``state`` as ``<name>``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        tensors, meta = load_checkpoint(folder, name, meta_name=name)
    except CheckpointError:
        tensors = None  # none yet, or torn by an earlier crash: the previous generation stays as it is
    if tensors is not None:
        save_checkpoint(folder, tensors, meta, name + PREV_SUFFIX, meta_name=name + PREV_SUFFIX)
        del tensors
    save_state(folder, name, state)


def load_newest_state(folder: str | Path, name: str) -> dict[str, Any]:
    """``<name>``, or the previous generation when it does not verify; else the newest one's CheckpointError."""
    folder = Path(folder)
    try:
        return load_state(folder, name)
    except CheckpointError as newest_error:
        if not (folder / f"{name}{PREV_SUFFIX}.json").is_file():
            raise
        try:
            state = load_state(folder, name + PREV_SUFFIX)
        except CheckpointError:
            raise newest_error from None
        log.warning("resume state %s is unusable (%s); continuing from the previous generation", folder / name,
                    newest_error)
        return state

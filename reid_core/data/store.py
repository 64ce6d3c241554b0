"""ImageStore: the prepared images of a workspace, N×S×S uint8, memory-mapped.

Row ``r`` of the store holds the image whose manifest row has ``cache_row == r``.
Opening a store reads no pixels; indexing reads only the rows asked for, so a
store of 10^6 images at 256 px (65 GB) costs nothing to open.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from reid_core.errors import WorkspaceError


class ImageStore:
    """Read-only view of ``images_<size>.npy`` aligned with a manifest."""

    def __init__(self, path: str | Path, manifest: pd.DataFrame | None = None) -> None:
        self.path = Path(path)
        state_path = self.path.with_suffix(".state.json")
        if not self.path.exists() or not state_path.exists():
            raise WorkspaceError(f"no prepared image store at {self.path}; run `cxr-reid prepare`")
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise WorkspaceError(f"{state_path}: unreadable ({type(exc).__name__}); re-run `cxr-reid prepare`") from None
        if not isinstance(state, dict):
            raise WorkspaceError(f"{state_path}: not an image-store state; re-run `cxr-reid prepare`")
        if not state.get("complete"):
            raise WorkspaceError(
                f"image store {self.path} is incomplete ({state.get('n_done', '?')}/{state.get('n', '?')} rows); "
                "re-run `cxr-reid prepare` to finish it"
            )
        try:
            self.array: np.ndarray = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # bad header, or shorter than the header says
            raise WorkspaceError(f"{self.path}: not a readable image store ({exc}); delete it and re-run "
                                 "`cxr-reid prepare`") from None
        if self.array.ndim != 3 or self.array.dtype != np.uint8:
            raise WorkspaceError(f"{self.path} is not an N×S×S uint8 array (got {self.array.dtype}{self.array.shape})")
        self.size = int(self.array.shape[1])
        self._row_of: dict[str, int] | None = None
        self.manifest = manifest
        if manifest is not None and "cache_row" in manifest.columns:
            rows = manifest["cache_row"].to_numpy()
            if len(rows) and (rows.min() < 0 or rows.max() >= len(self.array)):
                raise WorkspaceError(f"manifest cache_row out of range for {self.path} ({len(self.array)} rows)")

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, row: int | np.ndarray) -> np.ndarray:
        """Image(s) by store row (uint8)."""
        return np.asarray(self.array[row])

    def row_of(self, image_id: str) -> int:
        """Store row of an image id (needs the manifest)."""
        if self.manifest is None:
            raise WorkspaceError("ImageStore was opened without a manifest; cannot look up image ids")
        if self._row_of is None:
            self._row_of = dict(zip(self.manifest["image_id"], self.manifest["cache_row"].astype(int)))
        try:
            return self._row_of[image_id]
        except KeyError:
            raise KeyError(f"unknown image id {image_id!r}") from None

    def get(self, image_id: str) -> np.ndarray:
        """One image by id, as float32 in [0, 1]."""
        return self[self.row_of(image_id)].astype(np.float32) / 255.0

"""Where prepare gets pixels from: files on disk, or the phantom rendered on the fly.

A source turns one manifest row into a float32 2-D image in [0, 1] or raises
:class:`~reid_core.errors.ImageLoadError`. Sources are small picklable objects
so worker processes can use them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np

from reid_core.data.io import load_image


class ImageSource(Protocol):
    """Anything that loads the image of a manifest row."""

    def load(self, row: Mapping[str, object]) -> np.ndarray: ...


@dataclass(frozen=True)
class FileSource:
    """Images stored as files under ``root`` (the manifest's ``path`` is relative to it)."""

    root: str

    def load(self, row: Mapping[str, object]) -> np.ndarray:
        return load_image(Path(self.root) / str(row["path"]))


@dataclass(frozen=True)
class PhantomSource:
    """Phantom images of ``seed`` and ``difficulty`` rendered directly at ``size`` (no files written)."""

    seed: int
    size: int
    difficulty: str = "standard"

    @property
    def store_key(self) -> str:
        """What sets these pixels apart from standard phantom rows with the same ids ('' when standard)."""
        return "" if self.difficulty == "standard" else f"phantom-{self.difficulty}"

    def load(self, row: Mapping[str, object]) -> np.ndarray:
        from reid_core.data.phantom import render_image

        return render_image(self.seed, int(row["phantom_patient"]), int(row["phantom_study"]), self.size,
                            difficulty=self.difficulty)  # type: ignore[arg-type]

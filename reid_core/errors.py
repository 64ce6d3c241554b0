"""Typed exceptions of cxr-reid: every failure a user can cause has one."""
from __future__ import annotations

from pathlib import Path


class CxrReidError(Exception):
    """Base class of every error raised on purpose by cxr-reid."""


INTERRUPTS: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit)
"""The ``BaseException`` types that mean "stop now", never "this file is bad".

Anything else a decoder raises is a property of the file, including Rust
panics surfacing as ``pyo3_runtime.PanicException`` (a ``BaseException``, not an
``Exception``, so ``except Exception`` lets it through). Catch sites that turn
decoder failures into :class:`ImageLoadError` catch ``BaseException`` and
re-raise these.
"""


class ImageLoadError(CxrReidError):
    """An image file could not be turned into a valid 2-D radiograph.

    ``path`` is the offending file, ``reason`` a short human-readable cause
    (never containing patient names or other PHI).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across multiprocessing workers
        return (type(self), (self.path, self.reason))


class DatasetError(CxrReidError):
    """A dataset root or its metadata does not match the expected layout."""


class ManifestError(CxrReidError):
    """A manifest table is missing columns or breaks an invariant."""


class WorkspaceError(CxrReidError):
    """A workspace artefact is missing, incomplete or inconsistent."""


class CheckpointError(CxrReidError):
    """A checkpoint (safetensors weights + JSON) is missing, truncated, tampered with or does not fit."""


class TrainingError(CxrReidError):
    """Training cannot start or continue: unusable data, a bad config, or an incompatible resume state."""


class ConfigError(CxrReidError, ValueError):
    """A config (a file, a dict or a ``--set`` override) has an unknown key or a wrongly typed value.

    A ``ValueError`` too, so code that validated configs with ``except ValueError`` keeps working.
    """

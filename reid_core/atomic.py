"""Atomic file writes, once for the whole project: a unique hidden temp file beside the target, then ``os.replace``.

Readers see the old file or the new one, never a torn one. Every write gets its
own temp name (``.<name>.<random>.tmp<suffix>``, the target's suffix kept so
``np.savez`` and friends do not append their own), so two processes writing the
same artefact never write into one temp file. A writer killed mid-write leaves
only its hidden temp file; the next write of the same target removes such
leftovers once they are older than :data:`STALE_AFTER_S` (younger ones may
belong to a writer still at work).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STALE_AFTER_S", "atomic_path", "remove_stale_temps", "temp_name", "write_bytes_atomic",
           "write_text_atomic"]

STALE_AFTER_S = 3600.0
"""A temp file untouched for this long belongs to a writer that died."""


def temp_name(path: Path) -> Path:
    """A fresh hidden temp path in ``path``'s folder, ending in ``path``'s suffix."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{path.suffix}")


def remove_stale_temps(path: Path, older_than_s: float = STALE_AFTER_S) -> int:
    """Delete ``path``'s leftover temp files older than ``older_than_s``; returns how many went."""
    removed, now = 0, time.time()
    if not path.parent.is_dir():
        return 0
    for tmp in path.parent.glob(f".{path.name}.*.tmp*"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a unique temp path; write the new content there. On success it replaces ``path``, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes_atomic(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (fsync'ed before the rename unless ``fsync`` is False)."""
    path = Path(path)
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: str | Path, text: str, fsync: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)

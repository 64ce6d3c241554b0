"""The DICOM files that ship with pydicom and pydicom-data, listed from disk (nothing is downloaded).

Shared by ``tests/test_io_dicom_corpus.py`` and ``scripts/fuzz_loaders.py``; no pytest import.
"""
from __future__ import annotations

from pathlib import Path


def corpus_files() -> list[Path]:
    """Every file bundled with pydicom (test files, charsets, palettes) and in pydicom-data."""
    from pydicom.data.data_manager import DATA_ROOT, external_data_sources

    root = Path(DATA_ROOT)
    files = [p for sub in ("test_files", "charset_files", "palettes") for p in sorted((root / sub).rglob("*"))]
    for source in external_data_sources().values():
        files += sorted(Path(p) for p in source.get_paths("**/*", 0))
    return [p for p in files if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts]

"""Dataset adapters: public dataset layouts → the canonical manifest.

>>> result = get_adapter("chexpert").build("/data/chexpert")   # doctest: +SKIP
>>> result.manifest, result.problems                            # doctest: +SKIP

Names: ``nih`` (ChestX-ray14), ``chexpert``, ``mimic`` (MIMIC-CXR-JPG),
``mimic-dicom``, ``dicom`` (any DICOM folder), ``csv`` (user CSV; needs
``csv_path=``). Options are passed to the adapter's constructor.
"""
from __future__ import annotations

from reid_core.data.adapters.base import AdapterResult, DatasetAdapter
from reid_core.data.adapters.chexpert import CHEXPERT_TO_NIH, ChexpertAdapter
from reid_core.data.adapters.csv_generic import CsvAdapter
from reid_core.data.adapters.dicom_folder import DicomFolderAdapter
from reid_core.data.adapters.mimic import MimicAdapter, MimicDicomAdapter
from reid_core.data.adapters.nih import NihAdapter

ADAPTERS: dict[str, type[DatasetAdapter]] = {
    cls.name: cls
    for cls in (NihAdapter, ChexpertAdapter, MimicAdapter, MimicDicomAdapter, DicomFolderAdapter, CsvAdapter)
}


def get_adapter(name: str, **options) -> DatasetAdapter:
    """The adapter registered as ``name``, constructed with ``options``; ValueError on an unknown name."""
    key = str(name).strip().lower()
    if key not in ADAPTERS:
        raise ValueError(f"unknown dataset adapter {name!r}; valid names: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[key](**options)


__all__ = [
    "ADAPTERS", "AdapterResult", "CHEXPERT_TO_NIH", "ChexpertAdapter", "CsvAdapter", "DatasetAdapter",
    "DicomFolderAdapter", "MimicAdapter", "MimicDicomAdapter", "NihAdapter", "get_adapter",
]

"""The pair-verification page's numbers: the test ROC stored in report.json and a threshold's operating point."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reid_core.roc import OperatingPoint, operating_point


def report_roc(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``report["verification"]["roc"]`` when present and well formed (written by ``cxr-reid evaluate``), else None."""
    roc = ((report or {}).get("verification") or {}).get("roc")
    if not isinstance(roc, Mapping):
        return None
    lists = [roc.get(k) for k in ("thresholds", "fpr", "tpr")]
    if not all(isinstance(v, list) and v for v in lists) or len({len(v) for v in lists}) != 1:
        return None
    return dict(roc)


def threshold_operating_point(report: Mapping[str, Any] | None, threshold: float) -> OperatingPoint | None:
    """Sensitivity/specificity on the test pairs of the rule ``p ≥ threshold``; None without a stored ROC."""
    roc = report_roc(report)
    return None if roc is None else operating_point(roc, threshold)

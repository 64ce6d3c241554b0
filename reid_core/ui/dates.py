"""Study dates as users see them: days from each patient's first study, calendar dates only on request.

A calendar date is an identifier (with a name and an age it narrows a patient
down to a few people), so screens, CSV exports and CLI output show ``study_day``
— whole days since the patient's first dated study — and keep the intervals
that longitudinal reading needs. The manifest keeps ``study_date`` for ordering
and drift; it is shown only when the workspace was prepared with
``--real-dates`` (``workspace.json``: ``"calendar_dates": true``), and then as an
extra ``calendar_date`` column next to the day.
"""
from __future__ import annotations

import pandas as pd

from reid_core.errors import CxrReidError
from reid_core.workspace import Workspace

__all__ = ["CALENDAR_DATES", "calendar_dates_shown", "day_text", "with_study_days"]

CALENDAR_DATES = "calendar_dates"
"""The ``workspace.json`` key that ``prepare --real-dates`` sets to true."""


def calendar_dates_shown(ws: Workspace) -> bool:
    """Whether the user opted in to calendar dates for ``ws`` (False when unset or unreadable)."""
    try:
        return ws.info().get(CALENDAR_DATES) is True
    except CxrReidError:
        return False


def study_days(patient_id: pd.Series, study_date: pd.Series) -> pd.Series:
    """Whole days from each patient's first dated study (nullable Int64; undated rows are <NA>)."""
    dates = pd.to_datetime(study_date, errors="coerce")
    first = dates.groupby(patient_id.astype(str).to_numpy()).transform("min")
    return ((dates - first).dt.days).astype("Int64")


def with_study_days(manifest: pd.DataFrame, calendar: bool = False) -> pd.DataFrame:
    """``manifest`` plus ``study_day`` (and ``calendar_date`` when ``calendar``) for display.

    ``study_date`` stays (computations need it) but is never a display column.
    """
    out = manifest.copy()
    if "study_date" in out.columns:
        out["study_day"] = study_days(out["patient_id"], out["study_date"])
        if calendar:
            out["calendar_date"] = pd.to_datetime(out["study_date"], errors="coerce").dt.strftime("%Y-%m-%d")
    else:
        out["study_day"] = pd.Series(pd.NA, index=out.index, dtype="Int64")
    return out


def day_text(row: pd.Series | dict) -> str:
    """``day 28`` (plus the calendar date where the row carries one), or '' when undated."""
    day, calendar = row.get("study_day"), row.get("calendar_date")
    parts = []
    if day is not None and not pd.isna(day):
        parts.append(f"day {int(day)}")
    if isinstance(calendar, str) and calendar:
        parts.append(calendar)
    return " · ".join(parts)

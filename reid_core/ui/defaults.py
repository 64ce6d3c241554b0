"""Where the pages start, so that the first screen shows what the tool does, and what a result list means.

* retrieval opens on a query whose patient has other films (:func:`first_query_with_mates`);
* verification opens on a same-patient pair (:func:`first_same_patient_pair`);
* a result list says how many of the query patient's other films it found (:func:`own_films_found`).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


def _multi_image_patient_rows(manifest: pd.DataFrame) -> pd.Series:
    pid = manifest["patient_id"].astype(str)
    return pid[pid.map(pid.value_counts()) >= 2]


def first_query_with_mates(manifest: pd.DataFrame) -> int:
    """Position of the first row whose patient has at least one other film (0 when no patient has two)."""
    rows = _multi_image_patient_rows(manifest)
    return int(manifest.index.get_loc(rows.index[0])) if len(rows) else 0


def first_same_patient_pair(manifest: pd.DataFrame) -> tuple[int, int]:
    """Positions of the first two films of the first patient with two; ``(0, 1)`` (or ``(0, 0)``) without one."""
    rows = _multi_image_patient_rows(manifest)
    if not len(rows):
        return 0, min(1, max(len(manifest) - 1, 0))
    first = rows[rows == rows.iloc[0]].index[:2]
    return int(manifest.index.get_loc(first[0])), int(manifest.index.get_loc(first[1]))


@dataclass(frozen=True)
class OwnFilmsFound:
    """How a result list did for the query's patient."""

    found: int  # other films of the patient among the results
    n_other: int  # other films of the patient in the workspace
    shown: int  # results shown
    first_rank: int | None

    def sentence(self) -> str:
        """``"**2** of 3 other films of this patient found in the top 10 (first at rank 1)"``."""
        if self.n_other == 0:
            return (f"This patient has no other film in the workspace: all {self.shown} results are other patients "
                    "(a data steward's check would want the best match to look unlike the query).")
        text = f"**{self.found}** of {self.n_other} other film{'s' if self.n_other != 1 else ''} of this patient " \
               f"found in the top {self.shown}"
        return text + (f" (first at rank {self.first_rank})" if self.first_rank else "")


def own_films_found(manifest: pd.DataFrame, query_image_id: str, table: pd.DataFrame) -> OwnFilmsFound:
    """Count the query patient's other films in ``table`` (a :func:`reid_core.ui.tables.neighbour_table`)."""
    row = manifest.loc[manifest["image_id"].astype(str) == str(query_image_id)]
    patient = str(row["patient_id"].iloc[0])
    n_other = int((manifest["patient_id"].astype(str) == patient).sum()) - 1
    hits = table["patient_id"].astype(str) == patient
    first = int(table.loc[hits, "rank"].iloc[0]) if hits.any() else None
    return OwnFilmsFound(found=int(hits.sum()), n_other=n_other, shown=len(table), first_rank=first)

"""Which images an evaluation uses: the embedder's training record against the workspace's dataset."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reid_core.holdout import choose_evaluation_set, embedder_saw_workspace

PHANTOM0 = {"dataset": "phantom", "options": {"seed": 0, "patients": 1500}}


def _manifest():
    return pd.DataFrame({"patient_id": ["a", "a", "b", "c", "c", "d"],
                         "split": ["train", "train", "val", "test", "test", "train"]})


@pytest.mark.parametrize("info, record, saw", [
    ({"dataset": "phantom", "options": {"seed": 1}}, PHANTOM0, False),  # the demo: other phantom people
    ({"dataset": "phantom", "options": {"seed": 0}}, PHANTOM0, True),   # the training cohort itself
    ({"dataset": "nih", "options": {}}, PHANTOM0, False),               # an external dataset
    ({"dataset": "nih", "options": {}}, {"dataset": "nih"}, True),      # same dataset: cannot tell, so seen
    ({"dataset": "phantom", "options": {"seed": 1}}, None, True),       # trained here (no card.json)
])
def test_embedder_saw_workspace_rules(info, record, saw):
    got, reason = embedder_saw_workspace(info, record)
    assert got is saw and reason


def test_unseen_workspace_evaluates_every_image_and_records_why():
    m = _manifest()
    ev = choose_evaluation_set(m, "auto", {"dataset": "phantom", "options": {"seed": 1}}, PHANTOM0)
    assert ev.mode == "all" and ev.images.all() and "seed 0" in ev.reason
    rec = ev.record(m)
    assert rec["n_images"] == 6 and rec["n_patients"] == 4 and rec["splits"] == {"test": 2, "train": 3, "val": 1}
    seen = choose_evaluation_set(m, "auto", {"dataset": "phantom", "options": {"seed": 0}}, PHANTOM0)
    assert seen.mode == "test" and np.array_equal(seen.images, (m["split"] == "test").to_numpy())
    forced = choose_evaluation_set(m, "test", {"dataset": "phantom", "options": {"seed": 1}}, PHANTOM0)
    assert forced.mode == "test" and "requested" in forced.reason
    with pytest.raises(ValueError):
        choose_evaluation_set(m, "everything")

"""Documented commands run with their defaults, and bad input gets a typed error that says what to do."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reid_core.cli import main
from reid_core.errors import DatasetError, WorkspaceError
from reid_core.evaluate import evaluate_embeddings
from reid_core.prepare import prepare_workspace


def test_phantom_command_without_workers_runs(tmp_path, capsys):
    """The README's `cxr-reid phantom` line has no --workers: workers=None used to raise TypeError."""
    assert main(["phantom", "--out", str(tmp_path / "ph"), "--patients", "1", "--size", "32"]) == 0
    assert (tmp_path / "ph" / "Data_Entry_2017.csv").is_file()
    assert "wrote phantom dataset" in capsys.readouterr().out


def _csv_dataset(root):
    root.mkdir(parents=True)
    lines = ["File,Subject,Date"]
    for i in range(4):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(root / f"img{i}.png")
        lines.append(f"img{i}.png,S{i // 2},2020-0{1 + i % 2}-01")
    (root / "meta.csv").write_text("\n".join(lines) + "\n")
    return root


def test_csv_without_view_column_names_all_views(tmp_path, capsys):
    root = _csv_dataset(tmp_path / "x")
    opts = dict(csv_path=root / "meta.csv", path_col="File", patient_col="Subject", date_col="Date")
    with pytest.raises(DatasetError, match="--all-views") as info:
        prepare_workspace(tmp_path / "ws", "csv", root=root, size=16, workers=1, progress=False, **opts)
    assert "UNKNOWN 4" in str(info.value)
    summary = prepare_workspace(tmp_path / "ws", "csv", root=root, size=16, workers=1, progress=False,
                                frontal_only=False, **opts)
    assert summary.n_images == 4 and summary.n_patients == 2


def _manifest(split_patients: dict[str, list[int]]) -> pd.DataFrame:
    rows = [{"patient_id": f"{split}{p}", "split": split}
            for split, counts in split_patients.items() for p, n in enumerate(counts) for _ in range(n)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("val", [[3], [1, 1, 1]])
def test_evaluate_with_unusable_val_split_is_a_workspace_error(val):
    """One val patient (or no repeat images) cannot fit the verifier: ValueError used to escape."""
    m = _manifest({"test": [2, 2, 2], "val": val, "train": [2]})
    emb = np.random.default_rng(0).normal(size=(len(m), 4)).astype(np.float32)
    with pytest.raises(WorkspaceError, match="val split .*prepare more patients"):
        evaluate_embeddings(m, emb, n_boot=5)

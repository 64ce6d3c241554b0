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


def test_quiet_prepare_prints_no_progress_bars(tmp_path, capsys):
    root = _csv_dataset(tmp_path / "x")
    assert main(["prepare", "--dataset", "csv", "--root", str(root), "--csv", str(root / "meta.csv"),
                 "--csv-columns", "path=File,patient_id=Subject,study_date=Date", "--all-views",
                 "--workspace", str(tmp_path / "ws"), "--size", "16", "--workers", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "checking files" not in err and "it/s" not in err and "file/s" not in err, err


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


@pytest.mark.parametrize("argv, said", [
    (["search", "--workspace", "ws", "some_id", "-k", "0"], "argument -k: 0 is too small: give 1 or more"),
    (["prepare", "--dataset", "phantom", "--workspace", "ws", "--size", "0"], "out of range: give 16–4096"),
    (["evaluate", "--workspace", "ws", "--n-boot", "-1"], "argument --n-boot: -1 is too small: give 0 or more"),
])
def test_out_of_range_numbers_are_usage_errors(argv, said, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.parametrize("content, said", [(b"", "is empty"), (b"File,Subject\ncaf\xe9.png,S1\n", "not UTF-8")])
def test_unreadable_csv_is_a_dataset_error(tmp_path, capsys, content, said):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "meta.csv").write_bytes(content)
    rc = main(["prepare", "--dataset", "csv", "--root", str(tmp_path / "x"), "--csv", str(tmp_path / "x" / "meta.csv"),
               "--csv-columns", "path=File,patient_id=Subject", "--workspace", str(tmp_path / "ws"), "--quiet"])
    assert rc == 2 and said in capsys.readouterr().err


def test_workspace_that_is_a_file_is_a_workspace_error(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("not a folder")
    rc = main(["prepare", "--dataset", "phantom", "--patients", "1", "--size", "16", "--workspace", str(target),
               "--quiet"])
    assert rc == 2 and "is a file, not a workspace folder" in capsys.readouterr().err
    assert target.read_text() == "not a folder"


def test_corrupt_index_is_refused_before_faiss_allocates(tmp_path):
    """A 45-byte flat header claiming 10⁹ vectors made FAISS allocate gigabytes; now the size check refuses it."""
    from reid_core.retrieval import Index

    vecs = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    path = Index.build(vecs, [f"i{k}" for k in range(5)]).save(tmp_path)
    good = path.read_bytes()
    assert len(Index.load(tmp_path)) == 5
    bomb = bytearray(good[:45])
    bomb[8:16] = (10**9).to_bytes(8, "little")
    bomb[37:45] = (8 * 10**9).to_bytes(8, "little")
    for corrupt in (bytes(bomb), good[:-4], good[:45] + b"\0" * (len(good) - 45 + 4)):
        path.write_bytes(corrupt)
        with pytest.raises(WorkspaceError, match="do not fit 5 ids"):
            Index.load(tmp_path)

"""DICOM identifiers never reach the workspace: keyed pseudonyms for patient and image ids, relative dates."""
from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from reid_core.cli import main
from reid_core.data.manifest import load_manifest
from reid_core.pseudonyms import DAY_ZERO, MAPPING_FILE, SECRET_FILE, pseudonym, workspace_secret

from fixtures_datasets import write_dicom

PHI = {  # patient → [(SOP Instance UID, study date)]
    "MRN-4711-0815": [("1.2.826.0.1.3680043.10.471.1", "20190305"), ("1.2.826.0.1.3680043.10.471.2", "20190402")],
    "MRN-9999-1234": [("1.2.826.0.1.3680043.10.999.1", "20210717")],
}


def _phi_tree(root):
    for p, (pid, studies) in enumerate(PHI.items()):
        for s, (sop, date) in enumerate(studies):
            write_dicom(root / f"case{p}" / f"{s}.dcm", pid, f"{sop}.9", sop, date=date, size=16)
    return root


def _strings(path) -> str:
    if path.suffix == ".parquet":
        return pd.read_parquet(path).astype(str).to_csv()
    return path.read_text(errors="replace")


def _phi_values() -> list[str]:
    out = []
    for pid, studies in PHI.items():
        out.append(pid)
        for sop, date in studies:
            out += [sop, date, f"{date[:4]}-{date[4:6]}-{date[6:]}"]
    return out


def test_prepare_stores_no_dicom_identifiers(tmp_path, capsys):
    root, ws = _phi_tree(tmp_path / "dcm"), tmp_path / "ws"
    assert main(["prepare", "--dataset", "dicom", "--root", str(root), "--workspace", str(ws), "--size", "16",
                 "--workers", "1", "--quiet"]) == 0
    assert main(["status", "--workspace", str(ws)]) == 0
    printed = capsys.readouterr()
    texts = {p.name: _strings(p) for p in ws.iterdir() if p.suffix in (".parquet", ".csv", ".json", ".jsonl")}
    texts["cli output"] = printed.out + printed.err
    for value in _phi_values():
        for name, text in texts.items():
            assert value not in text, (value, name)
    m = load_manifest(ws / "manifest.parquet")
    key = workspace_secret(ws)
    assert set(m["patient_id"]) == {pseudonym(key, "P", pid) for pid in PHI}
    assert set(m["image_id"]) == {pseudonym(key, "I", sop) for studies in PHI.values() for sop, _ in studies}
    first = m[m["patient_id"] == pseudonym(key, "P", "MRN-4711-0815")].sort_values("study_order")
    assert (first["study_date"] - DAY_ZERO).dt.days.tolist() == [0, 28]  # the interval survives, the date not
    assert stat.S_IMODE(os.stat(ws / SECRET_FILE).st_mode) == 0o600
    assert not (ws / MAPPING_FILE).exists()


def test_pseudonyms_are_stable_per_workspace_and_differ_between_workspaces(tmp_path):
    root = _phi_tree(tmp_path / "dcm")
    ids = []
    for name in ("a", "a", "b"):
        assert main(["prepare", "--dataset", "dicom", "--root", str(root), "--workspace", str(tmp_path / name),
                     "--size", "16", "--workers", "1", "--quiet"]) == 0
        ids.append(set(load_manifest(tmp_path / name / "manifest.parquet")["patient_id"]))
    assert ids[0] == ids[1] and not ids[0] & ids[2]


def test_mapping_and_real_dates_only_on_request(tmp_path):
    root, ws = _phi_tree(tmp_path / "dcm"), tmp_path / "ws"
    assert main(["prepare", "--dataset", "dicom", "--root", str(root), "--workspace", str(ws), "--size", "16",
                 "--workers", "1", "--quiet", "--keep-mapping", "--real-dates"]) == 0
    mapping = pd.read_csv(ws / MAPPING_FILE, dtype=str)
    assert set(mapping["patient_id"]) == set(PHI)
    m = load_manifest(ws / "manifest.parquet")
    assert pd.Timestamp("2019-03-05") in set(m["study_date"])


def test_truncated_key_is_a_workspace_error(tmp_path):
    from reid_core.errors import WorkspaceError

    (tmp_path / SECRET_FILE).write_bytes(b"short")
    with pytest.raises(WorkspaceError, match="truncated"):
        workspace_secret(tmp_path)

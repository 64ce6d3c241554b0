"""Dataset adapters on tiny fixtures in each public layout (see tests/fixtures_datasets.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from reid_core.data.adapters import ADAPTERS, CHEXPERT_TO_NIH, AdapterResult, CsvAdapter, get_adapter
from reid_core.data.manifest import COLUMNS
from reid_core.errors import DatasetError

try:
    from fixtures_datasets import make_chexpert, make_dicom_folder, make_mimic, make_nih, write_dicom, write_image
except ImportError:  # tests/ as a package
    from tests.fixtures_datasets import make_chexpert, make_dicom_folder, make_mimic, make_nih, write_dicom, write_image


def by_id(res: AdapterResult) -> pd.DataFrame:
    return res.manifest.set_index("image_id")


def reasons(res: AdapterResult) -> dict[str, str]:
    return dict(zip(res.problems["path"], res.problems["reason"]))


def check_canonical(res: AdapterResult) -> None:
    m = res.manifest
    assert list(m.columns) == list(COLUMNS)
    assert m["image_id"].is_unique
    assert (m.groupby("patient_id")["split"].nunique() == 1).all()  # patient-disjoint
    assert list(res.problems.columns) == ["path", "reason"]


# ---------------------------------------------------------------------------------------------- registry
def test_registry_names_and_unknown_name() -> None:
    assert set(ADAPTERS) == {"nih", "chexpert", "mimic", "mimic-dicom", "dicom", "csv"}
    assert get_adapter("CheXpert", uncertain_as_positive=True).uncertain_as_positive
    with pytest.raises(ValueError, match="valid names: chexpert, csv, dicom, mimic, mimic-dicom, nih"):
        get_adapter("padchest")


@pytest.mark.parametrize("name", ["nih", "chexpert", "mimic", "mimic-dicom", "dicom"])
def test_wrong_root_is_a_clear_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        get_adapter(name).build(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="expected layout"):
        get_adapter(name).build(tmp_path / "empty")


# -------------------------------------------------------------------------------------------------- NIH
@pytest.mark.parametrize("v2020,split_folders", [(False, True), (True, False)])
def test_nih(tmp_path: Path, v2020: bool, split_folders: bool) -> None:
    res = get_adapter("nih").build(make_nih(tmp_path, v2020=v2020, split_folders=split_folders))
    check_canonical(res)
    m = by_id(res)
    assert len(m) == 5 and set(m["patient_id"]) == {"1", "2", "3"}
    assert m.loc[["00000001_000.png", "00000001_001.png", "00000001_002.png"], "study_order"].tolist() == [0, 1, 2]
    assert m.loc["00000001_001.png", "findings"] == "Cardiomegaly|Emphysema"
    assert m.loc["00000002_000.png", ["view", "sex", "age", "findings"]].tolist() == ["AP", "M", 81.0, "No Finding"]
    assert m.loc["00000003_000.png", "sex"] == "F"
    expected = "images_002/images/00000002_000.png" if split_folders else "images/00000002_000.png"
    assert m.loc["00000002_000.png", "path"] == expected
    assert (m["dataset"] == "nih").all()
    assert reasons(res) == {"images/00000003_001.png": "missing file"}
    assert len(get_adapter("nih").build(tmp_path, check_files=False).manifest) == 6


# --------------------------------------------------------------------------------------------- CheXpert
@pytest.mark.parametrize("use_parent", [True, False])
def test_chexpert_both_roots(tmp_path: Path, use_parent: bool) -> None:
    base = make_chexpert(tmp_path)
    root = tmp_path if use_parent else base
    res = get_adapter("chexpert").build(root, frontal_only=False)
    check_canonical(res)
    m = by_id(res)
    prefix = "CheXpert-v1.0-small/" if use_parent else ""
    s1, s2, s10 = (f"train/patient00001/study{n}/view1_frontal.jpg" for n in (1, 2, 10))
    lat = "train/patient00001/study1/view2_lateral.jpg"
    assert m.loc[s1, "path"] == prefix + s1
    assert all((root / p).exists() for p in m["path"])
    assert m.loc[[s1, lat, s2, s10], "study_order"].tolist() == [0, 0, 1, 2]  # study10 after study2
    assert m.loc[[s1, lat, s2, s10], "view"].tolist() == ["AP", "LL", "PA", "AP"]
    assert m.loc[s1, "findings"] == "Pleural Effusion"
    assert m.loc[s2, "findings"] == "No Finding"  # -1.0 is uncertain, not positive by default
    assert m.loc[s10, ["findings", "sex", "age"]].tolist() == ["Cardiomegaly", "F", 70.0]
    assert m.loc["valid/patient64541/study1/view1_frontal.jpg", "patient_id"] == "patient64541"
    assert set(m["patient_id"]) == {"patient00001", "patient00002", "patient64541"}
    assert (m["patient_id"] == "patient00002").sum() == 1  # the repeated CSV row is kept once
    assert reasons(res) == {prefix + "train/patient00003/study1/view1_frontal.jpg": "missing file"}


def test_chexpert_frontal_and_label_options(tmp_path: Path) -> None:
    make_chexpert(tmp_path)
    m = by_id(get_adapter("chexpert").build(tmp_path))
    assert set(m["view"]) <= {"PA", "AP"} and "train/patient00001/study1/view2_lateral.jpg" not in m.index
    assert m.loc["train/patient00001/study2/view1_frontal.jpg", "study_order"] == 1  # same order whatever the filter
    opt = by_id(get_adapter("chexpert", uncertain_as_positive=True, label_map=CHEXPERT_TO_NIH).build(tmp_path))
    assert opt.loc["train/patient00001/study2/view1_frontal.jpg", "findings"] == "Effusion"
    assert opt.loc["train/patient00001/study1/view1_frontal.jpg", "findings"] == "Effusion"


# ------------------------------------------------------------------------------------------------ MIMIC
def test_mimic_jpg(tmp_path: Path) -> None:
    res = get_adapter("mimic").build(make_mimic(tmp_path), frontal_only=False)
    check_canonical(res)
    m = by_id(res)
    assert m.loc["img-a", "path"] == "files/p10/p10000032/s50000001/img-a.jpg"
    # same-day studies ordered by time as numbers: 70016.015 (07:00) before 165500.312
    assert m.loc[["img-a", "img-b", "img-d", "img-c"], "study_order"].tolist() == [0, 0, 1, 2]
    assert m.loc[["img-a", "img-b", "img-c", "img-d"], "view"].tolist() == ["PA", "LL", "AP", "PA"]
    assert m.loc["img-a", "findings"] == "Atelectasis"  # Cardiomegaly is -1.0
    assert m.loc["img-c", "findings"] == "No Finding"
    assert m.loc["img-d", "findings"] == "Pleural Effusion"
    assert m.loc["img-e", "findings"] == "Support Devices"
    assert str(m.loc["img-c", "study_date"].date()) == "2180-06-26"
    assert m.loc["img-a", ["sex", "age"]].tolist() == ["F", 52.0]
    assert m.loc["img-e", ["sex", "age"]].tolist() == ["M", 62.0]  # anchor_age + (2190 - anchor_year 2188)
    assert reasons(res) == {"files/p11/p11000011/s50000005/img-f.jpg": "missing file"}
    assert "img-b" not in by_id(get_adapter("mimic").build(tmp_path)).index


def test_mimic_without_patients_csv_and_missing_metadata(tmp_path: Path) -> None:
    m = by_id(get_adapter("mimic").build(make_mimic(tmp_path, patients=False)))
    assert set(m["sex"]) == {"U"} and m["age"].isna().all()
    (tmp_path / "mimic-cxr-2.0.0-metadata.csv").unlink()
    with pytest.raises(DatasetError, match="mimic-cxr-2.0.0-metadata.csv"):
        get_adapter("mimic").build(tmp_path)


@pytest.mark.parametrize("metadata", [True, False])
def test_mimic_dicom(tmp_path: Path, metadata: bool) -> None:
    res = get_adapter("mimic-dicom").build(make_mimic(tmp_path, suffix=".dcm", metadata=metadata), frontal_only=False)
    check_canonical(res)
    m = by_id(res)
    assert sorted(m.index) == ["img-a", "img-b", "img-c", "img-d", "img-e"]
    assert m.loc["img-d", "path"] == "files/p10/p10000032/s50000003/img-d.dcm"
    assert m.loc[["img-a", "img-b", "img-d", "img-c", "img-e"], "study_order"].tolist() == [0, 0, 1, 2, 0]
    assert m.loc["img-b", "view"] == "LL" and m.loc["img-d", "findings"] == "Pleural Effusion"
    assert set(m["patient_id"]) == {"10000032", "11000011"}
    assert m.loc["img-e", "sex"] == "M"
    assert len(res.problems) == (1 if metadata else 0)  # without metadata nothing lists the missing image


# ----------------------------------------------------------------------------------------- DICOM folder
def test_dicom_folder(tmp_path: Path) -> None:
    res = get_adapter("dicom").build(make_dicom_folder(tmp_path), frontal_only=False, progress=True)
    check_canonical(res)
    m = by_id(res)
    assert set(m.index) == {"1.9.1.1", "1.9.1.2", "1.9.0.1", "1.9.3.1", "1.9.2.1"}
    assert m.loc["1.9.0.1", "path"] == "P1/a0/IM0001"  # found by its preamble, no suffix
    assert m.loc[["1.9.0.1", "1.9.1.1", "1.9.1.2"], "study_order"].tolist() == [0, 1, 1]  # one study, one order
    assert m.loc[["1.9.2.1", "1.9.3.1"], "study_order"].tolist() == [0, 1]  # 09:30 before 12:30 ("1230")
    assert m.loc[["1.9.1.1", "1.9.1.2", "1.9.0.1"], "view"].tolist() == ["PA", "LL", "AP"]
    assert m.loc["1.9.3.1", ["patient_id", "sex", "age"]].tolist() == ["PAT2", "M", 70.0]
    assert str(m.loc["1.9.3.1", "study_date"].date()) == "2021-01-01"
    probs = reasons(res)
    assert set(probs) == {"P2/broken.dcm", "P2/truncated.dcm", "scout.bin"}  # notes.txt: a sidecar, skipped
    assert probs["scout.bin"] == "not a DICOM file"
    assert probs["P2/broken.dcm"] and probs["P2/truncated.dcm"]  # read_dicom_header's reason, kept as is
    assert len(get_adapter("dicom").build(tmp_path).manifest) == 4  # lateral dropped by default


def test_dicom_folder_duplicate_sop_and_no_patient(tmp_path: Path) -> None:
    make_dicom_folder(tmp_path)
    shutil.copy(tmp_path / "P2" / "b1.dcm", tmp_path / "P2" / "copy_of_b1.dcm")
    write_dicom(tmp_path / "anon.dcm", None, "1.9.9", "1.9.9.1")
    res = get_adapter("dicom").build(tmp_path)
    m = by_id(res)
    assert {"P2/b1.dcm", "P2/copy_of_b1.dcm"} <= set(m.index) and "1.9.2.1" not in m.index
    assert "1.9.3.1" in m.index  # other ids stay SOP UIDs
    assert reasons(res)["anon.dcm"] == "no PatientID"


# ------------------------------------------------------------------------------------------ generic CSV
def test_csv_adapter(tmp_path: Path) -> None:
    for name in ("a1.png", "a2.png", "b1.png"):
        write_image(tmp_path / "img" / name)
    abs_b1 = (tmp_path / "img" / "b1.png").as_posix()
    (tmp_path / "list.csv").write_text(
        "file,subject,visit,pos,gender,years,labels\n"
        "img/a2.png,A,10,PA,F,30,Mass;Nodule\n"
        "img/a1.png,A,2,Frontal,F,29,\n"
        f"{abs_b1},B,1,LATERAL,M,040Y,No Finding\n"
        "img/gone.png,B,2,PA,M,41,\n"
    )
    ad = CsvAdapter("list.csv", path_col="file", patient_col="subject", order_col="visit", view_col="pos",
                    sex_col="gender", age_col="years", findings_col="labels", findings_sep=";", dataset="mine")
    res = ad.build(tmp_path, frontal_only=False)
    check_canonical(res)
    m = res.manifest.set_index("path")
    assert m.loc[["img/a1.png", "img/a2.png", "img/b1.png"], "study_order"].tolist() == [0, 1, 0]  # 2 < 10
    assert m.loc["img/a2.png", ["findings", "view", "age"]].tolist() == ["Mass|Nodule", "PA", 30.0]
    assert m.loc["img/b1.png", ["view", "sex", "age"]].tolist() == ["LL", "M", 40.0]
    assert m.loc["img/a1.png", "view"] == "UNKNOWN" and (m["dataset"] == "mine").all()
    assert reasons(res) == {"img/gone.png": "missing file"}
    with pytest.raises(DatasetError, match=r"\['visit_date'\].*available columns.*'subject'"):
        CsvAdapter(tmp_path / "list.csv", path_col="file", patient_col="subject", date_col="visit_date").build(tmp_path)
    with pytest.raises(DatasetError, match="other.csv"):
        CsvAdapter("other.csv").build(tmp_path)


def test_csv_paths_outside_the_root_are_never_opened(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_image(root / "img" / "a.png")
    secret = write_image(tmp_path / "secret" / "x.png")  # exists, but outside the root
    (root / "list.csv").write_text(
        "file,subject\n"
        "img/a.png,A\n"
        "../secret/x.png,B\n"
        f"{secret.as_posix()},C\n"
        "img/../../secret/x.png,D\n"
        "/nonexistent/y.png,E\n"
    )
    res = CsvAdapter("list.csv", path_col="file", patient_col="subject").build(root, frontal_only=False)
    assert res.manifest["path"].tolist() == ["img/a.png"]
    outside = {p: r for p, r in reasons(res).items()}
    assert set(outside) == {"../secret/x.png", secret.as_posix(), "img/../../secret/x.png", "/nonexistent/y.png"}
    assert len(set(outside.values())) == 1 and "outside the dataset root" in next(iter(outside.values()))


def test_conflicting_rows_for_one_file_are_not_resolved_silently(tmp_path: Path, caplog) -> None:
    write_image(tmp_path / "img" / "a.png")
    write_image(tmp_path / "img" / "b.png")
    (tmp_path / "list.csv").write_text("file,subject,labels\nimg/a.png,A,Mass\nimg/a.png,A,Nodule\n"
                                       "img/b.png,B,Mass\nimg/b.png,B,Mass\n")
    ad = CsvAdapter("list.csv", path_col="file", patient_col="subject", findings_col="labels")
    with caplog.at_level("WARNING"):
        res = ad.build(tmp_path, frontal_only=False)
    assert res.manifest.set_index("path")["findings"].to_dict() == {"img/a.png": "Mass", "img/b.png": "Mass"}
    said = [r.getMessage() for r in caplog.records if "more than once" in r.getMessage()]
    assert said == ["1 file(s) are listed more than once with different findings; the first row of each was kept"]


# ------------------------------------------------------------------------------------------------ splits
def test_splits_deterministic_and_patient_disjoint(tmp_path: Path) -> None:
    make_chexpert(tmp_path / "a")
    make_chexpert(tmp_path / "b", folder="renamed")  # other root, other folder name: same ids and splits
    one = by_id(get_adapter("chexpert").build(tmp_path / "a", frontal_only=False))
    two = by_id(get_adapter("chexpert").build(tmp_path / "b", frontal_only=False))
    assert one.index.equals(two.index)
    assert one["split"].equals(two["split"])
    for m in (one, two):
        assert (m.groupby("patient_id")["split"].nunique() == 1).all()
        assert set(m["split"]) <= {"train", "val", "test"}

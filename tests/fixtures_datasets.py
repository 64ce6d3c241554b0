"""Tiny datasets in the public layouts (NIH, CheXpert, MIMIC-CXR, DICOM folder), written under a tmp dir.

Images are real but 8x8 pixels (PIL PNG/JPG, pydicom DICOM) so every fixture
builds in milliseconds. Plain functions, no pytest import: reusable anywhere.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

NIH_HEADER_2017 = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
                   "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
CHEXPERT_COLUMNS = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
                    "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
                    "Pleural Effusion,Pleural Other,Fracture,Support Devices")
MIMIC_META_COLUMNS = ("dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,"
                      "StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
                      "PatientOrientationCodeSequence_CodeMeaning")
MIMIC_LABELS = ("Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,Lung Lesion,"
                "Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices")


def write_image(path: Path, value: int = 100) -> Path:
    """An 8x8 grey PNG or JPG (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def write_dicom(path: Path, patient_id: str | None, study_uid: str, sop_uid: str, date: str = "20200101",
                time: str = "120000", view: str = "PA", sex: str = "F", age: str = "045Y", size: int = 8) -> Path:
    """A minimal valid ``size``×``size`` MONOCHROME2 DX DICOM file (a ramp) with the given header values."""
    from pydicom.dataset import FileMetaDataset, Dataset
    from pydicom.uid import ExplicitVRLittleEndian

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, study_uid + ".1"
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.StudyDate, ds.StudyTime, ds.ViewPosition = date, time, view
    ds.PatientSex, ds.PatientAge, ds.Modality = sex, age, "DX"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(size * size, dtype=np.uint16) % 4096).reshape(size, size).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_text(path: Path, text: str, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def make_nih(root: Path, v2020: bool = False, split_folders: bool = True) -> Path:
    """ChestX-ray14: patient 1 (3 follow-ups, listed out of order), 2 (AP), 3 (one PNG missing on disk)."""
    rows = [  # image, labels, follow-up, patient, age, sex, view
        ("00000001_002.png", "Cardiomegaly|Effusion", 2, 1, 59, "M", "PA"),
        ("00000001_000.png", "Cardiomegaly", 0, 1, 57, "M", "PA"),
        ("00000001_001.png", "Emphysema|Cardiomegaly", 1, 1, 58, "M", "PA"),
        ("00000002_000.png", "No Finding", 0, 2, 81, "M", "AP"),
        ("00000003_000.png", "Hernia", 0, 3, 74, "F", "PA"),
        ("00000003_001.png", "Hernia", 1, 3, 75, "F", "PA"),  # listed, never written
    ]
    header = NIH_HEADER_2017.rstrip(",") if v2020 else NIH_HEADER_2017
    end = "" if v2020 else ","
    lines = [header] + [
        f"{img},{lab},{fu},{pid},{age if v2020 else f'{age:03d}Y'},{sex},{view},2500,2048,0.143,0.143{end}"
        for img, lab, fu, pid, age, sex, view in rows
    ]
    write_text(root / ("Data_Entry_2017_v2020.csv" if v2020 else "Data_Entry_2017.csv"), "\n".join(lines) + "\n")
    for i, (img, *_rest) in enumerate(rows[:-1]):
        folder = root / (f"images_{1 + i // 3:03d}/images" if split_folders else "images")
        write_image(folder / img)
    return root


def make_chexpert(root: Path, folder: str = "CheXpert-v1.0-small") -> Path:
    """CheXpert under ``root/folder``; returns the dataset folder. patient00001 has study1, 2 and 10."""
    base = root / folder
    labels = {"Cardiomegaly": 7, "Pleural Effusion": 15, "No Finding": 5, "Edema": 10}
    train = [  # rel path, sex, age, F/L, AP/PA, {label: value}
        ("train/patient00001/study10/view1_frontal.jpg", "Female", 70, "Frontal", "AP", {"Cardiomegaly": 1.0}),
        ("train/patient00001/study2/view1_frontal.jpg", "Female", 68, "Frontal", "PA", {"Pleural Effusion": -1.0}),
        ("train/patient00001/study1/view1_frontal.jpg", "Female", 68, "Frontal", "AP",
         {"Pleural Effusion": 1.0, "Edema": 0.0}),
        ("train/patient00001/study1/view2_lateral.jpg", "Female", 68, "Lateral", "", {"Pleural Effusion": 1.0}),
        ("train/patient00002/study1/view1_frontal.jpg", "Male", 40, "Frontal", "PA", {"No Finding": 1.0}),
        ("train/patient00002/study1/view1_frontal.jpg", "Male", 40, "Frontal", "PA", {"No Finding": 1.0}),  # dup
        ("train/patient00003/study1/view1_frontal.jpg", "Male", 50, "Frontal", "PA", {}),  # not on disk
    ]
    valid = [("valid/patient64541/study1/view1_frontal.jpg", "Male", 73, "Frontal", "AP", {"Edema": 1.0})]
    ncols = len(CHEXPERT_COLUMNS.split(","))
    for name, rows in (("train.csv", train), ("valid.csv", valid)):
        lines = [CHEXPERT_COLUMNS]
        for rel, sex, age, fl, appa, labs in rows:
            cells = [f"{folder}/{rel}", sex, str(age), fl, appa] + [""] * (ncols - 5)
            for lab, v in labs.items():
                cells[labels[lab]] = str(v)
            lines.append(",".join(cells))
        write_text(base / name, "\n".join(lines) + "\n")
    for rel, *_ in train[:-1] + valid:
        write_image(base / rel)
    return base


# (dicom_id, subject, study, view, StudyDate, StudyTime) — s3 is on the same day as s2 but earlier (70016 < 165500)
MIMIC_IMAGES = [
    ("img-a", "10000032", "50000001", "PA", "21800506", "213014.531"),
    ("img-b", "10000032", "50000001", "LATERAL", "21800506", "213014.531"),
    ("img-c", "10000032", "50000002", "AP", "21800626", "165500.312"),
    ("img-d", "10000032", "50000003", "PA", "21800626", "70016.015"),
    ("img-e", "11000011", "50000004", "AP", "21900101", "100000"),
    ("img-f", "11000011", "50000005", "PA", "21900202", "100000"),  # listed, never written
]


def make_mimic(root: Path, suffix: str = ".jpg", metadata: bool = True, patients: bool = True) -> Path:
    """MIMIC-CXR-JPG (``suffix='.jpg'``) or DICOM (``'.dcm'``) layout with the metadata/label/patients CSVs."""
    if metadata:
        lines = [MIMIC_META_COLUMNS] + [f"{d},{s},{st},CHEST (PA AND LAT),{v},8,8,{dt},{tm},,," for d, s, st, v, dt, tm
                                        in MIMIC_IMAGES]
        write_text(root / "mimic-cxr-2.0.0-metadata.csv", "\n".join(lines) + "\n")
    lab = "subject_id,study_id," + MIMIC_LABELS
    n = len(MIMIC_LABELS.split(","))
    labs = {"50000001": {0: "1.0", 1: "-1.0"}, "50000002": {8: "1.0"}, "50000003": {9: "1.0", 3: "0.0"},
            "50000004": {13: "1.0"}}
    lines = [lab] + [f"{'10000032' if st < '50000004' else '11000011'},{st},"
                     + ",".join(v.get(i, "") for i in range(n)) for st, v in labs.items()]
    write_text(root / "mimic-cxr-2.0.0-chexpert.csv.gz", "\n".join(lines) + "\n", gz=True)
    if patients:
        write_text(root / "patients.csv", "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n"
                   "10000032,F,52,2180,2014 - 2016,\n11000011,M,60,2188,2008 - 2010,\n")
    for d, s, st, v, dt, tm in MIMIC_IMAGES[:-1]:
        path = root / "files" / f"p{s[:2]}" / f"p{s}" / f"s{st}" / f"{d}{suffix}"
        if suffix == ".dcm":
            dicom_time = tm.zfill(10 if "." in tm else 6)  # DICOM TM is zero-padded, MIMIC's float is not
            write_dicom(path, s, f"1.2.3.{st}", f"1.2.3.{st}.{ord(d[-1])}", date=dt, time=dicom_time,
                        view=v, sex="O", age="")
        else:
            write_image(path)
    return root


def make_dicom_folder(root: Path) -> Path:
    """2 patients x 2 studies (P1/a1 has a PA and a lateral), a no-suffix DICOM, and three bad files:
    a text file named .dcm, a truncated .dcm and a stray binary; plus a .txt sidecar that is skipped silently."""
    write_dicom(root / "P1" / "a1" / "pa.dcm", "PAT1", "1.9.1", "1.9.1.1", date="20200301", time="080000", view="PA")
    write_dicom(root / "P1" / "a1" / "lat.dcm", "PAT1", "1.9.1", "1.9.1.2", date="20200301", time="080500", view="LL")
    write_dicom(root / "P1" / "a0" / "IM0001", "PAT1", "1.9.0", "1.9.0.1", date="20190301", time="235900", view="AP")
    write_dicom(root / "P2" / "b2.dcm", "PAT2", "1.9.3", "1.9.3.1", date="20210101", time="1230", view="AP",
                sex="M", age="070Y")
    write_dicom(root / "P2" / "b1.dcm", "PAT2", "1.9.2", "1.9.2.1", date="20210101", time="093000", view="PA",
                sex="M", age="070Y")
    write_text(root / "P2" / "broken.dcm", "this is not a dicom file at all" * 10)
    (root / "P2" / "truncated.dcm").write_bytes((root / "P2" / "b1.dcm").read_bytes()[:300])
    write_text(root / "notes.txt", "acquisition notes")
    (root / "scout.bin").write_bytes(b"\x00\x01 not an image")
    write_text(root / ".DS_Store", "hidden")
    return root

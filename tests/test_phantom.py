"""Tests of the phantom CXR generator: determinism, ground truth, exports and difficulty."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reid_core.data.manifest import COLUMNS, load_manifest
from reid_core.data.phantom import (
    FINDING_LABELS, NIH_CSV, NIH_HEADER, PhantomGenerator, contact_sheet, phantom_factors, write_phantom_dataset,
)
from reid_core.data.phantom.findings import ACUTE
from reid_core.data.phantom.render import compose

NEUTRAL = dict(rotation=0.0, shift_x=0.0, shift_y=0.0, scale=1.0, aspect=1.0, obliquity=0.0, inspiration=0.0,
               collimation=(0.0, 0.0, 0.0, 0.0), tubes=(), window=(0.0, 0.0), gamma=1.0, kv=1.0, equalize=0.4,
               noise=0.004, blur=0.8, scatter=0.08, soft_drift=1.0, gastric_bubble=0.8, marker="L",
               marker_pos=(0.85, 0.08))


def test_image_shape_dtype_and_range():
    gen = PhantomGenerator(seed=3, size=64)
    img = gen.render(0, 0)
    assert img.shape == (64, 64) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.1
    with pytest.raises(IndexError):
        gen.render(0, len(gen.studies(0)))


def test_deterministic_and_subset_reproducible():
    big = PhantomGenerator(seed=11, size=48)
    first = {i: big.render(i, 0) for i in range(20)}
    sub = PhantomGenerator(seed=11, size=48)
    for i in (9, 5):  # other order, other patients absent
        for j, spec in enumerate(sub.studies(i)):
            assert np.array_equal(sub.render(i, j), big.render(i, j))
        assert np.array_equal(sub.render(i, 0), first[i])
        assert sub.factor_rows(i) == big.factor_rows(i)
    other = PhantomGenerator(seed=12, size=48)
    assert not np.array_equal(other.render(5, 0), first[5])


def test_display_convention_lungs_dark_mediastinum_bright():
    gen = PhantomGenerator(seed=5, size=96)
    spec = dataclasses.replace(gen.studies(0)[0], view="PA", **NEUTRAL)
    img = gen.render_spec(spec)
    lung = img[35:55, 14:28].mean()          # patient-right mid lung (image left)
    mediastinum = img[30:60, 45:51].mean()   # midline
    abdomen = img[85:92, 40:56].mean()
    assert lung + 0.2 < mediastinum and lung + 0.2 < abdomen


def test_manifest_canonical():
    gen = PhantomGenerator(seed=2, size=64)
    man = gen.manifest(range(6))
    assert list(man.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert man["patient_id"].str.fullmatch(r"P\d{5}").all()
    assert man["image_id"].str.fullmatch(r"P\d{5}_s\d{2}").all()
    assert set(man["view"]) <= {"PA", "AP"} and set(man["sex"]) <= {"M", "F"}
    assert (man["dataset"] == "phantom").all() and man["study_date"].notna().all()
    assert man["path"].str.fullmatch(r"images/\d{8}_\d{3}\.png").all()


def test_ground_truth_consistency_on_headers_only():
    df = phantom_factors(600, seed=21)
    labels = set(FINDING_LABELS) | {"No Finding"}
    assert set("|".join(df["findings"]).split("|")) <= labels
    id_cols = [c for c in df.columns if c.startswith("id_")]
    assert len(id_cols) > 60
    abnormal = 0
    for pid, g in df.groupby("patient_id"):
        g = g.sort_values("study_order")
        assert 1 <= len(g) <= 10 and (g["study_order"].to_numpy() == np.arange(len(g))).all()
        assert g["study_date"].is_monotonic_increasing
        assert (g["study_date"].iloc[-1] - g["study_date"].iloc[0]).days <= 3653
        assert (g[id_cols].nunique(dropna=False) == 1).all(), "identity factors must be fixed per patient"
        assert np.all(np.diff(g["age"].to_numpy()) >= 0)
        sick = (g["findings"] != "No Finding").to_numpy()
        if not sick.any():
            continue
        abnormal += 1
        onset = int(np.argmax(sick))
        assert not sick[:onset].any()
        kinds = {k for ks in g["finding_kinds"] for k in ks.split("|") if k}
        if kinds <= ACUTE:  # acute findings may resolve, but never come back
            ends = np.flatnonzero(np.diff(sick.astype(int)) == -1)
            assert len(ends) <= 1 and not sick[ends[0] + 1:].any() if len(ends) else True
        else:  # chronic findings persist from onset on
            assert sick[onset:].all()
        assert ((g["finding_severity"] > 0) == sick).all()
    assert 0.25 <= abnormal / df["patient_id"].nunique() <= 0.42


def test_ap_magnifies_heart():
    gen = PhantomGenerator(seed=4, size=128)
    df = gen.factors_table(range(80))
    assert (df.loc[df.view == "PA", "heart_magnification"] == 1.0).all()
    assert (df.loc[df.view == "AP", "heart_magnification"] > 1.1).all()
    assert df.loc[df.view == "AP", "apparent_ctr"].mean() > df.loc[df.view == "PA", "apparent_ctr"].mean()
    layers, th = gen.layers(1), gen.layers(1).thorax
    xs = layers.grid.xs[0]
    widths = {}
    for view in ("PA", "AP"):  # same study, only the view differs: measure the cardiac silhouette
        spec = dataclasses.replace(gen.studies(1)[0], view=view, findings=(), **NEUTRAL)
        row = compose(layers, gen.patient(1), spec, np.random.default_rng(0))[int(layers.grid.index(th.heart.cy + 0.1))]
        lung = np.percentile(row[np.abs(xs) < th.width], 15)
        dense = row > 0.5 * (lung + row[np.abs(xs) < 0.1].min())
        c = int(layers.grid.index(th.heart.cx))
        widths[view] = np.argmin(dense[c:]) + np.argmin(dense[c::-1])
    assert widths["AP"] > 1.07 * widths["PA"]


def test_identity_separates_patients_in_factor_space():
    df = phantom_factors(120, seed=8, n_studies=4)
    cols = [c for c in df.columns if (c.startswith("id_") and df[c].dtype.kind == "f")] + ["bone_density_now"]
    z = (df[cols] - df[cols].mean()) / (df[cols].std() + 1e-9)
    pid = df["patient_id"].to_numpy()
    x = z.to_numpy()
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    same = pid[:, None] == pid[None]
    np.fill_diagonal(same, False)
    other = pid[:, None] != pid[None]
    assert d[same].mean() < 0.01 * d[other].mean()


def _p_at_1(feats: np.ndarray, labels: np.ndarray) -> float:
    d = ((feats[:, None] - feats[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


def test_pixel_baseline_cannot_reidentify():
    from sklearn.decomposition import PCA
    gen = PhantomGenerator(seed=2024, size=64, n_studies=4)
    feats, labels = [], []
    for i in range(100):
        for j in range(4):
            small = Image.fromarray(gen.render(i, j)).resize((32, 32), Image.BILINEAR)
            feats.append(np.asarray(small, np.float64).ravel())
            labels.append(i)
    x = np.array(feats)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    p1 = _p_at_1(PCA(50, random_state=0).fit_transform(x), np.array(labels))
    assert p1 <= 0.5, f"pixel baseline P@1 {p1:.3f} — the phantom is too easy"


def test_identity_is_in_the_anatomy():
    """With acquisition nuisance neutralised, even raw pixels re-identify patients across years."""
    gen = PhantomGenerator(seed=77, size=64, n_studies=3)
    feats, labels = [], []
    for i in range(40):
        for spec in gen.studies(i)[:2]:
            img = gen.render_spec(dataclasses.replace(spec, view="PA", **NEUTRAL)).astype(np.float64)
            feats.append((img - img.mean()).ravel() / img.std())
            labels.append(i)
    assert _p_at_1(np.array(feats), np.array(labels)) >= 0.9


def test_nih_export_layout(tmp_path):
    root = write_phantom_dataset(tmp_path / "nih", 4, seed=6, size=64, fmt="nih", progress=False)
    with open(root / NIH_CSV) as fh:
        assert fh.readline().rstrip("\n") == NIH_HEADER
    df = pd.read_csv(root / NIH_CSV)
    assert list(df.columns[:9]) == ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
                                    "Patient Gender", "View Position", "OriginalImage[Width", "Height]"]
    assert df["Patient ID"].dtype.kind == "i" and df["Patient Age"].dtype.kind == "i"
    assert set(df["Patient Gender"]) <= {"M", "F"} and set(df["View Position"]) <= {"PA", "AP"}
    assert df["Image Index"].str.fullmatch(r"\d{8}_\d{3}\.png").all()
    for name, pid, fu in df[["Image Index", "Patient ID", "Follow-up #"]].itertuples(index=False):
        assert name == f"{pid:08d}_{fu:03d}.png"
        with Image.open(root / "images" / name) as im:
            assert im.mode == "L" and im.size == (64, 64)
    man = load_manifest(root / "manifest.parquet")
    factors = pd.read_parquet(root / "phantom_factors.parquet")
    assert len(man) == len(df) == len(factors)
    assert (root / "phantom_settings.json").exists()
    par = write_phantom_dataset(tmp_path / "par", 4, seed=6, size=64, fmt="nih", workers=2, progress=False)
    for name in df["Image Index"]:
        assert (par / "images" / name).read_bytes() == (root / "images" / name).read_bytes()


def test_dicom_export_tags_and_monochrome1(tmp_path):
    import pydicom
    m2 = write_phantom_dataset(tmp_path / "m2", 2, seed=9, size=64, fmt="dicom", photometric="MONOCHROME2",
                               progress=False)
    m1 = write_phantom_dataset(tmp_path / "m1", 2, seed=9, size=64, fmt="dicom", photometric="MONOCHROME1",
                               progress=False)
    man = load_manifest(m2 / "manifest.parquet")
    gen = PhantomGenerator(seed=9, size=64)
    for row in man.itertuples():
        a, b = pydicom.dcmread(m2 / row.path), pydicom.dcmread(m1 / row.path)
        assert a.PatientID == row.patient_id and a.ViewPosition == row.view and a.PatientSex == row.sex
        assert a.StudyDate == row.study_date.strftime("%Y%m%d") and re.fullmatch(r"\d{6}", a.StudyTime)
        assert re.fullmatch(r"\d{3}Y", a.PatientAge) and a.Modality in ("DX", "CR")
        assert (a.BitsAllocated, a.BitsStored, a.HighBit, a.PixelRepresentation) == (16, 12, 11, 0)
        assert "RescaleSlope" in a and "WindowCenter" in a and str(a.PatientName).startswith("PHANTOM^")
        assert a.PhotometricInterpretation == "MONOCHROME2" and b.PhotometricInterpretation == "MONOCHROME1"
        assert a.SOPInstanceUID == b.SOPInstanceUID and a.StudyInstanceUID == b.StudyInstanceUID
        assert len({a.StudyInstanceUID, a.SeriesInstanceUID, a.SOPInstanceUID}) == 3
        assert np.array_equal(a.pixel_array.astype(int) + b.pixel_array.astype(int), np.full((64, 64), 4095))
        expected = np.round(gen.render(int(row.patient_id[1:]), row.study_order) * 4095)
        assert np.array_equal(a.pixel_array, expected.astype(np.uint16))


def test_contact_sheet_small():
    sheet = contact_sheet(None, seed=1, size=48, patients=(0, 1), n_studies=2)
    assert sheet.mode == "L" and sheet.size[0] > 96 and sheet.size[1] > 96

"""Known PHI from prepared DICOMs never appears: not in the workspace, the app's pages, its CSV exports or CLI output.

Twelve patients' DICOMs carry a PatientID (an MRN), a PatientName, an AccessionNumber, SOP Instance and Study
UIDs and calendar study dates. The workspace is built with the CLI (``prepare``, ``embed``, ``evaluate``) over an
untrained 16-d embedder, given an untrained generator, and every page is opened with AppTest; everything the
pages render (text, tables, figure specs, widget options, image captions) is searched for each PHI string and
for calendar dates at all: dates are shown as days from the patient's first study (``day 28``). The same search
over a workspace prepared with ``--real-dates`` finds the dates, so the search can see them when they are there.
The CLI-built workspace also serves the test of the CLI's warning about a verifier that is not informative.
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import reid_core  # noqa: F401  (before timm)
from gan.config import GanConfig, build_generator
from gan.snapshot import save_generator
from reid_core.checkpoint import save_embedder
from reid_core.cli import main
from reid_core.data.manifest import load_manifest
from reid_core.model import Embedder
from reid_core.pseudonyms import pseudonym, workspace_secret
from reid_core.ui.dates import with_study_days
from reid_core.ui.tables import display_frame, neighbour_table, selection_csv
from reid_core.workspace import Workspace

from fixtures_datasets import write_dicom
from test_app import each_page

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

N_PATIENTS, STUDIES, SIZE = 12, 3, 32
FIRST = pd.Timestamp("2019-03-05")


def _study(p: int, s: int) -> dict[str, str]:
    date = FIRST + pd.Timedelta(days=37 * p + 28 * s)
    return {"PatientID": f"MRN-4711-{p:04d}", "PatientName": f"Doe^Jane{p:02d}",
            "AccessionNumber": f"ACC98{p:02d}{s}", "SOPInstanceUID": f"1.2.826.0.1.3680043.10.471.{p}.{s}",
            "StudyInstanceUID": f"1.2.826.0.1.3680043.10.472.{p}.{s}", "StudyDate": f"{date:%Y%m%d}"}


def phi_strings() -> set[str]:
    out = set()
    for p in range(N_PATIENTS):
        for s in range(STUDIES):
            tags = _study(p, s)
            date = pd.Timestamp(tags["StudyDate"])
            out |= {tags["PatientID"], tags["PatientName"], tags["PatientName"].replace("^", " "),
                    tags["AccessionNumber"], tags["SOPInstanceUID"], tags["StudyInstanceUID"],
                    tags["StudyDate"], f"{date:%Y-%m-%d}", f"{date:%Y/%m/%d}", f"{date:%d.%m.%Y}"}
    return out


def write_phi_tree(root: Path) -> Path:
    """Films that differ per patient (a patient-specific pattern plus noise), so pages have real neighbours."""
    from pydicom import dcmread

    rng = np.random.default_rng(0)
    for p in range(N_PATIENTS):
        base = np.random.default_rng(100 + p).integers(0, 4096, (SIZE, SIZE))
        for s in range(STUDIES):
            tags = _study(p, s)
            path = write_dicom(root / f"case{p:02d}" / f"{s}.dcm", tags["PatientID"], tags["StudyInstanceUID"],
                               tags["SOPInstanceUID"], date=tags["StudyDate"], size=SIZE)
            ds = dcmread(path)
            ds.PatientName, ds.AccessionNumber = tags["PatientName"], tags["AccessionNumber"]
            pixels = (base + rng.integers(0, 300, (SIZE, SIZE))).clip(0, 4095).astype(np.uint16)
            ds.PixelData = pixels.tobytes()
            ds.save_as(path)
    return root


def build(ws_root: Path, tree: Path, real_dates: bool = False) -> None:
    """prepare → untrained embedder → embed → evaluate, then search and status, all through the CLI."""
    extra = ["--real-dates"] if real_dates else []
    assert main(["prepare", "--dataset", "dicom", "--root", str(tree), "--workspace", str(ws_root),
                 "--size", str(SIZE), "--workers", "1", "--quiet", *extra]) == 0
    torch.manual_seed(0)
    save_embedder(ws_root / "embedder", Embedder(backbone="resnet10t", embedding_dim=16, image_size=SIZE))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["embed", "--workspace", str(ws_root)]) == 0
        assert main(["evaluate", "--workspace", str(ws_root), "--n-boot", "10", "--images", "all"]) == 0
    first = load_manifest(ws_root / "manifest.parquet")["image_id"].iloc[0]
    assert main(["search", "--workspace", str(ws_root), first, "-k", "5"]) == 0
    assert main(["status", "--workspace", str(ws_root)]) == 0


@pytest.fixture(scope="module")
def phi_workspace(tmp_path_factory) -> tuple[Workspace, str]:
    base = tmp_path_factory.mktemp("phi")
    tree = write_phi_tree(base / "dcm")
    out, err = io.StringIO(), io.StringIO()  # a module fixture cannot use capsys
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        build(base / "ws", tree)
    ws = Workspace(base / "ws")
    cfg = GanConfig.preset("tiny", c_dim=16)
    torch.manual_seed(0)
    save_generator(ws.gan_dir, build_generator(cfg), cfg, {"preset": "tiny"}, {"kimg": 0.0})
    return ws, out.getvalue() + err.getvalue()


def _elements(node):
    children = getattr(node, "children", None)
    if children is None:
        yield node
        return
    for child in children.values():
        yield from _elements(child)


def rendered_text(at: AppTest) -> str:
    """Everything a page rendered: each element's protobuf text, tables as CSV, figure specs as JSON."""
    parts = []
    for el in _elements(at._tree):
        proto = getattr(el, "proto", None)
        if el.type in ("dataframe", "table"):
            parts.append(el.value.to_csv())
        elif el.type == "plotly_chart":
            parts.append(el.proto.spec)
        if proto is not None:
            parts.append(str(proto))
    return "\n".join(parts)


def visit_every_page(ws: Workspace) -> dict[str, str]:
    return {page: rendered_text(at) for page, at in each_page(ws)}  # the tree holds the sidebar too


def assert_no_phi(texts: dict[str, str]) -> None:
    for value in sorted(phi_strings()):
        for where, text in texts.items():
            assert value not in text, (value, where)


def test_the_workspace_and_the_cli_output_hold_no_phi(phi_workspace):
    ws, printed = phi_workspace
    files = {p.name: (pd.read_parquet(p).astype(str).to_csv() if p.suffix == ".parquet"
                      else p.read_text(errors="replace"))
             for p in ws.root.rglob("*") if p.suffix in (".parquet", ".csv", ".json", ".jsonl")}
    assert "report.json" in files and "bad_files.csv" in files
    assert_no_phi({**files, "cli output": printed})
    assert "study_day" in printed and "calendar_date" not in printed  # search prints days


def test_every_page_shows_no_phi_and_no_calendar_dates(phi_workspace):
    ws, _ = phi_workspace
    seen = visit_every_page(ws)
    assert_no_phi(seen)
    for page, text in seen.items():
        assert "2000-0" not in text, page  # nor the moved calendar date (day 0 = 2000-01-01 in the manifest)
    assert "day 28" in seen["longitudinal"] + seen["retrieval"]  # the second study of a patient, in days
    shown = "\n".join(seen.values())  # the search does read what the pages show: the pseudonyms are there
    key = workspace_secret(ws.root)
    assert sum(pseudonym(key, "P", _study(p, 0)["PatientID"]) in shown for p in range(N_PATIENTS)) >= 3


def test_csv_exports_show_days_and_no_phi(phi_workspace):
    ws, _ = phi_workspace
    m = with_study_days(load_manifest(ws.manifest_path))
    ids = m["image_id"].tolist()
    exports = {"selection.csv": selection_csv(m, ids),
               "neighbours": neighbour_table(m, ids[:5], np.arange(5.0)).to_csv(index=False),
               "display (raw manifest)": display_frame(load_manifest(ws.manifest_path)).to_csv(index=False)}
    assert_no_phi(exports)
    for name, text in exports.items():
        header = text.splitlines()[0].split(",")
        assert "study_day" in header and "study_date" not in header and "calendar_date" not in header, name


def test_calendar_dates_appear_only_when_the_user_opted_in(phi_workspace, tmp_path, capsys):
    ws, _ = phi_workspace
    tree = write_phi_tree(tmp_path / "dcm")
    build(tmp_path / "real", tree, real_dates=True)
    printed = capsys.readouterr().out
    # the search sees dates when they are there (2019 or 2020: which films it lists depends on the random pseudonyms)
    assert "calendar_date" in printed and re.search(r"\b20(19|20)-\d\d-\d\d\b", printed)
    m = with_study_days(load_manifest(tmp_path / "real" / "manifest.parquet"), calendar=True)
    assert f"{FIRST:%Y-%m-%d}" in selection_csv(m, m["image_id"].tolist())
    shutil.rmtree(tmp_path / "real")


def test_cli_warns_about_a_verifier_whose_probability_rises_with_distance(phi_workspace, tmp_path, capsys):
    from reid_core.verify import PairVerifier

    ws, _ = phi_workspace
    root = Path(shutil.copytree(ws.root, tmp_path / "ws"))
    first = load_manifest(root / "manifest.parquet")["image_id"].iloc[0]
    PairVerifier(coef=-3.0, intercept=1.0).save(root / "verifier.json")
    assert main(["search", "--workspace", str(root), first, "-k", "3"]) == 0
    assert "not meaningful" not in capsys.readouterr().err
    PairVerifier(coef=2.0, intercept=-1.0).save(root / "verifier.json")  # AUC below 0.5 on its pairs
    assert main(["search", "--workspace", str(root), first, "-k", "3"]) == 0
    assert "does not fall with distance" in capsys.readouterr().err

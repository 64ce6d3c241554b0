"""The Streamlit app: every page on a tiny trained workspace and on one with only images, widgets, interactions;
and the Streamlit-free helpers of :mod:`reid_core.ui` (projection cache, figures, tables, uploads).

Pages are driven with ``AppTest.from_file("app.py")`` and ``switch_page``. Under AppTest a switched-to page
runs without the entrypoint's sidebar code, so each test puts the workspace in ``session_state`` itself
(which is what the sidebar does in the browser).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import reid_core  # noqa: F401  (before timm)
from reid_core.data.manifest import load_manifest
from reid_core.data.store import ImageStore
from reid_core.embed import EmbeddingTable
from reid_core.errors import ImageLoadError
from reid_core.query import QueryError
from reid_core.ui import figures, projection, tables, upload, workspaces
from reid_core.workspace import Workspace

from app_fixtures import (build_images_only_workspace, build_trained_workspace, free_port, render_over_websocket,
                          wait_for_health)

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = {
    "overview": "pages/1_overview.py",
    "explorer": "pages/2_explorer.py",
    "verification": "pages/3_verification.py",
    "retrieval": "pages/4_retrieval.py",
    "longitudinal": "pages/5_longitudinal.py",
    "report": "pages/6_report.py",
    "counterfactuals": "pages/7_counterfactuals.py",
}


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Workspace:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_trained_workspace(tmp_path_factory.mktemp("app") / "trained")


@pytest.fixture(scope="session")
def images_only(tmp_path_factory) -> Workspace:
    return build_images_only_workspace(tmp_path_factory.mktemp("app") / "images_only")


def open_page(ws: Workspace | Path | str, page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["workspace"] = str(ws.root if isinstance(ws, Workspace) else ws)
    at.run()
    if page != "overview":
        at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def each_page(ws: Workspace | Path | str) -> Iterator[tuple[str, AppTest]]:
    """Every page in turn, in one AppTest session on ``ws``; fails on any page's exception."""
    at = open_page(ws, "overview")
    for page, script in PAGES.items():
        if page != "overview":
            at.switch_page(script).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        yield page, at


def texts(at: AppTest, *kinds: str) -> str:
    kinds = kinds or ("warning", "info", "error", "code", "markdown", "caption", "success")
    return "\n".join(str(e.value) for kind in kinds for e in at.get(kind))


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]


def table_with(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first st.dataframe holding every one of ``columns`` (dataframes carry no key without on_select)."""
    for df in at.dataframe:
        if set(columns) <= set(df.value.columns):
            return df.value
    raise AssertionError(f"no dataframe with columns {columns}")


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def big_png(ws: Workspace, row: int) -> bytes:
    store = ImageStore(ws.images_path(ws.default_image_size()), load_manifest(ws.manifest_path))
    return png_bytes(np.kron(store[row], np.ones((2, 2), np.uint8)))  # 128 px: above the query minimum


# ============================================================================ the app on a trained workspace
def test_shell_has_workspace_picker_and_every_page(trained, images_only, monkeypatch):
    at = open_page(trained, "overview")
    assert at.sidebar.selectbox[0].label == "Workspace" and at.sidebar.selectbox[0].value == str(trained.root)
    assert at.title[0].value == "Overview"
    # a folder outside the workspaces root is refused unless the app was started with the explicit option
    at.sidebar.text_input(key="_workspace_custom").input(str(images_only.root)).run()
    assert at.session_state["workspace"] == str(trained.root)
    assert "CXR_REID_ANY_WORKSPACE=1" in "\n".join(e.value for e in at.sidebar.error)
    monkeypatch.setenv("CXR_REID_ANY_WORKSPACE", "1")
    at.sidebar.text_input(key="_workspace_custom").input(str(images_only.root) + "/").run()
    assert at.session_state["workspace"] == str(images_only.root.resolve())
    assert "cxr-reid train --workspace" in texts(at, "code")


def test_overview_summarises_dataset_models_and_metrics(trained):
    at = open_page(trained, "overview")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["patients"] == "24" and metrics["images"] == "96"
    assert {"P@1", "mAP@R", "verification AUC", "pixel baseline P@1"} <= set(metrics)
    titles = {(s.get("layout", {}).get("title") or {}).get("text") for s in plotly_specs(at)}
    assert {"images per patient", "findings", "views"} <= titles
    assert "resnet10t" in texts(at, "markdown")
    # the GAN is the only thing left, and it is optional: named with its command, not as "still to build"
    assert not any("Still to build" in h.value for h in at.subheader) and not at.get("code")
    assert "optional" in texts(at, "caption") and "cxr-reid train-gan --workspace" in texts(at, "caption")


def test_explorer_colour_timelines_3d_and_neighbours(trained):
    at = open_page(trained, "explorer")
    assert at.radio(key="explorer_method").value == "pca" and at.selectbox(key="explorer_colour").value == "patient"
    before = plotly_specs(at)[0]
    assert all(t["type"] == "scatter" for t in before["data"])  # 96 points: SVG (WebGL above SVG_MAX_POINTS)
    ids = {cd[0] for t in before["data"] for cd in t["customdata"]}
    assert len(ids) == 96  # every point carries its image id
    at.selectbox(key="explorer_colour").select("sex").run()
    after = plotly_specs(at)[0]
    assert after != before and sorted(t["name"] for t in after["data"]) == ["F", "M"]
    at.toggle(key="explorer_timelines").set_value(True).run()
    lines = plotly_specs(at)[0]["data"][0]
    assert lines["name"].startswith("patient timelines")
    # directed: each patient's first study ringed, later ones arrow heads pointing on from the previous study
    assert lines["marker"]["symbol"][:5] == ["circle-open", "arrow", "arrow", "arrow", "circle"]
    assert lines["marker"]["angleref"] == "previous"
    at.radio(key="explorer_dims").set_value(3).run()
    assert {t["type"] for t in plotly_specs(at)[0]["data"]} == {"scatter3d"}
    assert (trained.root / "projection_pca_3d.npz").exists()
    # a point to inspect: neighbours from the original embedding space
    at.selectbox(key="explorer_focus").select("p0_1").run()
    assert not at.exception
    table = table_with(at, "rank", "distance")
    assert len(table) == at.slider(key="explorer_k").value == 8 and "p0_1" not in set(table["image_id"])
    assert "true_patient" in table and "p_same" in table
    at.slider(key="explorer_k").set_value(3).run()
    assert len(table_with(at, "rank", "distance")) == 3


def trace_names(at: AppTest) -> list[str]:
    return [str(t.get("name")) for t in plotly_specs(at)[0]["data"]]


def test_explorer_selection_survives_recolouring_and_projection_and_clicks_open_neighbours(trained):
    # AppTest cannot draw a lasso or click a point: the page is given what its chart callback stores (the ids of
    # a selection; a click's id in the picker's key). The callback's reading of events is tested in
    # test_ui_explorer_state and, with real clicks, in test_browser_e2e.
    picked = ["p0_0", "p3_1", "p7_2"]
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["workspace"] = str(trained.root)
    at.session_state["_explorer_selection"] = picked
    at.run()
    at.switch_page(PAGES["explorer"]).run()
    assert not at.exception
    assert any("Selection: 3 images" in h.value for h in at.subheader)
    selection = table_with(at, "image_id", "split")
    assert selection["image_id"].tolist() == picked and "path" not in selection
    export = at.get("download_button")
    assert export and "Export the selected ids with their map coordinates" in str(export[0].proto)
    assert sum("p3_1" in str(i.proto) for i in at.get("image")) == 1
    assert "selection (3)" in trace_names(at)  # ringed on the map
    at.selectbox(key="explorer_colour").select("sex").run()  # a new figure: the selection is redrawn from the ids
    assert any("Selection: 3 images" in h.value for h in at.subheader) and "selection (3)" in trace_names(at)
    at.radio(key="explorer_method").set_value("umap").run()
    assert any("Selection: 3 images" in h.value for h in at.subheader) and "selection (3)" in trace_names(at)
    at.radio(key="explorer_method").set_value("pca").run()
    # a click stores its id in the picker's key: the neighbours open, the picker names the clicked image
    at.session_state["explorer_focus"] = "p2_0"
    at.run()
    assert at.selectbox(key="explorer_focus").value == "p2_0"
    table = table_with(at, "rank", "distance")
    assert len(table) == 8 and "p2_0" not in set(table["image_id"])
    names = trace_names(at)
    assert "inspected: p2_0" in names and "neighbours (8)" in names
    ring = next(t for t in plotly_specs(at)[0]["data"] if t.get("name") == "neighbours (8)")
    assert "customdata" not in ring and ring.get("hoverinfo") == "skip"  # clicks fall through to the real points
    at.selectbox(key="explorer_focus").select("p5_1").run()  # then the picker: the last action wins
    assert "inspected: p5_1" in trace_names(at) and "p5_1" not in set(table_with(at, "rank", "distance")["image_id"])
    at.button(key="explorer_clear").click().run()
    assert not any("Selection:" in h.value for h in at.subheader) and "selection (3)" not in trace_names(at)


def test_explorer_axes_patient_search_and_3d_caption(trained):
    at = open_page(trained, "explorer")
    layout = plotly_specs(at)[0]["layout"]
    x_title, y_title = layout["xaxis"]["title"]["text"], layout["yaxis"]["title"]["text"]
    assert x_title.startswith("PC1 (") and "% of variance" in x_title and y_title.startswith("PC2 (")
    share = [float(t.split("(")[1].split(" %")[0]) for t in (x_title, y_title)]
    assert 0 < share[1] <= share[0] <= 100  # the first axis explains the most
    listener = [e for e in at.get("bidi_component") if e.proto.component_name == "cxr_reid_map_events"]
    thumbs = json.loads(listener[0].proto.json)["thumbs"]  # the hover previews travel with the page
    assert len(thumbs) == 96 and all(u.startswith("data:image/jpeg;base64,") for u in thumbs.values())
    at.selectbox(key="explorer_patient").select("P003").run()
    mine = next(t for t in plotly_specs(at)[0]["data"] if str(t.get("name", "")).startswith("patient P003"))
    assert mine["text"][0] == "1 first" and mine["text"][1:] == ["2", "3", "4"]  # directed: numbered from the first
    assert mine["marker"]["symbol"][0] == "square" and set(mine["marker"]["symbol"][1:]) == {"arrow"}
    assert mine["marker"]["angleref"] == "previous"  # arrow heads point along the timeline, forward in time
    at.radio(key="explorer_method").set_value("umap").run()
    assert plotly_specs(at)[0]["layout"]["xaxis"]["title"]["text"] == "UMAP 1"
    at.radio(key="explorer_dims").set_value(3).run()
    cap = texts(at, "caption")
    assert "no box or lasso selection in 3-D" in cap and "Box or lasso (mode bar)" not in cap
    assert "choose an image above to inspect it" in cap and "Click a point" not in cap


def test_big_map_draws_a_sample_and_a_region_selects_undrawn_points(trained, monkeypatch):
    from reid_core.ui import selection

    monkeypatch.setattr(selection, "MAX_DRAWN_POINTS", 40)  # the 96-image workspace counts as a big map
    drawn = selection.drawn_rows(96, limit=40)
    undrawn = next(f"p{r // 4}_{r % 4}" for r in range(96) if r not in set(drawn))
    at = open_page(trained, "explorer")
    assert sum(len(t.get("customdata", [])) for t in plotly_specs(at)[0]["data"]) == 40  # x, y base64-encoded
    assert any("drawing a fixed random 40 of the 96 points" in c.value for c in at.caption)
    at.session_state["_explorer_selection"] = [undrawn, "p0_0"]  # what a lasso around them stores
    at.run()
    assert any("Selection: 2 images" in h.value for h in at.subheader)
    assert table_with(at, "image_id", "split")["image_id"].tolist() == [undrawn, "p0_0"]


def test_verification_threshold_changes_the_decision(trained):
    at = open_page(trained, "verification")
    assert at.selectbox(key="verify_a_id").value == "p0_0" and at.selectbox(key="verify_b_id").value == "p0_1"
    assert at.slider(key="verify_threshold").value == 0.5
    metrics = {m.label: m.value for m in at.metric}
    assert {"embedding distance", "same-patient probability", "threshold"} <= set(metrics)
    at.slider(key="verify_threshold").set_value(0.01).run()
    low = [m.value for m in at.markdown if "Decision" in m.value]
    at.slider(key="verify_threshold").set_value(0.99).run()
    high = [m.value for m in at.markdown if "Decision" in m.value]
    assert len(low) == len(high) == 1 and "SAME" in low[0] and "DIFFERENT" in high[0]
    assert "recorded: same patient" in texts(at, "caption")
    at.selectbox(key="verify_b_id").select("p5_2").run()
    assert "recorded: different patients" in texts(at, "caption")


def test_verification_roc_operating_point_follows_the_threshold(trained):
    roc = json.loads(trained.report_path.read_text())["verification"]["roc"]
    fpr, tpr = np.asarray(roc["fpr"]), np.asarray(roc["tpr"])
    assert 100 < len(fpr) <= 200 and (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(roc["thresholds"]) < 0)
    at = open_page(trained, "verification")

    def marked() -> tuple[float, float, str, str]:
        spec = next(s for s in plotly_specs(at) if "ROC" in str(s["layout"].get("title")))
        point = next(t for t in spec["data"] if str(t.get("name", "")).startswith("threshold"))
        metrics = {m.label: m.value for m in at.metric}
        return point["x"][0], point["y"][0], metrics["sensitivity"], metrics["specificity"]

    x, y, sens, spec = marked()
    k = roc["thresholds"].index(0.5)
    assert (x, y) == (roc["fpr"][k], roc["tpr"][k]) and sens == f"{roc['tpr'][k]:.3f}"
    assert spec == f"{1 - roc['fpr'][k]:.3f}"
    seen = {}
    for t in (0.01, 0.99):
        at.slider(key="verify_threshold").set_value(t).run()
        k = roc["thresholds"].index(t)
        seen[t] = marked()
        assert seen[t][:2] == (roc["fpr"][k], roc["tpr"][k])  # the marker is the stored point of this threshold
    assert seen[0.01][:2] != seen[0.99][:2]  # the operating point moves with the slider…
    assert seen[0.01][0] >= x >= seen[0.99][0] and seen[0.01][1] >= y >= seen[0.99][1]  # …along the curve
    assert float(seen[0.01][2]) >= float(sens) >= float(seen[0.99][2])


def test_verification_shows_saliency_maps(trained):
    at = open_page(trained, "verification")
    captions = [c for el in at.get("image") for c in el.captions]
    assert "A: |∂ distance / ∂ pixel|" in captions and "B: |∂ distance / ∂ pixel|" in captions
    assert "recomputed from these pixels" in texts(at, "caption")


def test_verification_uploads_good_and_bad_files(trained):
    at = open_page(trained, "verification")
    at.radio(key="verify_a_source").set_value("upload").run()
    at.file_uploader(key="verify_a_upload").set_value(("notes.png", b"this is not an image", "image/png")).run()
    assert not at.exception
    err = texts(at, "error")
    assert "Cannot use this upload" in err and "notes.png" in err and "cxr-reid-upload" not in err
    at.file_uploader(key="verify_a_upload").set_value(
        ("tiny.png", png_bytes(np.zeros((20, 20), np.uint8)), "image/png")).run()
    assert "at least 64 px" in texts(at, "error") and "tiny.png" in texts(at, "error")
    at.file_uploader(key="verify_a_upload").set_value(("a.png", big_png(trained, 0), "image/png")).run()
    assert not at.exception and not at.error
    assert any("Decision" in m.value for m in at.markdown)
    assert "uploaded image (pixels only)" in "\n".join(str(i.proto) for i in at.get("image"))


def test_retrieval_gallery_marks_the_true_patient(trained):
    at = open_page(trained, "retrieval")
    table = table_with(at, "rank", "distance")
    assert len(table) == at.slider(key="search_k").value == 10
    assert {"distance", "p_same", "patient_id", "study_day", "age", "sex", "findings", "true_patient"} <= set(table)
    assert "study_date" not in table and "calendar_date" not in table  # days, not calendar dates
    assert np.all(np.diff(table["distance"].to_numpy()) >= -1e-6)
    assert "of 3 other films of this patient found in the top 10" in texts(at, "markdown")  # 4 films each
    at.slider(key="search_k").set_value(4).run()
    assert len(table_with(at, "rank", "distance")) == 4
    at.radio(key="search_query_source").set_value("upload").run()
    at.file_uploader(key="search_query_upload").set_value(("q.png", big_png(trained, 5), "image/png")).run()
    assert not at.exception
    uploaded = table_with(at, "rank", "distance")
    assert len(uploaded) == 4 and "true_patient" not in uploaded


def test_longitudinal_patient_choice_changes_the_drift_table(trained):
    at = open_page(trained, "longitudinal")
    assert {m.label for m in at.metric} >= {"matched drift AUC", "follow-ups with a finding"}
    assert any("train_findings=normal" in i.value for i in at.info)  # trained on every film: the drift hint
    first = table_with(at, "baseline_id", "drift")
    patients = at.selectbox(key="longitudinal_patient").options
    assert len(patients) == 24 and len(first) == 3  # 4 studies: baseline + 3 follow-ups
    at.selectbox(key="longitudinal_patient").select(patients[1]).run()
    second = table_with(at, "baseline_id", "drift")
    assert not first.equals(second) and set(second["baseline_id"]) == {"p1_0"}
    drift_plot = [s for s in plotly_specs(at) if "drift of" in str(s["layout"].get("title"))]
    assert drift_plot and any(t.get("name") == "finding" for t in drift_plot[0]["data"])


def test_report_shows_curves_metrics_with_cis_and_baseline(trained):
    at = open_page(trained, "report")
    shown = table_with(at, "value [95% CI]")
    row = shown[shown["metric"] == "P@1"].iloc[0]
    assert "[" in row["value [95% CI]"] and row["pixel baseline"] != "—"
    assert {"ROC AUC", "mAP@R", "matched drift AUC"} <= set(shown["metric"])
    titles = [str(s["layout"].get("title")) for s in plotly_specs(at)]
    assert any("database-size" in t for t in titles) and any("reliability" in t for t in titles)
    assert len(plotly_specs(at)) == 3  # + training curves; no DET: 6 test patients fill no gallery of 100
    assert "pixel 32x32" in texts(at, "markdown")


def test_counterfactuals_without_a_gan_names_the_command(trained):
    at = open_page(trained, "counterfactuals")
    assert f"cxr-reid train-gan --workspace {trained.root}" in texts(at, "code")


def test_streamlit_run_serves_every_page_with_the_sidebar(trained, tmp_path):
    """A real ``streamlit run app.py`` (entrypoint + page, which AppTest does not run together), driven
    over its websocket like a browser would: every page renders with the sidebar and without an exception."""
    pytest.importorskip("websockets")
    base = tmp_path / "workspaces"
    base.mkdir()
    (base / "demo").symlink_to(trained.root, target_is_directory=True)
    port = free_port()
    env = {**os.environ, "CXR_REID_WORKSPACES": str(base)}
    cmd = [sys.executable, "-m", "streamlit", "run", APP, "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_health(port)
        for url_path, heading in (("explore", "Embedding explorer"), ("", "Overview"), ("verify", "Pair verification"),
                                  ("search", "Retrieval gallery"), ("drift", "Longitudinal drift"),
                                  ("model", "Model report"), ("counterfactual", "Counterfactuals")):
            seen = render_over_websocket(port, url_path)
            assert not seen["exceptions"], (url_path, seen["exceptions"])
            assert seen["headings"][:1] == [heading], (url_path, seen["headings"])
            assert seen["sidebar"][:2] == ["selectbox", "text_input"], (url_path, seen["sidebar"])
            if url_path in ("explore", "drift", "model"):
                assert seen["plotly"], url_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ============================================================================ missing artefacts
MISSING = {  # page → commands its notice must show for a workspace with only images
    "overview": ("cxr-reid train", "cxr-reid embed", "cxr-reid evaluate"),
    "explorer": ("cxr-reid train", "cxr-reid embed"),
    "verification": ("cxr-reid train", "cxr-reid embed", "cxr-reid evaluate"),
    "retrieval": ("cxr-reid train", "cxr-reid embed"),
    "longitudinal": ("cxr-reid embed",),
    "report": ("cxr-reid evaluate", "cxr-reid train"),
    "counterfactuals": ("cxr-reid train-gan",),
}


@pytest.mark.parametrize("page", list(PAGES))
def test_page_without_models_says_what_to_run(images_only, page):
    at = open_page(images_only, page)
    shown = texts(at)
    for command in MISSING[page]:
        assert f"{command} --workspace {images_only.root}" in shown, (page, command)


@pytest.mark.parametrize("page", ["overview", "explorer", "report"])
def test_page_on_a_folder_that_is_no_workspace(tmp_path, page):
    at = open_page(tmp_path / "nowhere", page)
    assert "does not exist" in texts(at, "error") and "cxr-reid demo" in texts(at, "error")


# ============================================================================ reid_core.ui helpers
def test_pca_projection_shapes_signs_and_padding():
    x = np.random.default_rng(0).normal(size=(40, 6))
    a = projection.project(x, "pca", 2)
    assert a.shape == (40, 2) and a.dtype == np.float32
    assert np.allclose(projection.project(x + 3.0, "pca", 2), a, atol=1e-4)  # centred, signs fixed
    for axis in range(2):  # each axis points along its largest loading
        loading = np.array([np.corrcoef(x[:, j], a[:, axis])[0, 1] * x[:, j].std() for j in range(6)])
        assert loading[np.abs(loading).argmax()] > 0
    assert np.var(a[:, 0]) >= np.var(a[:, 1])
    one_d = projection.project(x[:, :1], "pca", 3)
    assert one_d.shape == (40, 3) and np.all(one_d[:, 1:] == 0)
    assert projection.project(np.zeros((0, 4)), "umap", 2).shape == (0, 2)
    with pytest.raises(ValueError, match="unknown projection"):
        projection.project(x, "tsne", 2)
    with pytest.raises(ValueError, match="dims"):
        projection.project(x, "pca", 4)
    with pytest.raises(ValueError, match="NaN"):
        projection.project(np.full((3, 2), np.nan), "pca", 2)


def test_umap_projection_is_seeded():
    x = np.random.default_rng(1).normal(size=(30, 8)).astype(np.float32)
    a = projection.project(x, "umap", 2, seed=3)
    assert a.shape == (30, 2) and np.isfinite(a).all()
    assert np.allclose(a, projection.project(x, "umap", 2, seed=3))


def test_projection_cache_is_keyed_by_embeddings_mtime(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    with pytest.raises(Exception, match="cxr-reid embed"):
        projection.workspace_projection(ws)
    rng = np.random.default_rng(0)
    EmbeddingTable(rng.normal(size=(12, 4)), [f"i{k}" for k in range(12)]).save(ws.embeddings_path)
    first = projection.workspace_projection(ws, "pca", 2)
    assert not first.from_cache and projection.projection_path(ws, "pca", 2).exists()
    calls = []
    monkeypatch.setattr(projection, "project", lambda *a, **k: calls.append(1) or np.zeros((12, 2), np.float32))
    again = projection.workspace_projection(ws, "pca", 2)
    assert again.from_cache and not calls and np.array_equal(again.coords, first.coords)
    assert list(again.image_ids) == [f"i{k}" for k in range(12)]
    assert not projection.workspace_projection(ws, "pca", 2, seed=1).from_cache  # other seed: recomputed
    # re-embedding (a newer mtime) invalidates the cache
    EmbeddingTable(rng.normal(size=(12, 4)), [f"i{k}" for k in range(12)]).save(ws.embeddings_path)
    st = ws.embeddings_path.stat()
    os.utime(ws.embeddings_path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    calls.clear()
    assert not projection.workspace_projection(ws, "pca", 2).from_cache and calls
    projection.projection_path(ws, "pca", 3).write_bytes(b"garbage")  # broken cache file: recomputed
    assert not projection.workspace_projection(ws, "pca", 3).from_cache


def test_upload_validation_and_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with pytest.raises(upload.UploadError, match="unsupported file type .txt"):
        upload.validate_upload("notes.txt", 10)
    with pytest.raises(upload.UploadError, match="no extension"):
        upload.validate_upload("README", 10)
    with pytest.raises(upload.UploadError, match="empty"):
        upload.validate_upload("a.png", 0)
    with pytest.raises(upload.UploadError, match="limit is 1 MB"):
        upload.validate_upload("a.dcm", 2 * 2**20, max_mb=1)
    assert upload.validate_upload("A.JPEG", 10) == ".jpeg"
    with pytest.raises(ImageLoadError) as err:
        upload.load_uploaded_image("scan.png", b"not a png at all", 64)
    assert err.value.path == "scan.png" and "cxr-reid-upload" not in str(err.value)
    with pytest.raises(QueryError, match="at least 64 px") as err:
        upload.load_uploaded_image("small.png", png_bytes(np.zeros((30, 30), np.uint8)), 64)
    assert "small.png" in str(err.value) and "cxr-reid-upload" not in str(err.value)
    ramp = np.tile(np.arange(128, dtype=np.uint8), (100, 1))
    image = upload.load_uploaded_image("ok.png", png_bytes(ramp), 64)
    assert image.shape == (64, 64) and image.dtype == np.uint8
    assert not list(tmp_path.glob("cxr-reid-upload-*"))  # temp files are always removed
    # the pages render messages as Markdown: a name cannot bring links, formatting or HTML with it
    hostile = "[click](http://evil.example)**x**<b>y</b>`z`.png"
    with pytest.raises(ImageLoadError) as err:
        upload.load_uploaded_image(hostile, b"not a png at all", 64)
    assert err.value.path == "_click_http_evil.example_x_b_y_b_z_.png"  # no [ ] ( ) * < > ` : / left
    with pytest.raises(upload.UploadError) as err:
        upload.validate_upload("[a](http://b).txt", 10)
    assert "[" not in str(err.value) and "](" not in str(err.value)


def test_selected_ids_map_through_customdata_not_point_indices():
    event = {"selection": {"points": [
        {"curve_number": 1, "point_index": 0, "customdata": ["b"]},
        {"curve_number": 0, "point_index": 0, "customdata": ["a"]},
        {"curve_number": 2, "point_index": 4},  # a timeline line: no id
        {"curve_number": 1, "point_index": 0, "customdata": ["b"]},
        {"curve_number": 3, "point_index": 1, "customdata": "c"},
    ], "point_indices": [0, 0, 4, 0, 1], "box": [], "lasso": []}}
    assert figures.selected_ids(event) == ["b", "a", "c"]
    assert figures.selected_ids(None) == [] and figures.selected_ids({"selection": {"points": []}}) == []


def _frame(n_patients: int, per: int = 2) -> tuple[np.ndarray, pd.DataFrame]:
    rows = [{"image_id": f"p{p}_{k}", "patient_id": f"P{p}", "study_order": k, "sex": "MF"[p % 2],
             "age": np.nan if p == 0 else 40.0 + p, "findings": ["No Finding", "Effusion", "Effusion|Mass"][p % 3],
             "view": "PA", "split": "train", "dataset": "x"} for p in range(n_patients) for k in range(per)]
    frame = pd.DataFrame(rows)
    return np.random.default_rng(0).normal(size=(len(frame), 2)), frame


def test_embedding_scatter_traces_carry_their_ids():
    coords, frame = _frame(4)
    fig = figures.embedding_scatter(coords, frame, "finding")
    assert sorted(t.name for t in fig.data) == ["Effusion", "No Finding", "several findings"]
    for trace in fig.data:
        for cd, x in zip(trace.customdata, trace.x):
            assert coords[frame.index[frame["image_id"] == cd[0]][0], 0] == pytest.approx(x)
    many = figures.embedding_scatter(*_frame(30), "patient")
    assert len(many.data) == 1 and many.data[0].showlegend is False and len(many.data[0].customdata) == 60
    # 30 patients on one stepped scale: the k-th patient (sorted) gets integer code k % palette size, drawn in
    # palette colour k % size
    m, k = many.data[0].marker, len(figures.PALETTE)
    codes = np.asarray(m.color)
    patients = sorted(_frame(30)[1]["patient_id"].unique())
    assert codes.dtype.kind == "i" and codes.tolist()[::2] == [patients.index(f"P{p}") % k for p in range(30)]
    scale = [c for _, c in m.colorscale]
    step = lambda v: int((v - m.cmin) / (m.cmax - m.cmin) * k)  # noqa: E731  which step of the scale v falls in
    assert all(scale[2 * step(v)] == figures.PALETTE[v] for v in range(k))
    assert m.size == figures.MARKER_SIZE_2D
    dense_coords, dense_frame = _frame(figures.DENSE_POINTS // 2 + 1)
    dense = figures.embedding_scatter(dense_coords, dense_frame, "sex", connect_patients=True)
    assert dense.data[1].marker.size == figures.MARKER_SIZE_2D_DENSE
    assert {t.type for t in dense.data} == {"scattergl"} and len(dense_frame) > figures.SVG_MAX_POINTS
    age = figures.embedding_scatter(coords, frame, "age")
    assert age.data[0].marker.showscale and age.data[1].name == "age unknown" and len(age.data[1].x) == 2
    sample = figures.embedding_scatter(coords, frame, "sex", draw_rows=np.arange(3))  # 3 drawn, axes span all
    x_range, y_range = sample.layout.xaxis.range, sample.layout.yaxis.range
    assert x_range[0] < coords[:, 0].min() and x_range[1] > coords[:, 0].max() and y_range[0] < coords[:, 1].min()
    lines = figures.embedding_scatter(np.c_[coords, coords[:, :1]], frame, "sex", connect_patients=True)
    assert lines.data[0].type == "scatter3d" and lines.data[0].mode == "lines"
    assert sum(v is None for v in lines.data[0].x) == 4  # one break after each patient
    with pytest.raises(ValueError, match="colour"):
        figures.embedding_scatter(coords, frame, "shoe size")


def test_tables_summary_metrics_and_logs(tmp_path):
    _, frame = _frame(3)
    frame["study_date"] = pd.Timestamp("2020-01-01")
    s = tables.dataset_summary(frame)
    assert (s.n_images, s.n_patients) == (6, 3) and s.studies_per_patient.to_dict() == {2: 3}
    assert s.findings.to_dict() == {"Effusion": 4, "No Finding": 2, "Mass": 2}
    assert tables.finding_label("Effusion") == "Effusion" and tables.finding_label("A|B") == "several findings"
    report = {"retrieval": {"precision_at_1": 0.8, "precision_at_1_ci_low": 0.7, "precision_at_1_ci_high": 0.9},
              "verification": {"roc_auc": 0.9, "threshold": None},
              "baseline": {"retrieval": {"precision_at_1": 0.3}}, "longitudinal": {"auc": 0.6}}
    t = tables.metrics_table(report).set_index("metric")
    assert t.loc["P@1", "ci_low"] == 0.7 and t.loc["P@1", "pixel baseline"] == 0.3
    assert np.isnan(t.loc["distance threshold", "value"]) and t.loc["matched drift AUC", "value"] == 0.6
    assert tables.format_ci(0.8, 0.7, 0.9) == "0.800 [0.700, 0.900]" and tables.format_ci(np.nan, 0, 1) == "—"
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"event": "train", "step": 2, "loss": 1.0}\n{"event": "val", "step": 2, "map_at_r": 0.1}\n{"ev')
    train, val = tables.read_train_log(log)
    assert len(train) == 1 and len(val) == 1
    nb = tables.neighbour_table(frame, ["p1_0", None, "p0_1"], np.array([0.1, np.inf, 0.3]), query_patient="P0")
    assert nb["image_id"].tolist() == ["p1_0", "p0_1"] and nb["true_patient"].tolist() == [False, True]
    csv = tables.selection_csv(frame, ["p2_1"])
    assert csv.splitlines()[0].startswith("image_id,patient_id") and "p2_1" in csv and "path" not in csv


def test_workspace_helpers(trained, images_only, tmp_path):
    names = [a.name for a in workspaces.missing_artefacts(images_only, ("embeddings",))]
    assert names == ["embedder", "embeddings"]  # prerequisites first, in pipeline order
    assert workspaces.missing_artefacts(trained, ("manifest", "embeddings", "index")) == []
    with pytest.raises(KeyError):
        workspaces.missing_artefacts(trained, ("projection",))
    base = tmp_path / "workspaces"
    assert workspaces.default_workspace(base) == base / "demo"
    (base / "b").mkdir(parents=True)
    (base / "b" / "workspace.json").write_text("{}")
    (base / "not_a_workspace").mkdir()
    assert workspaces.list_workspaces(base) == [base / "b"] and workspaces.default_workspace(base) == base / "b"
    before = workspaces.file_key(trained.embeddings_path)
    assert before[1] > 0 and workspaces.file_key(tmp_path / "missing")[1] == -1
    frame = workspaces.status_frame(images_only).set_index("artefact")
    assert frame.loc["embeddings", "build with"].startswith("cxr-reid embed")
    assert workspaces.embedder_summary(trained).backbone == "resnet10t"
    assert workspaces.embedder_summary(images_only) is None

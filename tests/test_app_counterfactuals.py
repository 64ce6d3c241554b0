"""The counterfactual page (AppTest) and its Streamlit-free library :mod:`gan.views`.

The workspace is a small phantom (8 patients at 32 px), embedded by an untrained 8-d resnet10t and given an
untrained ``tiny`` generator saved through the writer ``cxr-reid train-gan`` uses: no training, so the
module builds in a few seconds; an untrained generator still maps a moved condition to a different image.
"""
from __future__ import annotations

import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import reid_core  # noqa: F401  (before timm)
from gan.config import GanConfig, build_generator
from gan.snapshot import save_generator
from reid_core.checkpoint import save_embedder
from reid_core.embed import EmbeddingTable, embed_workspace
from reid_core.model import Embedder
from reid_core.prepare import prepare_workspace
from gan import views as cf
from reid_core.workspace import Workspace

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGE = "pages/7_counterfactuals.py"
C_DIM = 8


def _save_tiny_generator(ws: Workspace, c_dim: int) -> None:
    cfg = GanConfig.preset("tiny", c_dim=c_dim)
    torch.manual_seed(0)
    G = build_generator(cfg)
    with torch.no_grad():
        for m in G.modules():  # random-init noise strengths are 0; make the noise visible
            if hasattr(m, "strength"):
                m.strength.fill_(0.2)
    save_generator(ws.gan_dir, G, cfg, {"preset": "tiny"}, {"kimg": 0.0})


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory) -> dict[str, Workspace]:
    """``gan``: phantom + embedder + embeddings + generator; ``no_gan``: the same without the generator;
    ``wrong_dim``: a generator conditioned on 4-d embeddings next to 8-d ones."""
    base = tmp_path_factory.mktemp("cf")
    ws = Workspace(base / "gan")
    prepare_workspace(ws, "phantom", size=32, workers=1, progress=False, patients=8, seed=0)
    torch.manual_seed(0)
    save_embedder(ws.embedder_dir, Embedder(backbone="resnet10t", embedding_dim=C_DIM, image_size=32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embed_workspace(ws, progress=False)
    no_gan = Workspace(shutil.copytree(ws.root, base / "no_gan"))
    _save_tiny_generator(ws, C_DIM)
    wrong = Workspace(shutil.copytree(no_gan.root, base / "wrong_dim"))
    _save_tiny_generator(wrong, 4)
    return {"gan": ws, "no_gan": no_gan, "wrong_dim": wrong}


def open_page(ws: Workspace) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["workspace"] = str(ws.root)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def images(at: AppTest) -> dict[str, str]:
    """Caption → media URL of every st.image. The URL is a hash of the encoded image bytes (Streamlit's media
    file id), so two URLs are equal exactly when the rendered pixel arrays are."""
    return {caption: url for el in at.get("image") for caption, url in zip(el.captions, el.value)}


def counterfactual_url(at: AppTest) -> str:
    return images(at)["counterfactual"]


def texts(at: AppTest, *kinds: str) -> str:
    kinds = kinds or ("warning", "info", "error", "code", "markdown", "caption", "success")
    return "\n".join(str(e.value) for kind in kinds for e in at.get(kind))


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


# ============================================================================ the page
def test_page_renders_images_sliders_latency_and_the_pc_table(workspaces):
    at = open_page(workspaces["gan"])
    keys = [s.key for s in at.slider]
    assert [k for k in keys if k.startswith("cf_pc")] == [f"cf_pc{k}" for k in range(6)]
    pc1 = at.slider(key="cf_pc0")
    assert (pc1.min, pc1.max, pc1.step, pc1.value) == (-3.0, 3.0, 0.1, 0.0) and pc1.label.startswith("PC1 ·")
    assert at.slider(key="cf_psi").value == 0.7 and at.number_input(key="cf_seed").value == 0
    shown = images(at)
    assert {"base (all α = 0)", "counterfactual"} <= set(shown) and any(c.startswith("|Δ| overlay") for c in shown)
    assert shown["base (all α = 0)"] == shown["counterfactual"]  # every α is 0: the same pixels
    assert "rendered in" in texts(at, "caption") and "ms" in texts(at, "caption")
    meaning = at.dataframe[0].value
    assert meaning["PC"].tolist()[:2] == ["PC1", "PC2"] and "factor 1" in meaning
    assert "R² " in meaning["factor 1"].iloc[0]
    assert "recomputed from the standard phantom generator" in texts(at, "caption")
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"Download PNG", "Download GIF"} <= labels
    assert not any(c.startswith("rows PC1") for c in images(at))  # the PCs × α grid waits for its toggle
    at.toggle(key="cf_grid").set_value(True).run()
    assert any(c.startswith("rows PC1…PC6") for c in images(at))
    assert "Download the grid (PNG)" in {b.proto.label for b in at.get("download_button")}


def test_moving_a_pc_slider_changes_the_counterfactual_and_reset_restores_it(workspaces):
    at = open_page(workspaces["gan"])
    before = images(at)
    at.slider(key="cf_pc0").set_value(2.5).run()
    assert not at.exception
    after = images(at)
    assert after["counterfactual"] != before["counterfactual"]
    assert after["base (all α = 0)"] == before["base (all α = 0)"]  # the base does not move with the slider
    overlay = next(c for c in after if c.startswith("|Δ| overlay"))
    assert float(overlay.split("max ")[1].rstrip(")")) > 0
    at.slider(key="cf_pc1").set_value(-1.0).run()
    assert counterfactual_url(at) not in (before["counterfactual"], after["counterfactual"])
    at.button(key="cf_reset").click().run()
    assert at.slider(key="cf_pc0").value == 0.0 and counterfactual_url(at) == before["counterfactual"]


def test_seed_and_truncation_change_the_base(workspaces):
    at = open_page(workspaces["gan"])
    base = images(at)["base (all α = 0)"]
    at.number_input(key="cf_seed").set_value(3).run()
    seeded = images(at)["base (all α = 0)"]
    assert seeded != base
    at.slider(key="cf_psi").set_value(0.0).run()
    assert images(at)["base (all α = 0)"] != seeded


def test_upload_is_inverted_and_moved(workspaces):
    at = open_page(workspaces["gan"])
    at.radio(key="cf_source").set_value("upload").run()
    at.slider(key="cf_invert_steps").set_value(10).run()
    at.file_uploader(key="cf_upload").set_value(("bad.png", b"not an image", "image/png")).run()
    assert not at.exception and "Cannot use this upload" in texts(at, "error")
    rng = np.random.default_rng(0)
    at.file_uploader(key="cf_upload").set_value(
        ("scan.png", png(rng.integers(0, 255, (96, 96), dtype=np.uint8)), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "inverted in 10 steps" in texts(at, "caption")
    assert at.number_input(key="cf_seed").disabled and at.slider(key="cf_psi").disabled
    before = counterfactual_url(at)
    at.slider(key="cf_pc0").set_value(-3.0).run()
    assert counterfactual_url(at) != before


def test_without_a_generator_the_page_names_the_command(workspaces):
    ws = workspaces["no_gan"]
    at = open_page(ws)
    assert f"cxr-reid train-gan --workspace {ws.root}" in texts(at, "code", "warning")
    assert not at.get("image") and not at.slider


def test_a_generator_for_other_embeddings_is_refused_with_the_command(workspaces):
    ws = workspaces["wrong_dim"]
    at = open_page(ws)
    err = texts(at, "error")
    assert "4-d embeddings" in err and f"cxr-reid train-gan --workspace {ws.root}" in err


# ============================================================================ gan.views
def test_library_view_grid_gif_and_factors(workspaces):
    ws = workspaces["gan"]
    G, pca = cf.open_generator_and_pca(ws)
    table = EmbeddingTable.load(ws.embeddings_path)
    renderer = cf.make_renderer(G, pca, seed=1, psi=0.7)
    subject = cf.Subject(c0=table.embeddings[0])
    still = cf.render_view(renderer, subject, cf.active_alphas([0.0, 0.0]))
    assert still.max_diff == 0.0 and np.array_equal(still.image, still.base) and still.render_ms >= 0
    moved = cf.render_view(renderer, subject, cf.active_alphas([0.0, 2.0]))
    assert moved.max_diff > 0 and moved.overlay.shape == (16, 16, 3) and moved.overlay.dtype == np.uint8
    np.testing.assert_array_equal(moved.image, renderer.render(table.embeddings[0], {1: 2.0}))
    grid = cf.alpha_grid(renderer, subject, [0, 2], alphas=(-1.0, 0.0, 1.0))
    assert grid.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(grid[0, 1], still.base)  # the α = 0 column is the base image
    with Image.open(io.BytesIO(cf.sweep_gif(renderer, subject, 0, n_frames=5))) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5
    with Image.open(io.BytesIO(cf.png_bytes(moved.image))) as im:
        assert im.size == (16, 16)
    factors = cf.workspace_factors(ws, pd.read_parquet(ws.manifest_path))
    assert factors.table is not None and set(table.image_ids) <= set(factors.table["image_id"])
    summary, r2 = cf.pc_meaning(pca, table.embeddings, table.image_ids, factors.table, n_pcs=3)
    assert list(r2.columns) == ["PC1", "PC2", "PC3"] and len(summary) == 3
    assert ((r2.fillna(0) >= 0) & (r2.fillna(0) <= 1)).all().all()


def test_factors_only_for_phantom_workspaces(tmp_path):
    ws = Workspace(tmp_path / "real")
    ws.create(dataset="nih", root=str(tmp_path / "nih"))
    manifest = pd.DataFrame({"image_id": ["a"], "patient_id": ["1"]})
    assert cf.workspace_factors(ws, manifest).table is None
    assert "not a phantom dataset" in cf.workspace_factors(ws, manifest).note
    (tmp_path / "nih").mkdir()
    pd.DataFrame({"image_id": ["a"], "heart_width": [1.0]}).to_parquet(tmp_path / "nih" / cf.FACTORS_FILE)
    found = cf.workspace_factors(ws, manifest)  # a dataset written by `cxr-reid phantom` keeps its ground truth
    assert found.table is not None and str(tmp_path / "nih") in found.note


def test_an_unconditional_generator_is_refused(workspaces, tmp_path):
    from reid_core.errors import WorkspaceError

    ws = Workspace(shutil.copytree(workspaces["no_gan"].root, tmp_path / "uncond"))
    _save_tiny_generator(ws, 0)
    with pytest.raises(WorkspaceError, match="unconditional"):
        cf.open_generator_and_pca(ws)


def test_image_and_pc_offsets_round_trip_through_the_url(workspaces):
    """The page's state (image id, α of every moved PC) is in the URL; opening that URL renders the same image."""
    at = open_page(workspaces["gan"])
    ids = at.selectbox(key="cf_image").options
    at.selectbox(key="cf_image").select(ids[3]).run()
    at.slider(key="cf_pc1").set_value(1.5).run()
    shared = {k: (v[0] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}
    assert shared["id"] == ids[3] and shared["pc2"] == "1.5" and "pc1" not in shared  # untouched PCs stay out
    again = AppTest.from_file(APP, default_timeout=60)
    again.session_state["workspace"] = str(workspaces["gan"].root)
    for name, value in shared.items():
        again.query_params[name] = value
    again.run()
    again.switch_page(PAGE).run()
    assert not again.exception
    assert again.selectbox(key="cf_image").value == ids[3] and again.slider(key="cf_pc1").value == 1.5
    assert counterfactual_url(again) == counterfactual_url(at)  # the same pixels
    bad = AppTest.from_file(APP, default_timeout=60)
    bad.session_state["workspace"] = str(workspaces["gan"].root)
    bad.query_params["pc2"] = "40"  # beyond ±3 σ: ignored
    bad.run()
    bad.switch_page(PAGE).run()
    assert not bad.exception and bad.slider(key="cf_pc1").value == 0.0

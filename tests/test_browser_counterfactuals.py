"""The shipped generator in real headless Chromium, on a demo workspace built from ``checkpoints/``.

``cxr-reid demo``'s builder makes a small demo workspace (unseen phantom patients, the shipped embedder and
generator); the counterfactual page opens on a film, a PC slider changes the rendered image, and the image the
page shows for an identity swap is fetched from the server and re-identified by the workspace's embedder: of the
two patients involved, its nearest film must be one of the patient whose identity it was rendered with (a
single-image check; the generator's figures over 100 patients are in its model card).
Skips (saying why) without a browser or without a shipped generator.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import (
    browser_unavailable,
    chromium_page,
    exceptions,
    image_sources,
    open_app,
    serve_app,
    switch_page,
    wait_idle,
)
from PIL import Image

import reid_core  # noqa: F401  (before timm)
from reid_core.demo import build_demo_workspace, shipped

ARTIFACTS = Path(os.environ.get("CXR_REID_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    reason = browser_unavailable()
    if reason:
        if os.environ.get("CXR_REID_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"CXR_REID_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    if shipped("gan") is None or shipped("embedder") is None:
        pytest.skip("no shipped embedder + generator in checkpoints/ (train them with scripts/train_demo.sh)")
    base = tmp_path_factory.mktemp("browser_cf") / "workspaces"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_demo_workspace(base / "demo", patients=40, progress=False, n_boot=20, echo=lambda _: None)
    return base


def _caption_image(page, caption: str) -> str:
    """``src`` of the st.image whose caption is ``caption``."""
    box = page.locator('[data-testid="stMain"] [data-testid="stImage"]').filter(has_text=caption).first
    return box.locator("img").get_attribute("src") or ""


def test_shipped_generator_moves_with_the_slider_and_swaps_are_reidentified(demo):
    import torch

    from reid_core.checkpoint import load_embedder
    from reid_core.data.manifest import load_manifest
    from reid_core.embed import EmbeddingTable
    from reid_core.workspace import Workspace

    out = ARTIFACTS / "browser_counterfactuals"
    out.mkdir(parents=True, exist_ok=True)
    with serve_app(demo, out / "server.log") as server, chromium_page() as page:
        open_app(page, server)
        switch_page(page, "counterfactual", "Counterfactuals")
        assert not exceptions(page), server.log_tail()
        page.locator('[data-testid="stImage"]').filter(has_text="with the other identity").first.wait_for()
        swap_src = _caption_image(page, "with the other identity")
        response = page.request.get(server.url().rstrip("/") + swap_src if swap_src.startswith("/") else swap_src)
        assert response.ok, swap_src
        swapped = np.asarray(Image.open(io.BytesIO(response.body())).convert("L"), np.float32) / 255.0
        page.screenshot(path=str(out / "swap.png"))
        # the slider → a new counterfactual
        before = image_sources(page)
        thumb = page.locator('[data-testid="stSlider"]').filter(has_text="PC1").first.locator('input[type="range"]')
        thumb.focus()
        thumb.press("End")
        page.wait_for_function(
            "(b) => Array.from(document.querySelectorAll('[data-testid=\"stMain\"] [data-testid=\"stImage\"] img'))"
            ".map(i => i.getAttribute('src')).join('|') !== b", arg="|".join(before), timeout=90_000)
        wait_idle(page, 90)
        assert not exceptions(page), server.log_tail()
        assert image_sources(page) != before
        page.screenshot(path=str(out / "slider.png"))
    # re-identify the swap the page showed: its nearest workspace film is of the patient it was rendered as
    ws = Workspace(demo / "demo")
    m = load_manifest(ws.manifest_path)
    first_patient = m.iloc[0]["patient_id"]
    target = m[m["patient_id"] != first_patient].iloc[0]  # the page's default swap identity
    emb = load_embedder(ws.embedder_dir)
    x = torch.from_numpy(swapped)[None, None]
    x = torch.nn.functional.interpolate(x, size=emb.config.image_size, mode="bilinear", antialias=True)
    q = emb.embed(x)[0].numpy()
    table = EmbeddingTable.load(ws.embeddings_path)
    owner = m.set_index("image_id")["patient_id"]
    both = [i for i in table.image_ids if owner[i] in (first_patient, target["patient_id"])]
    nearest = both[int(np.argmax(table.embeddings[table.rows_for(both)] @ q))]
    # between the film's own patient and the identity it was rendered with, the embedder sees the latter
    assert owner[nearest] == target["patient_id"], (nearest, target["image_id"])

"""The app end to end in real headless Chromium: ``streamlit run app.py`` on a free loopback port, every page
through the sidebar, a lasso in the explorer → the selection gallery, a counterfactual slider → a new image,
a corrupt upload → a clear message while the page keeps working.

The workspace is the tiny trained one of :mod:`app_fixtures` plus a 2-step GAN. Screenshots of every step go
to ``test-artifacts/browser_e2e/`` (or ``$CXR_REID_TEST_ARTIFACTS``); the path is printed at the end.
Without Playwright or a Chromium executable the tests skip and say why; with ``CXR_REID_REQUIRE_BROWSER=1``
(CI) they fail instead.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import build_trained_workspace
from browser_helpers import (
    PAGES,
    ROOT,
    browser_unavailable,
    choose,
    chromium_page,
    click_point,
    exceptions,
    heading,
    image_sources,
    inspect_point,
    lasso_all,
    open_app,
    serve_app,
    shown_in,
    switch_page,
    wait_idle,
)
from PIL import Image

import reid_core  # noqa: F401  (before timm)
from reid_core.cli import main as cli
from reid_core.data.manifest import load_manifest
from reid_core.data.store import ImageStore
from reid_core.workspace import Workspace

ARTIFACTS = Path(os.environ.get("CXR_REID_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "browser_e2e"
GAN_ARGS = ("--res", "32", "--preset", "tiny", "--batch", "4", "--kimg", "0.008", "--device", "cpu", "--quiet")


@pytest.fixture(scope="module")
def artifacts(request) -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    yield ARTIFACTS
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    shots = sorted(p.name for p in ARTIFACTS.glob("*.png"))
    if reporter is not None and capture is not None and shots:
        with capture.global_and_fixture_disabled():  # past pytest's output capture, onto the terminal
            reporter.write_line(f"\nbrowser e2e: {len(shots)} screenshots + server.log in {ARTIFACTS}")


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory) -> Path:
    """``<tmp>/workspaces/demo``: the trained tiny workspace (embedder, embeddings, index, verifier, report)
    and a 2-step 32 px GAN, so every page has something to show."""
    reason = browser_unavailable()
    if reason:
        if os.environ.get("CXR_REID_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"CXR_REID_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("browser") / "workspaces"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ws = build_trained_workspace(base / "demo")
        assert cli(["train-gan", "--workspace", str(ws.root), *GAN_ARGS]) == 0
    return base


@pytest.fixture(scope="module")
def server(workspaces, artifacts):
    with serve_app(workspaces, artifacts / "server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def page(server, artifacts):
    with chromium_page() as pg:
        open_app(pg, server)
        yield pg
        pg.screenshot(path=str(artifacts / "zz_last.png"))


def shot(page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"))


def no_exception(page, server, where: str) -> None:
    shown = exceptions(page)
    assert not shown, f"{where}: {shown}\n--- server log ---\n{server.log_tail()}"


def png_of_workspace_image(workspaces: Path, row: int) -> bytes:
    ws = Workspace(workspaces / "demo")
    store = ImageStore(ws.images_path(ws.default_image_size()), load_manifest(ws.manifest_path))
    buf = io.BytesIO()
    Image.fromarray(np.kron(store[row], np.ones((2, 2), np.uint8))).save(buf, format="PNG")  # 128 px
    return buf.getvalue()


# ============================================================================ the tests (one browser, in order)
def test_every_page_renders_with_the_sidebar(page, server, workspaces, artifacts):
    ws_root = str(workspaces / "demo")
    for k, (url_path, title, head) in enumerate(PAGES):
        switch_page(page, url_path, head)
        no_exception(page, server, title)
        assert page.locator('[data-testid="stSidebarNavLink"]').count() == len(PAGES)
        assert ws_root in page.locator('[data-testid="stSidebar"]').inner_text(), title
        assert page.title() == f"{title} · cxr-reid"  # one browser-tab title per page
        assert page.get_by_role("button", name="Deploy").count() == 0  # .streamlit/config.toml: toolbarMode
        if url_path in ("explore", "drift", "model"):
            page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for()
        shot(page, artifacts, f"{k + 1}_{url_path or 'overview'}")


def test_lasso_in_the_explorer_shows_the_selection_gallery(page, server, artifacts):
    switch_page(page, "explore", "Embedding explorer")
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.locator(".main-svg").first.wait_for()
    assert page.get_by_text("No selection yet").count() == 1
    lasso_all(page, chart)
    selection = page.locator("h3").filter(has_text="Selection:")
    selection.wait_for()
    wait_idle(page)
    no_exception(page, server, "explorer after a lasso")
    assert "Selection: 96 images" in selection.inner_text()  # the whole map: every image of the workspace
    export = page.get_by_text("Export the selected ids with their map coordinates (CSV)")
    export.wait_for()  # rendered just after the heading; waiting avoids a race on a busy machine
    assert export.count() == 1
    gallery = page.locator('[data-testid="stImage"]')
    assert gallery.count() >= 30  # thumbnails of the selection (at most 36 shown)
    selection.scroll_into_view_if_needed()
    shot(page, artifacts, "explorer_selection")


def test_click_inspects_a_point_and_recolouring_keeps_the_selection(page, server, artifacts):
    """In the map's default mode a click opens the point's neighbours, marked on the map, and the picker names
    it; the lasso selection of the previous test survives a new colouring."""
    switch_page(page, "explore", "Embedding explorer")
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.locator(".main-svg").first.wait_for()
    t0 = time.perf_counter()
    click_point(page, chart)
    inspected = chart.locator(".legendtext").filter(has_text="inspected:")
    inspected.wait_for()
    wait_idle(page)
    seconds = time.perf_counter() - t0
    no_exception(page, server, "explorer after a click")
    focus = inspected.text_content().split("inspected: ")[1].strip()
    assert chart.locator(".legendtext").filter(has_text="neighbours (8)").count() == 1
    assert f"query: {focus}" in page.locator('[data-testid="stMain"]').inner_text()  # the neighbour gallery
    assert focus in shown_in(page, "Image to inspect")
    assert f"id={focus}" in page.url
    shot(page, artifacts, "explorer_click")
    (artifacts / "timings.txt").open("a").write(f"explorer click -> neighbours shown: {seconds:.2f} s\n")
    lasso_all(page, chart)
    page.locator("h3").filter(has_text="Selection: 96 images").wait_for()
    wait_idle(page)
    choose(page, "Colour by", "sex")
    page.locator(".legendtext").filter(has_text="selection (96)").first.wait_for()
    wait_idle(page)
    no_exception(page, server, "explorer after recolouring")
    assert page.locator("h3").filter(has_text="Selection: 96 images").count() == 1
    assert sorted(chart.locator(".legendtext").all_text_contents())[:2] == ["F", "M"]
    assert "colour=sex" in page.url


def test_hover_previews_a_film_and_a_click_in_lasso_mode_inspects_it(page, server, artifacts):
    switch_page(page, "explore", "Embedding explorer")
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.locator(".main-svg").first.wait_for()
    preview = page.locator('[data-testid="cxrHoverPreview"]')
    preview.wait_for(state="attached")
    timings = []
    for n in (3, 30, 60):
        chart.scroll_into_view_if_needed()
        point = chart.locator(".scatterlayer .trace .points path").nth(n)
        box = point.bounding_box()
        page.mouse.move(box["x"] - 40, box["y"] - 40)  # off the point first
        t0 = time.perf_counter()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function("() => { const t = document.querySelector('.cxr-hover-preview');"
                               " return t && t.style.display === 'block' && t.querySelector('img').complete; }")
        timings.append(time.perf_counter() - t0)
        state = page.evaluate("() => { const t = document.querySelector('.cxr-hover-preview');"
                              " return [t.getAttribute('data-image-id'), t.innerText, t.querySelector('img').src]; }")
        assert re.fullmatch(r"p\d+_\d", state[0]) and state[0] in state[1]  # the film's id under its preview
        assert state[2].startswith("data:image/jpeg;base64,")
    shot(page, artifacts, "explorer_hover")
    (artifacts / "timings.txt").open("a").write(
        "hover -> film preview shown: " + ", ".join(f"{t * 1000:.0f} ms" for t in timings) + "\n")
    # the preview is in the page already (no server round trip); the first hover also decodes the image, and
    # each timing includes Playwright's own round trips, so the goal (≤ 300 ms) is checked on the median
    assert sorted(timings)[1] <= 0.3 and max(timings) <= 1.0, timings
    # a click in lasso mode, where Streamlit reports no selection, still inspects the point
    chart.hover()
    chart.locator('.modebar-btn[data-title="Lasso Select"]').click()
    focus = inspect_point(page, 40)
    no_exception(page, server, "explorer after a click in lasso mode")
    assert page.locator(".legendtext").filter(has_text="neighbours (8)").count() == 1
    assert focus in shown_in(page, "Image to inspect")


def test_a_shared_url_reloads_to_the_same_view(page, server, artifacts):
    switch_page(page, "explore", "Embedding explorer")
    choose(page, "Colour by", "view")
    focus = inspect_point(page, 20)
    shared = page.url
    assert "ws=demo" in shared and "colour=view" in shared and f"id={focus}" in shared
    page.goto(shared)  # a fresh session, as a colleague opening the link
    heading(page, "Embedding explorer")
    page.locator(".legendtext").filter(has_text=f"inspected: {focus}").wait_for()
    wait_idle(page)
    no_exception(page, server, "explorer reloaded from its URL")
    assert "view" in shown_in(page, "Colour by")
    assert focus in shown_in(page, "Image to inspect")
    shot(page, artifacts, "explorer_reloaded")


def test_a_thumbnail_opens_as_the_retrieval_query_in_one_click(page, server, artifacts):
    switch_page(page, "explore", "Embedding explorer")
    inspect_point(page, 5)
    caption_of_first = page.locator('[data-testid="stImageCaption"]').filter(has_text="#1 d=").first.inner_text()
    target = caption_of_first.split(" · ")[1]  # "#1 d=0.004 · p0_3 · P000 · …": the first neighbour's id
    page.get_by_role("button", name="Open…").nth(1).click()  # [0] is the query's own thumbnail
    t0 = time.perf_counter()
    page.get_by_role("link", name="as retrieval query").first.click()
    heading(page, "Retrieval gallery")
    seconds = time.perf_counter() - t0
    no_exception(page, server, "retrieval opened from a thumbnail")
    assert target in shown_in(page, "Query: image id")
    assert f"q={target}" in page.url and page.title() == "Retrieval gallery · cxr-reid"
    shot(page, artifacts, "retrieval_from_thumbnail")
    (artifacts / "timings.txt").open("a").write(f"thumbnail link -> retrieval page shown: {seconds:.2f} s\n")


def test_a_table_row_opens_as_verification_image_in_one_click(page, server, artifacts):
    """Retrieval results: ticking a row offers the links; one click opens that film as verification image A."""
    switch_page(page, "search", "Retrieval gallery")
    table = page.locator('[data-testid="stDataFrame"]').first
    table.wait_for()
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 17)  # the first row's selection box (header ≈ 35 px)
    offer = page.locator('[data-testid="stMarkdownContainer"]').filter(has_text=re.compile(r"^Open p\d+_\d+:$"))
    offer.wait_for()
    wait_idle(page)
    chosen = offer.inner_text().strip()[len("Open "):-1]  # the first result's image id
    page.get_by_role("link", name="as verification A").last.click()
    heading(page, "Pair verification")
    no_exception(page, server, "verification opened from a table row")
    assert chosen in shown_in(page, "Image A: image id") and f"a={chosen}" in page.url
    shot(page, artifacts, "verification_from_row")


def test_counterfactual_slider_changes_the_image(page, server, artifacts):
    switch_page(page, "counterfactual", "Counterfactuals")
    no_exception(page, server, "counterfactuals")
    sliders = page.locator('[data-testid="stSlider"]')
    if sliders.count() == 0:
        shot(page, artifacts, "counterfactual_no_sliders")
    assert sliders.count(), "the counterfactual page shows no sliders although the workspace has a GAN"
    pc = sliders.filter(has_text="PC")
    slider = pc.first if pc.count() else sliders.first
    thumb = slider.locator('input[type="range"]')  # react-aria's (visually hidden) range input
    before_value, before_images = thumb.input_value(), image_sources(page)
    assert before_images, "the counterfactual page shows no image"
    thumb.focus()
    thumb.press("End")  # the slider's maximum (e.g. +3 σ)
    page.wait_for_function(
        "(before) => Array.from(document.querySelectorAll('[data-testid=\"stMain\"] [data-testid=\"stImage\"] img'))"
        ".map(i => i.getAttribute('src')).join('|') !== before", arg="|".join(before_images), timeout=90_000)
    wait_idle(page, 90)
    no_exception(page, server, "counterfactuals after moving a slider")
    assert thumb.input_value() != before_value
    assert image_sources(page) != before_images
    shot(page, artifacts, "counterfactual_slider")


def test_corrupt_upload_gives_a_message_and_the_page_keeps_working(page, server, workspaces, artifacts):
    switch_page(page, "search", "Retrieval gallery")
    page.locator('[data-testid="stRadio"]').filter(has_text="Query from").get_by_text("upload", exact=True).click()
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    uploader.wait_for(state="attached")
    wait_idle(page)
    uploader.set_input_files(files=[{"name": "broken.png", "mimeType": "image/png",
                                     "buffer": b"\x89PNG\r\n\x1a\n this is not really an image"}])
    error = page.locator('[data-testid="stAlert"]').filter(has_text="Cannot use this upload")
    error.wait_for()
    wait_idle(page)
    no_exception(page, server, "retrieval after a corrupt upload")
    assert "broken.png" in error.inner_text()
    shot(page, artifacts, "upload_corrupt")
    # the same uploader then takes a good image: the message goes, the gallery comes
    uploader.set_input_files(files=[{"name": "good.png", "mimeType": "image/png",
                                     "buffer": png_of_workspace_image(workspaces, 5)}])
    page.get_by_text("uploaded query: its patient is unknown").wait_for()
    wait_idle(page)
    no_exception(page, server, "retrieval after a good upload")
    assert error.count() == 0
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1
    shot(page, artifacts, "upload_good")


def test_verification_reads_a_hard_pair_decision_and_its_explanation(page, server, workspaces, artifacts):
    """A film and its nearest other-patient film (the pair a search ranks first among the wrong ones): the
    page states its decision, the recorded truth, and which probability it shows."""
    from reid_core.embed import EmbeddingTable
    from reid_core.hard_pairs import nearest_other_patient

    ws = Workspace(workspaces / "demo")
    m = load_manifest(ws.manifest_path)
    table = EmbeddingTable.load(ws.embeddings_path)
    i, j = nearest_other_patient(table.embeddings[table.rows_for(m["image_id"])], m["patient_id"])
    a, b = m["image_id"].iloc[i[0]], m["image_id"].iloc[j[0]]
    switch_page(page, "verify", "Pair verification")
    for label, value in (("Image A: image id", a), ("Image B: image id", b)):
        page.locator('[data-testid="stSelectbox"]').filter(has_text=label).click()
        page.keyboard.type(value)
        page.keyboard.press("Enter")
        wait_idle(page)
    page.get_by_text("recorded: different patients").wait_for()
    no_exception(page, server, "verification of a hard pair")
    decision = page.locator("h4").filter(has_text="Decision").inner_text()
    verdict = page.get_by_text("recorded: different patients").inner_text()
    assert ("DIFFERENT" in decision) == ("the decision agrees" in verdict)
    assert page.get_by_text("p_same is the share of same-patient pairs at this distance among search results").count()
    shot(page, artifacts, "verification_hard_pair")

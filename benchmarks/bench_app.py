"""Benchmark: the Streamlit app in headless Chromium, and the embedding explorer at 100k points.

Run ``python -m benchmarks --only app [--quick]`` (or this file). Parts:

* **explorer library** (no browser): on ``n`` synthetic image embeddings (64-d, 4 studies per patient) the
  work behind one explorer render: PCA projection, the WebGL figure (:func:`reid_core.ui.figures.embedding_scatter`)
  coloured by patient (one trace) and by sex (a trace per category), and its JSON (what ``st.plotly_chart``
  sends: ``plotly.io.to_json``) with the payload size; UMAP (computed once per workspace and cached) on a subset.
* **cold start**: ``streamlit run app.py`` process start → the Overview page rendered (its script run finished)
  in Chromium, on the tiny trained workspace of the tests plus a 2-step GAN (goal ≤ 10 s), three times (a fresh
  server and browser profile each); ``server_listening_s`` is the server answering its health check, the rest is
  the first script run (imports, workspace tables).
* **page switch**: sidebar click → the page's title shown and its run finished, for every page: the first
  visit (per-page caches cold: models, index, projection) and the median of later visits (goal ≤ 1 s).
* **explorer in Chromium at 100k points**: a workspace of 100k synthetic embeddings; switch to the explorer
  (first visit computes and caches the PCA), again (cached), a colour change, and a lasso around every point
  (100k ids back through the selection event → the selection table and gallery), timed as the drag (mouse
  down → up) and the release → gallery.
* **explorer clicks and links** (tiny workspace): a click on the map → its neighbours shown, a thumbnail's "as
  retrieval query" link → the retrieval page shown, a shared explorer URL → the same view rendered.
* **counterfactual slider**: a PC slider moved by the keyboard, key press → the new image shown and the run
  finished, with a 128 px preset generator (the page's "rendered in N ms" captions beside it).

Without Playwright or a Chromium executable the browser parts are skipped with a note. ``--quick``: 2k points,
the library part only (a smoke run of a few seconds; the browser code runs in tests/test_browser_e2e.py).
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import reid_core  # noqa: F401  (before timm)
from reid_core.data.manifest import finalize_manifest, save_manifest
from reid_core.embed import EmbeddingTable
from reid_core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:  # the browser driver and the trained tiny workspace live with the tests
    sys.path.insert(0, str(ROOT / "tests"))

DIM = 64
PER_PATIENT = 4


# ---------------------------------------------------------------------------- synthetic explorer data
def synthetic_frame(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """(canonical manifest of ``n`` images, 4 per patient, with sex/age/view/findings; their L2-normed embeddings).

    Each patient is a random centre and its studies scatter around it, so projections have structure.
    """
    rng = np.random.default_rng(seed)
    n_pat = -(-n // PER_PATIENT)
    patient = np.repeat(np.arange(n_pat), PER_PATIENT)[:n]
    order = np.tile(np.arange(PER_PATIENT), n_pat)[:n]
    centres = rng.normal(size=(n_pat, DIM)).astype(np.float32)
    emb = centres[patient] + 0.35 * rng.normal(size=(n, DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    findings = np.array(["No Finding", "Effusion", "Cardiomegaly", "Effusion|Nodule"])
    frame = pd.DataFrame({
        "image_id": [f"s{p}_{o}" for p, o in zip(patient, order)], "path": [f"s{p}/{o}.png" for p, o in
                                                                         zip(patient, order)],
        "patient_id": [f"S{p:06d}" for p in patient], "study_order": order,
        "sex": np.where(patient % 2 == 0, "M", "F"), "age": 30.0 + patient % 50 + order,
        "view": np.where(order % 3 == 2, "AP", "PA"), "findings": findings[rng.integers(0, 4, n) * (order > 0)],
    })
    return finalize_manifest(frame, dataset="synthetic"), emb


def synthetic_workspace(root: Path, n: int) -> Workspace:
    """A workspace with a manifest and ``embeddings.npz`` only (no images, no models): enough for the explorer."""
    frame, emb = synthetic_frame(n)
    ws = Workspace(root)
    ws.create(dataset="synthetic")
    save_manifest(frame, ws.manifest_path)
    EmbeddingTable(emb, frame["image_id"].tolist()).save(ws.embeddings_path)
    return ws


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def explorer_library(n: int, umap_n: int | None) -> dict[str, object]:
    """Seconds and bytes of the explorer's Python side at ``n`` points (UMAP on ``umap_n`` of them)."""
    import plotly.io

    from reid_core.ui.figures import embedding_scatter
    from reid_core.ui.projection import project

    frame, emb = synthetic_frame(n)
    coords, pca_s = _timed(project, emb, "pca", 2)
    out: dict[str, object] = {"points": n, "pca_2d_s": round(pca_s, 3)}
    for colour in ("patient", "sex"):
        fig, build_s = _timed(embedding_scatter, coords, frame, colour)
        spec, json_s = _timed(plotly.io.to_json, fig, validate=False)
        out[f"figure_{colour}_s"] = round(build_s, 3)
        out[f"to_json_{colour}_s"] = round(json_s, 3)
        out[f"payload_{colour}_mb"] = round(len(spec.encode()) / 2**20, 2)
        out[f"traces_{colour}"] = len(fig.data)
    if umap_n:
        _, umap_s = _timed(project, emb[:umap_n], "umap", 2, seed=0)
        out[f"umap_2d_{umap_n // 1000}k_s"] = round(umap_s, 1)
    return out


# ---------------------------------------------------------------------------- in Chromium
def cold_start_and_switches(workspaces: Path, log_dir: Path, cold_starts: int, revisits: int) -> dict[str, object]:
    """``cold_starts`` cold starts (a fresh server and browser profile each: process start → Overview rendered);
    after the last, every page's first switch time and the median of ``revisits`` later ones."""
    from browser_helpers import (
        PAGES,
        AppServer,
        chromium_page,
        exceptions,
        open_app,
        switch_page,
    )

    colds, healths = [], []
    first: dict[str, float] = {}
    later: dict[str, list[float]] = {title: [] for _, title, _ in PAGES}
    for k in range(cold_starts):
        with chromium_page() as page:  # the browser is up before the clock starts: only the app is timed
            server = AppServer(workspaces, log_dir / f"server_cold{k}.log").start()
            try:
                server.wait_healthy()
                healths.append(time.perf_counter() - server.started)
                open_app(page, server)
                colds.append(time.perf_counter() - server.started)
                if k < cold_starts - 1:
                    continue
                for visit in range(1 + revisits):
                    for url_path, title, head in PAGES[1:] + PAGES[:1]:
                        s = switch_page(page, url_path, head)
                        if exceptions(page):
                            raise RuntimeError(f"{title}: {exceptions(page)}")
                        if visit == 0:
                            first[title] = round(s, 2)
                        else:
                            later[title].append(s)
            finally:
                server.stop()
    warm = {t: round(statistics.median(v), 2) for t, v in later.items() if v}
    return {"cold_start_s": [round(c, 2) for c in colds], "server_listening_s": [round(h, 2) for h in healths],
            "switch_first_visit_s": first, "switch_warm_median_s": warm,
            "switch_warm_max_s": round(max(warm.values()), 2) if warm else None}


def explorer_clicks_and_links(workspaces: Path, log_dir: Path, clicks: int = 5) -> dict[str, object]:
    """On the tiny workspace: a click on the map → its neighbours shown (``clicks`` points); a thumbnail's
    "as retrieval query" link → the retrieval page shown; a shared explorer URL → the same view rendered."""
    from browser_helpers import chromium_page, heading, inspect_point, open_app, serve_app, switch_page, wait_idle

    out: dict[str, object] = {}
    with serve_app(workspaces, log_dir / "server_clicks.log") as server, chromium_page() as page:
        open_app(page, server)
        switch_page(page, "explore", "Embedding explorer")
        seconds = []
        for k in range(clicks):
            t0 = time.perf_counter()
            inspect_point(page, 5 + 7 * k)
            seconds.append(time.perf_counter() - t0)
        out["click_to_neighbours_s"] = [round(x, 2) for x in seconds]
        links = []
        for k in range(3):
            switch_page(page, "explore", "Embedding explorer")
            inspect_point(page, 3 + k)  # the neighbour gallery, whose thumbnails carry the links
            page.get_by_role("button", name="Open…").nth(1).click()
            t0 = time.perf_counter()
            page.get_by_role("link", name="as retrieval query").first.click()
            heading(page, "Retrieval gallery")
            links.append(time.perf_counter() - t0)
        out["thumbnail_link_to_retrieval_s"] = [round(x, 2) for x in links]
        switch_page(page, "explore", "Embedding explorer")
        focus = inspect_point(page, 12)
        shared = page.url
        t0 = time.perf_counter()
        page.goto(shared)
        page.locator(".legendtext").filter(has_text=f"inspected: {focus}").wait_for()
        wait_idle(page)
        out["shared_url_to_same_view_s"] = round(time.perf_counter() - t0, 2)
    return out


def explorer_in_chromium(workspaces: Path, log_dir: Path) -> dict[str, object]:
    """The explorer on the (single, big) workspace under ``workspaces``: render, colour change, lasso."""
    from browser_helpers import (
        chromium_page,
        exceptions,
        lasso_all,
        open_app,
        serve_app,
        switch_page,
        wait_idle,
    )

    out: dict[str, object] = {}
    with serve_app(workspaces, log_dir / "server_100k.log") as server, chromium_page() as page:
        open_app(page, server)
        chart = page.locator('[data-testid="stPlotlyChart"]').first

        def to_explorer() -> float:
            t0 = time.perf_counter()
            switch_page(page, "explore", "Embedding explorer", timeout_s=600)
            chart.locator(".main-svg").first.wait_for(timeout=600_000)
            chart.locator("canvas").first.wait_for(state="attached")
            return time.perf_counter() - t0

        out["explorer_first_visit_s"] = round(to_explorer(), 2)  # PCA computed and cached in the workspace
        switch_page(page, "", "Overview")
        out["explorer_cached_visit_s"] = round(to_explorer(), 2)
        t0 = time.perf_counter()
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Colour by").click()
        page.get_by_role("option", name="sex", exact=True).click()
        chart.locator(".legendtext").filter(has_text="F").first.wait_for(timeout=600_000)
        wait_idle(page, 600)
        out["colour_change_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        lasso_all(page, chart)  # 40 mouse moves; plotly re-selects and redraws the WebGL markers while dragging
        t_up = time.perf_counter()
        page.locator("h3").filter(has_text="Selection:").wait_for(timeout=600_000)
        wait_idle(page, 600)
        out["lasso_all_to_gallery_s"] = round(time.perf_counter() - t0, 2)
        out["lasso_drag_s"] = round(t_up - t0, 2)  # mouse down → mouse up: the browser's own work
        out["lasso_release_to_gallery_s"] = round(time.perf_counter() - t_up, 2)  # event → script run → gallery
        out["lasso_selected"] = page.locator("h3").filter(has_text="Selection:").inner_text()
        if exceptions(page):
            raise RuntimeError(f"explorer: {exceptions(page)}")
    return out


_IMAGES_CHANGED = ("(before) => Array.from(document.querySelectorAll("
                   "'[data-testid=\"stMain\"] [data-testid=\"stImage\"] img'))"
                   ".map(i => i.getAttribute('src')).join('|') !== before")


def counterfactual_slider_in_chromium(workspaces: Path, log_dir: Path, moves: int = 6) -> dict[str, object]:
    """PC slider → new counterfactual image on the page (``moves`` arrow-key steps of 0.1 σ, after one warm-up).

    The workspace's generator is the 128 px preset (one training step: weights do not change the cost).
    Reports the browser-side median (key press → new image shown and the run finished) and the page's own
    "rendered in N ms" captions (the generator alone).
    """
    import re

    from browser_helpers import chromium_page, exceptions, image_sources, open_app, serve_app, switch_page, wait_idle

    times, renders = [], []
    with serve_app(workspaces, log_dir / "server_slider.log") as server, chromium_page() as page:
        open_app(page, server)
        switch_page(page, "counterfactual", "Counterfactuals", timeout_s=300)
        thumb = page.locator('[data-testid="stSlider"]').filter(has_text="PC").first.locator('input[type="range"]')
        for _ in range(moves + 1):
            before = "|".join(image_sources(page))
            thumb.focus()
            t0 = time.perf_counter()
            thumb.press("ArrowRight")
            page.wait_for_function(_IMAGES_CHANGED, arg=before, timeout=120_000)
            wait_idle(page, 120)
            times.append(time.perf_counter() - t0)
            found = re.search(r"rendered in (\d+) ms", page.locator('[data-testid="stMain"]').inner_text())
            renders.append(int(found.group(1)) if found else None)
        if exceptions(page):
            raise RuntimeError(f"counterfactuals: {exceptions(page)}")
    return {"generator": "128 px preset", "moves": moves, "first_move_s": round(times[0], 2),
            "slider_to_image_median_s": round(statistics.median(times[1:]), 2),
            "slider_to_image_s": [round(t, 2) for t in times[1:]], "page_render_ms": renders[1:]}


def run(quick: bool = False) -> dict[str, object]:
    """Explorer library timings (``quick``: 2k points, nothing else); full: 100k points and the browser parts."""
    out: dict[str, object] = {"explorer_library": explorer_library(2_000 if quick else 100_000,
                                                                   None if quick else 10_000)}
    if quick:
        out["browser"] = "skipped in --quick (the browser path runs in tests/test_browser_e2e.py)"
        return out
    from browser_helpers import browser_unavailable

    reason = browser_unavailable()
    if reason:
        out["browser"] = f"skipped: {reason}"
        return out
    from app_fixtures import build_trained_workspace

    from reid_core.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        tmp = Path(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ws = build_trained_workspace(tmp / "small" / "demo")
            cli(["train-gan", "--workspace", str(ws.root), "--res", "32", "--preset", "tiny", "--batch", "4",
                 "--kimg", "0.008", "--device", "cpu", "--quiet"])
        out["app_tiny_workspace"] = cold_start_and_switches(tmp / "small", tmp, cold_starts=3, revisits=2)
        out["explorer_clicks_and_links"] = explorer_clicks_and_links(tmp / "small", tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ws128 = build_trained_workspace(tmp / "gan128" / "demo", size=128)
            cli(["train-gan", "--workspace", str(ws128.root), "--res", "128", "--preset", "128", "--batch", "2",
                 "--kimg", "0.002", "--device", "cpu", "--quiet"])
        out["counterfactual_slider_chromium"] = counterfactual_slider_in_chromium(tmp / "gan128", tmp)
        synthetic_workspace(tmp / "big" / "demo", 100_000)
        out["explorer_100k_chromium"] = explorer_in_chromium(tmp / "big", tmp)
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))

"""Screenshots of every app page for the README, in headless Chromium (the browser test's set-up).

    python scripts/take_screenshots.py --workspaces WORKSPACES_DIR [--out docs/screenshots] [--width 1200]

``WORKSPACES_DIR/demo`` (the sidebar's default) is shown. Each page is captured in a 1200 px wide
viewport, the explorer once more with a lasso selection, the counterfactual page after moving PC1; the
PNGs are reduced to a 256-colour palette (UI screenshots lose nothing visible) to keep the README light.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser_helpers import (  # after the path insert
    PAGES,
    chromium_page,
    exceptions,
    lasso_all,
    open_app,
    serve_app,
    switch_page,
    wait_idle,
    wait_images_loaded,
)

NAMES = {"": "overview", "explore": "explorer", "verify": "verification", "search": "retrieval",
         "drift": "longitudinal", "model": "report", "counterfactual": "counterfactuals"}


def save_small(page, path: Path, clip: dict | None = None) -> int:
    """Screenshot → 256-colour optimised PNG; returns its size in bytes."""
    wait_images_loaded(page)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")  # no focus ring
    raw = path.with_suffix(".raw.png")
    page.screenshot(path=str(raw), clip=clip)
    with Image.open(raw) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True)
    raw.unlink()
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspaces", type=Path, required=True, help="folder holding the workspace 'demo'")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--query", default="P00001_s00", help="retrieval page: the query image id ('' keeps the default)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            serve_app(args.workspaces, Path(tmp) / "server.log") as server, \
            chromium_page(viewport={"width": args.width, "height": args.height}) as page:
        open_app(page, server)
        for k, (url_path, _, head) in enumerate(PAGES):
            switch_page(page, url_path, head, timeout_s=300)
            if url_path in ("explore", "drift", "model", ""):
                page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=120_000)
            if url_path == "search" and args.query:  # a query whose patient has follow-ups
                box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Query: image id")
                box.click()
                page.keyboard.type(args.query)
                page.get_by_role("option", name=args.query, exact=True).click()
                page.get_by_text(f"query: {args.query}").wait_for(timeout=120_000)
                wait_idle(page, 120)
            if url_path == "counterfactual" and page.locator('[data-testid="stSlider"]').count():
                pc1 = page.locator('[data-testid="stSlider"]').filter(has_text="PC1").locator('input[type="range"]')
                pc1.focus()
                for _ in range(20):  # +2 σ
                    pc1.press("ArrowRight")
                wait_idle(page, 120)
                page.wait_for_timeout(1500)
                wait_idle(page, 120)
            page.mouse.move(5, args.height - 5)  # no hover label in the picture
            if exceptions(page):
                raise RuntimeError(f"{head}: {exceptions(page)}")
            name = f"{k + 1}_{NAMES[url_path]}.png"
            sizes[name] = save_small(page, args.out / name)
        # the explorer again, with a lasso around everything → the selection gallery
        switch_page(page, "explore", "Embedding explorer")
        chart = page.locator('[data-testid="stPlotlyChart"]').first
        lasso_all(page, chart)
        selection = page.locator("h3").filter(has_text="Selection:")
        selection.wait_for(timeout=120_000)
        wait_idle(page, 120)
        page.wait_for_timeout(1000)  # thumbnails load
        selection.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.mouse.move(5, args.height - 5)
        sizes["2b_explorer_selection.png"] = save_small(page, args.out / "2b_explorer_selection.png")
    for name, size in sizes.items():
        print(f"{args.out / name}  {size / 1024:.0f} KiB")
    print(f"total {sum(sizes.values()) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

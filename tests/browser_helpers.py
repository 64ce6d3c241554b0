"""A real ``streamlit run app.py`` driven by real headless Chromium (no pytest import).

Shared by ``tests/test_browser_e2e.py``, ``benchmarks/bench_app.py`` and
``scripts/take_screenshots.py``. The browser is the distribution's Chromium
(Debian ``chromium``; ``scripts/setup_env.sh`` installs it when run as root),
driven by Playwright through ``executable_path``: Playwright never downloads a
browser here. ``$CXR_REID_CHROMIUM`` names another executable.

Waiting is on Streamlit's own state, not on sleeps: the ``stApp`` element
carries ``data-test-script-state`` (``running`` / ``notRunning``) and
``data-test-connection-state``.
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app_fixtures import free_port, wait_for_health

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Flags that work in a container without a display, a GPU or a network beyond loopback.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage")
VIEWPORT = {"width": 1280, "height": 900}

# (url_path, sidebar title, page heading) of every page, in the sidebar's order (see app.py).
PAGES = (("", "Overview", "Overview"), ("explore", "Embedding explorer", "Embedding explorer"),
         ("verify", "Pair verification", "Pair verification"), ("search", "Retrieval gallery", "Retrieval gallery"),
         ("drift", "Longitudinal", "Longitudinal drift"), ("model", "Model report", "Model report"),
         ("counterfactual", "Counterfactuals", "Counterfactuals"))

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"][data-test-connection-state="CONNECTED"]'


def find_chromium() -> str | None:
    """``$CXR_REID_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH, else None."""
    named = os.environ.get("CXR_REID_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_unavailable() -> str | None:
    """None when the browser tests can run, else the reason they cannot (for a skip message)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[dev]'"
    if find_chromium() is None:
        return ("no Chromium executable (Debian: apt-get install chromium, which `make test` does when run as "
                "root with apt; or set CXR_REID_CHROMIUM)")
    return None


# ---------------------------------------------------------------------------- the server
class AppServer:
    """``streamlit run app.py`` on a free loopback port, looking for workspaces under ``workspaces``
    (``start``/``stop``, or :func:`serve_app`).

    ``started`` is the ``time.perf_counter()`` of the process start (for cold-start timings);
    the server's output goes to ``log_path``.
    """

    def __init__(self, workspaces: Path, log_path: Path, port: int | None = None,
                 extra_env: dict[str, str] | None = None):
        self.workspaces, self.log_path = Path(workspaces), Path(log_path)
        self.port = port or free_port()
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    def url(self, url_path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{url_path}"

    def start(self) -> AppServer:
        env = {**os.environ, "CXR_REID_WORKSPACES": str(self.workspaces), **self.extra_env}
        cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
               "--server.port", str(self.port), "--server.address", "127.0.0.1",
               "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:  # the child keeps its own handle
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_healthy(self, timeout: float = 90.0) -> None:
        wait_for_health(self.port, timeout)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def serve_app(workspaces: Path, log_path: Path, timeout: float = 90.0) -> Iterator[AppServer]:
    """A started :class:`AppServer` that answers its health check; stopped on exit."""
    server = AppServer(workspaces, log_path).start()
    try:
        server.wait_healthy(timeout)
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------- the browser
@contextmanager
def chromium_page(viewport: dict[str, int] | None = None, user_data_dir: Path | None = None) -> Iterator:
    """A Playwright page in headless Chromium with a fresh profile (``--user-data-dir``), closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise RuntimeError(browser_unavailable() or "no chromium")
    with tempfile.TemporaryDirectory(prefix="cxr-reid-chromium-") as tmp, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(user_data_dir or tmp), executable_path=executable, headless=True, args=list(CHROMIUM_ARGS),
            viewport=viewport or VIEWPORT, accept_downloads=False)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()


def wait_idle(page, timeout_s: float = 60.0) -> None:
    """Until the script run has finished and the websocket is connected."""
    page.wait_for_selector(IDLE, timeout=timeout_s * 1000)


def heading(page, text: str, timeout_s: float = 60.0) -> None:
    """Until the page's title (``st.title``, an h1) reads ``text``, then until the run has finished."""
    page.locator("h1").filter(has_text=text).first.wait_for(timeout=timeout_s * 1000)
    wait_idle(page, timeout_s)


def open_app(page, server: AppServer, timeout_s: float = 90.0) -> float:
    """Load the app's default page (Overview); seconds from the request to the finished first run."""
    t0 = time.perf_counter()
    page.goto(server.url(), timeout=timeout_s * 1000)
    heading(page, "Overview", timeout_s)
    return time.perf_counter() - t0


def switch_page(page, url_path: str, title: str, timeout_s: float = 60.0) -> float:
    """Click the page's sidebar link; seconds until its title shows and its script run has finished."""
    link = page.locator(f'[data-testid="stSidebarNavLink"][href$="/{url_path}"]') if url_path else \
        page.locator('[data-testid="stSidebarNavLink"]').first
    t0 = time.perf_counter()
    link.click()
    heading(page, title, timeout_s)
    return time.perf_counter() - t0


def exceptions(page) -> list[str]:
    """Texts of the exception boxes Streamlit shows on the page (a page that raised)."""
    return [e.inner_text() for e in page.locator('[data-testid="stException"]').all()]


def lasso_all(page, chart) -> None:
    """Draw a lasso around the whole plotting area of the plotly chart ``chart`` (a locator).

    Sets plotly's drag mode to lasso first (through the mode bar), so it works whatever the chart's default is.
    """
    chart.hover()
    chart.locator('.modebar-btn[data-title="Lasso Select"]').click()
    box = chart.locator(".nsewdrag").first.bounding_box()
    x0, y0 = box["x"] + 3, box["y"] + 3
    x1, y1 = box["x"] + box["width"] - 3, box["y"] + box["height"] - 3
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0 + 2)]
    page.mouse.move(*corners[0])
    page.mouse.down()
    for (ax, ay), (bx, by) in itertools.pairwise(corners):
        for k in range(1, 9):
            page.mouse.move(ax + (bx - ax) * k / 8, ay + (by - ay) * k / 8)
    page.mouse.up()


def wait_images_loaded(page, timeout_s: float = 30.0) -> None:
    """Until every ``<img>`` of the page has finished loading (for screenshots)."""
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)",
                           timeout=timeout_s * 1000)


def image_sources(page, scope=None) -> list[str]:
    """``src`` of every ``st.image`` in ``scope`` (default: the main area); a new image gets a new URL."""
    root = scope if scope is not None else page.locator('[data-testid="stMain"]')
    return [img.get_attribute("src") or "" for img in root.locator('[data-testid="stImage"] img').all()]


# ---------------------------------------------------------------------------- the explorer and widgets
def click_point(page, chart, n: int = 10) -> None:
    """Click the ``n``-th marker of the map's first trace (SVG points: the map has fewer than 2,000)."""
    from playwright.sync_api import Error

    for attempt in range(3):  # a rerun can replace the plot between finding a point and clicking it
        try:
            wait_idle(page)
            chart.scroll_into_view_if_needed()
            point = chart.locator(".scatterlayer .trace .points path").nth(n)
            point.scroll_into_view_if_needed()
            box = point.bounding_box()
            if box is None:
                raise Error("the point has no box yet")
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            return
        except Error:
            if attempt == 2:
                raise
            time.sleep(0.5)


def url_param(page, name: str) -> str | None:
    from urllib.parse import parse_qs, urlparse

    return (parse_qs(urlparse(page.url).query).get(name) or [None])[0]


def inspect_point(page, n: int) -> str:
    """Click the ``n``-th point of the explorer's map; the inspected image id, once its neighbours are shown."""
    before = url_param(page, "id")
    click_point(page, page.locator('[data-testid="stPlotlyChart"]').first, n)
    page.wait_for_function("(before) => { const id = new URLSearchParams(location.search).get('id');"
                           " return id !== null && id !== before; }", arg=before)
    wait_idle(page)
    focus = url_param(page, "id")
    page.locator(".legendtext").filter(has_text=f"inspected: {focus}").wait_for()
    return focus


def choose(page, label: str, value: str) -> None:
    """Type ``value`` into the selectbox labelled ``label`` and confirm it, then wait for the rerun."""
    for attempt in range(3):  # a rerun can swallow the click that opens the list: check, and try again
        wait_idle(page)
        page.locator('[data-testid="stSelectbox"]').filter(has_text=label).click()
        page.keyboard.type(value)
        page.keyboard.press("Enter")
        wait_idle(page)
        if value in shown_in(page, label):
            return
        page.keyboard.press("Escape")
    raise AssertionError(f"{label!r} does not show {value!r} after choosing it: {shown_in(page, label)!r}")


def shown_in(page, label: str) -> str:
    """What the selectbox labelled ``label`` shows: its text and its input's value."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label)
    return box.inner_text() + " " + " ".join(i.input_value() for i in box.locator("input").all())

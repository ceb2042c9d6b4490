"""Headless Debian chromium driven by the Python `playwright` package, for the Dagster UI tests.

No `playwright install`: it launches /usr/bin/chromium. Pages reach the UI's own host only, so the UI's
calls to dagster.io and friends fail at once instead of hanging; screenshots land in tests/artifacts/.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ARTIFACTS_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RENDER_TIMEOUT_MS = 60_000

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does)"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@contextlib.contextmanager
def ui_page(browser, ui_url: str):
    """A 1600x1000 page that may reach `ui_url`'s host only."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(RENDER_TIMEOUT_MS)
    ui_host = urlsplit(ui_url).netloc
    page.route("**/*", lambda route: route.continue_() if urlsplit(route.request.url).netloc == ui_host
               else route.abort())
    try:
        yield page
    finally:
        context.close()


def screenshot(page, name: str) -> Path:
    """A full-page screenshot under tests/artifacts/, checked to be a real rendering (not blank or tiny)."""
    from PIL import Image

    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as img:
        width, height = img.size
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert width >= 1600 and height >= 1000, (path, img.size)
    assert path.stat().st_size > 20_000, f"{path} is suspiciously small"
    assert colours is None or len(colours) > 50, f"{path} is nearly blank ({len(colours)} colours)"
    return path


def expect_texts(page, texts) -> None:
    from playwright.sync_api import expect

    for text in texts:
        expect(page.get_by_text(text, exact=True).first).to_be_visible(timeout=RENDER_TIMEOUT_MS)

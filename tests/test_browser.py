"""The Dagster UI in headless Debian chromium: the global asset lineage and the evaluation_report page.

Drives the same `dagster-webserver` fixture as tests/test_webserver.py with the Python `playwright`
package (no `playwright install`: it launches /usr/bin/chromium), saves full-page screenshots under
tests/artifacts/ and checks that the asset names render.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ARTIFACTS_DIR
from tests.fakes.webserver import LOCATION_NAME, dagster_webserver  # noqa: F401  (fixture)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RENDER_TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does)"),
]

GROUPS = ["data", "tuning", "adapters", "evaluation", "publishing"]
ASSETS = ["raw_examples", "clean_examples", "dataset_splits", "benchmark", "tuning_dataset", "tuning_job",
          "adapter", "evaluation_report", "leaderboard", "model_card", "published_adapter"]


@pytest.fixture(scope="module")
def ui(dagster_webserver):  # noqa: F811
    # the webserver shows a "Join the Dagster community" dialog on localhost until it is dismissed
    assert dagster_webserver.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    return dagster_webserver


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, ui):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(RENDER_TIMEOUT_MS)
    ui_host = urlsplit(ui.url).netloc
    # offline and deterministic: the UI's calls to dagster.io and friends fail at once instead of hanging
    page.route("**/*", lambda route: route.continue_() if urlsplit(route.request.url).netloc == ui_host
               else route.abort())
    yield page
    context.close()


def _screenshot(page, name: str) -> Path:
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


def _expect_texts(page, texts) -> None:
    from playwright.sync_api import expect

    for text in texts:
        expect(page.get_by_text(text, exact=True).first).to_be_visible(timeout=RENDER_TIMEOUT_MS)


def test_global_asset_lineage_renders_every_asset(ui, page):
    # /asset-groups is the global lineage; groups start collapsed, `expanded=` opens them (ids are
    # `global@global:<group>`, or `<repo>@<location>:<group>` with per-location groups switched on)
    expanded = [f"global@global:{g}" for g in GROUPS] + [f"__repository__@{LOCATION_NAME}:{g}" for g in GROUPS]
    page.goto(f"{ui.url}/asset-groups?expanded={','.join(expanded)}")
    _expect_texts(page, ["Global asset lineage", *GROUPS, *ASSETS])
    assert page.get_by_text("Join the Dagster community").count() == 0
    page.wait_for_load_state("networkidle")
    _screenshot(page, "asset_lineage")
    body = page.inner_text("body")
    assert not [name for name in ASSETS if name not in body], body[:3000]


def test_evaluation_report_page_renders(ui, page):
    page.goto(f"{ui.url}/assets/evaluation_report")
    # the header, its group, code location, job, lineage neighbours and the Checks tab
    _expect_texts(page, ["evaluation_report", "evaluation", LOCATION_NAME, "pair_pipeline_job",
                         "adapter", "benchmark", "leaderboard", "model_card", "Checks", "Partitions",
                         "Never materialized"])  # the status section loads on its own; a fresh instance
    page.wait_for_load_state("networkidle")
    _screenshot(page, "evaluation_report")
    body = page.inner_text("body")
    assert "evaluation_report" in body and "Never materialized" in body, body[:3000]

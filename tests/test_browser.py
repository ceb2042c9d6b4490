"""The Dagster UI in headless Debian chromium: the global asset lineage and the evaluation_report page.

Drives the same `dagster-webserver` fixture as tests/test_webserver.py (tests/fakes/browser.py drives
chromium), saves full-page screenshots under tests/artifacts/ and checks that the asset names render.
"""

from __future__ import annotations

import pytest

from tests.fakes.browser import BROWSER_MARKS, browser, expect_texts, screenshot, ui_page  # noqa: F401  (fixture)
from tests.fakes.webserver import LOCATION_NAME, dagster_webserver  # noqa: F401  (fixture)

pytestmark = BROWSER_MARKS

GROUPS = ["data", "tuning", "adapters", "evaluation", "publishing"]
ASSETS = ["raw_examples", "clean_examples", "dataset_splits", "benchmark", "tuning_dataset", "tuning_job",
          "adapter", "evaluation_report", "leaderboard", "model_card", "published_adapter"]


@pytest.fixture(scope="module")
def ui(dagster_webserver):  # noqa: F811
    # the webserver shows a "Join the Dagster community" dialog on localhost until it is dismissed
    assert dagster_webserver.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    return dagster_webserver


@pytest.fixture
def page(browser, ui):  # noqa: F811
    with ui_page(browser, ui.url) as page:
        yield page


def test_global_asset_lineage_renders_every_asset(ui, page):
    # /asset-groups is the global lineage; groups start collapsed, `expanded=` opens them (ids are
    # `global@global:<group>`, or `<repo>@<location>:<group>` with per-location groups switched on)
    expanded = [f"global@global:{g}" for g in GROUPS] + [f"__repository__@{LOCATION_NAME}:{g}" for g in GROUPS]
    page.goto(f"{ui.url}/asset-groups?expanded={','.join(expanded)}")
    expect_texts(page, ["Global asset lineage", *GROUPS, *ASSETS])
    assert page.get_by_text("Join the Dagster community").count() == 0
    page.wait_for_load_state("networkidle")
    screenshot(page, "asset_lineage")
    body = page.inner_text("body")
    assert not [name for name in ASSETS if name not in body], body[:3000]


def test_evaluation_report_page_renders(ui, page):
    page.goto(f"{ui.url}/assets/evaluation_report")
    # the header, its group, code location, job, lineage neighbours and the Checks tab
    expect_texts(page, ["evaluation_report", "evaluation", LOCATION_NAME, "pair_pipeline_job",
                         "adapter", "benchmark", "leaderboard", "model_card", "Checks", "Partitions",
                         "Never materialized"])  # the status section loads on its own; a fresh instance
    page.wait_for_load_state("networkidle")
    screenshot(page, "evaluation_report")
    body = page.inner_text("body")
    assert "evaluation_report" in body and "Never materialized" in body, body[:3000]

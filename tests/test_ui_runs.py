"""Engineers at the Dagster UI: materialise from the browser, and see the loss curve on the asset page.

One `dagster dev` (webserver + daemon, as `make dev` starts them, after `coursegpt home` has written the
instance's dagster.yaml) on an isolated home. The first test clicks Materialize on raw_examples,
clean_examples and dataset_splits for the router partition, then on tuning_dataset for
router__tiny-llama; the daemon launches each queued run, the run page shows it succeed, and the store
holds what it wrote. The second trains the pair with `coursegpt run` (as `make run` does) and opens the
adapter's page, where the loss curve must render as an image.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys

import pytest

from coursegpt_assets.core import layout
from tests.conftest import PROJECT_ROOT, split_key
from tests.fakes.browser import BROWSER_MARKS, browser, screenshot, ui_page  # noqa: F401  (fixture)
from tests.fakes.webserver import launch, stop, webserver_env

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]

PAIR = "router__tiny-llama"
DAGSTER_BIN = PROJECT_ROOT / ".venv" / "bin" / "dagster"
RUN_TIMEOUT_MS = 300_000  # a queued run on a busy 2-core machine: daemon tick, run worker, step processes


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    """`make dev`: `coursegpt home` writes dagster.yaml, then `dagster dev` serves the UI and runs the daemon."""
    if not DAGSTER_BIN.exists():
        pytest.fail(f"{DAGSTER_BIN} is missing; run `make install`")
    home = tmp_path_factory.mktemp("dev_home")
    env = webserver_env(home)
    (home / "dagster" / "dagster.yaml").unlink()  # the instance config is coursegpt's, as under `make dev`
    subprocess.run([sys.executable, "-m", "coursegpt_assets.cli.main", "home"], cwd=PROJECT_ROOT, env=env,
                   check=True, capture_output=True)
    server = launch([str(DAGSTER_BIN), "dev"], home, env)
    assert server.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True  # no "Join the community" dialog
    server.home, server.env = home, env
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture
def page(browser, dev):  # noqa: F811
    with ui_page(browser, dev.url) as page:
        yield page


def _store(dev):
    from resources.local_store import LocalStore

    return LocalStore(root=str(dev.home / "store"))


def materialize_in_ui(page, dev, asset: str, partition: str) -> str:
    """Materialize… on the asset's page, pick one partition, launch; returns the run page's URL once the
    run page says the run succeeded."""
    from playwright.sync_api import expect

    page.goto(f"{dev.url}/assets/{asset}")
    page.get_by_role("button", name="Materialize…").first.click()
    dialog = page.locator('[role="dialog"]').first
    dialog.get_by_text("Select a partition or create one").click()
    page.locator(f'label:has([title="{partition}"])').first.click()
    page.keyboard.press("Escape")  # closes the partition list, not the dialog
    dialog.get_by_role("button", name="Launch 1 run").click()
    view = page.locator('a[href^="/runs/"]', has_text="View").filter(has_not_text="in").first  # the launch toast
    expect(view).to_be_visible()
    run_url = f"{dev.url}{view.get_attribute('href')}"
    page.goto(run_url)
    status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first  # the tag beside the run's id
    try:
        expect(status).to_be_visible(timeout=RUN_TIMEOUT_MS)
    except AssertionError:
        status = None
    if status is None or status.inner_text() != "Success":
        screenshot(page, f"ui_run_{asset}_failed")
        raise AssertionError(f"{asset} [{partition}] did not succeed in the UI "
                             f"({status.inner_text() if status else 'no end within the timeout'}); see "
                             f"tests/artifacts/ui_run_{asset}_failed.png\n{dev.log_tail()}")
    return run_url


def test_engineers_materialise_the_data_chain_and_a_pair_asset_from_the_ui(dev, page):
    store = _store(dev)
    assert not store.exists(layout.splits_manifest("router"))  # a fresh home: whatever is there, the UI wrote
    for asset in ("raw_examples", "clean_examples", "dataset_splits"):
        materialize_in_ui(page, dev, asset, "router")
    screenshot(page, "ui_run_dataset_splits")
    manifest = store.read_json(layout.splits_manifest("router"))
    assert sum(manifest["counts"].values()) == len(store.read_jsonl(layout.clean_records("router"))) > 0
    for split in manifest["counts"]:
        assert len(store.read_jsonl(split_key(store, "router", split))) == manifest["counts"][split]

    materialize_in_ui(page, dev, "tuning_dataset", PAIR)
    tuning = store.read_json(layout.tuning_manifest(PAIR))
    assert tuning["counts"]["train"] == len(store.read_jsonl(layout.tuning_records(PAIR, "train"))) > 0
    # the runs were launched by the UI (no coursegpt invocation tag), one per click, all successful
    runs = dev.graphql("{ runsOrError { ... on Runs { results { status tags { key value } } } } }")
    results = runs["runsOrError"]["results"]
    assert len(results) == 4 and {r["status"] for r in results} == {"SUCCESS"}
    assert not any(t["key"] == "coursegpt/invocation" for r in results for t in r["tags"])


def test_the_adapter_page_shows_the_loss_curve_after_a_run(dev, page):
    done = subprocess.run(
        [sys.executable, "-m", "coursegpt_assets.cli.main", "run", "--agent", "router", "--base-model", "tiny-llama",
         "--assets", "raw_examples,clean_examples,dataset_splits,tuning_dataset,tuning_job,adapter"],
        cwd=PROJECT_ROOT, env={**dev.env, "PYTHONPATH": os.environ.get("PYTHONPATH", str(PROJECT_ROOT))},
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = _store(dev)
    version = store.read_json(layout.adapter_latest(PAIR))["version"]
    png = store.read_bytes(f"{layout.adapter_dir(PAIR, version)}/{layout.LOSS_CURVE_FILE}")

    page.goto(f"{dev.url}/assets/adapter?partition={PAIR}")
    page.locator("tr", has_text="loss_curve").get_by_text("[Show Markdown]").click()
    image = page.locator('[role="dialog"] img').first
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    width, height, alt, src = image.evaluate("i => [i.naturalWidth, i.naturalHeight, i.alt, i.src]")
    assert (width, height) == _png_size(png) and alt == "Training and validation loss"
    assert base64.b64decode(src.split("base64,", 1)[1]) == png  # the stored curve of the newest adapter
    shot = screenshot(page, "adapter_loss_curve")
    box = image.bounding_box()
    assert box["width"] >= 300 and box["height"] >= 150, box  # drawn at a readable size, not a broken icon
    assert shot.exists()


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")

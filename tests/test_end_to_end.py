"""`make run`'s path: the whole *__tiny-llama graph for all three agents on a temporary home.
It publishes nothing: publishing is opt-in (`--publish`) and a smoke-test model is never published."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, split_key

pytestmark = pytest.mark.slow

AGENTS = ("router", "math", "code")
PAIRS = [f"{a}__tiny-llama" for a in AGENTS]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e_home")
    env = {**os.environ, "COURSEGPT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    for var in ("COURSEGPT_STORE", "COURSEGPT_ENV", "COURSEGPT_ROUTER_SOURCE", "COURSEGPT_MATH_SOURCE",
                "COURSEGPT_CODE_SOURCE"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "coursegpt_assets.cli.main", "run", "--base-model", "tiny-llama"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    return home, proc


def test_the_run_succeeds_and_prints_a_summary(finished_run):
    _, proc = finished_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for asset in ("raw_examples", "tuning_job", "evaluation_report", "model_card", "leaderboard"):
        assert asset in proc.stdout
    assert "✗" not in proc.stdout


def test_the_run_prints_no_known_library_noise(finished_run):
    _, proc = finished_run
    for notice in ("gemm_4bit_forward", "is_gradient_checkpointing", "expected_writer_count", "STEP_WORKER_STARTED"):
        assert notice not in proc.stderr, notice


def test_every_artifact_exists(finished_run):
    home, _ = finished_run
    store = home / "store"
    for agent in AGENTS:
        for split in ("train", "validation", "test"):
            assert (store / split_key(store, agent, split)).is_file()
        assert (store / f"benchmarks/{agent}/benchmark.jsonl").is_file()
        assert (store / f"leaderboards/{agent}").is_dir()
    for pair in PAIRS:
        for split in ("train", "validation"):
            assert (store / f"tuning/{pair}/{split}.jsonl").is_file()
        version = json.loads((store / f"adapters/{pair}/latest.json").read_text())["version"]
        adapter = store / f"adapters/{pair}/{version}"
        for name in ("adapter_model.safetensors", "adapter_config.json", "training_summary.json",
                     "chat_template.jinja", "loss_curve.png"):
            assert (adapter / name).is_file(), adapter / name
        report_version = json.loads((store / f"reports/{pair}/latest.json").read_text())["version"]
        report = json.loads((store / f"reports/{pair}/{report_version}/report.json").read_text())
        assert report["adapter_version"] == version
        assert (store / f"reports/{pair}/{report_version}/predictions.jsonl").is_file()
        numbers = [v for v in report["headline"].values() if isinstance(v, (int, float))]
        assert numbers, report["headline"]
        # the base model answered the same rows (adapter disabled): base, delta and intervals beside the adapter's
        assert set(report["base"]["headline"]) == set(report["delta"]) == set(report["headline"])
        assert set(report["ci"]) == {"adapter", "base", "delta"} and report["base"]["cache"]["key"]
        assert (store / f"cards/{pair}/README.md").is_file()


def test_every_check_passed_and_the_instance_holds_the_runs(finished_run):
    home, _ = finished_run
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION), limit=10_000
    )
    assert records
    failed = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.append((evaluation.asset_key.to_user_string(), evaluation.check_name))
    assert not failed
    materialized = {r.asset_key.to_user_string() for r in instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION), limit=10_000)}
    assert {"raw_examples", "adapter", "evaluation_report", "model_card", "leaderboard"} <= materialized
    checks = {r.event_log_entry.dagster_event.event_specific_data.check_name for r in records}
    assert "card_is_valid" in checks and "not_a_smoke_model" not in checks  # publish_job's check only


def test_nothing_is_published(finished_run):
    home, proc = finished_run
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    assert not instance.fetch_materializations(dg.AssetKey("published_adapter"), limit=1).records
    assert not (home / "hub").exists() and "published_adapter" not in proc.stdout


def test_the_summary_shows_held_out_perplexity_and_the_router_adapter_learned(finished_run):
    """The embedded default measures something: every tiny pair's summary line shows base and adapter
    held-out perplexity, and router__tiny-llama's adapter is at least 20 % below its random base."""
    home, proc = finished_run
    for pair in PAIRS:
        line = next(x for x in proc.stdout.splitlines() if x.startswith("evaluation_report ") and f" {pair} " in x)
        assert "perplexity_base=" in line and "perplexity_adapter=" in line, line
    store = home / "store"
    version = json.loads((store / "reports/router__tiny-llama/latest.json").read_text())["version"]
    ppl = json.loads((store / f"reports/router__tiny-llama/{version}/report.json").read_text())["perplexity"]
    assert ppl["split"] == "test" and ppl["rows"] > 0 and ppl["tokens"] > 0, ppl
    assert ppl["adapter"] <= 0.8 * ppl["base"], ppl

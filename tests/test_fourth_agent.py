"""A fourth agent is one module plus a plan entry and a fixture: the toy agent (tests/fakes/toy_agent.py), kept
outside the project, runs its whole chain to a model card on the tiny base model with every blocking check.

Partitions are built from the plan at import, so the run is a `coursegpt run` subprocess that sees the
toy project through its environment (COURSEGPT_PLAN, PYTHONPATH, COURSEGPT_TOY_SOURCE).
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, split_key
from tests.fakes.toy_agent import AGENT as TOY
from tests.fakes.toy_project import TOY_PAIR, toy_records, write_toy_project

pytestmark = pytest.mark.slow

CHAIN = ("raw_examples", "clean_examples", "dataset_splits", "benchmark", "tuning_dataset", "tuning_job",
         "adapter", "evaluation_report", "model_card")
#: blocking checks of the chain that are not dbt-style schema tests (those are named by schema.yml)
GATES = {("benchmark", "benchmark_not_in_train"), ("tuning_dataset", "tuning_data_trainable"),
         ("tuning_dataset", "tuning_cost_within_budget"), ("model_card", "card_is_valid")}


def coursegpt(home, project, *args):
    env = {**os.environ, "COURSEGPT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), **project.env}
    for var in ("COURSEGPT_STORE", "COURSEGPT_ENV"):
        env.pop(var, None)
    return subprocess.run([sys.executable, "-m", "coursegpt_assets.cli.main", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    project = write_toy_project(tmp_path_factory.mktemp("toy_project"))
    home = tmp_path_factory.mktemp("toy_home")
    proc = coursegpt(home, project, "run", "--agent", "toy", "--base-model", "tiny-llama", "--assets", ",".join(CHAIN))
    return home, project, proc


def test_the_chain_runs_to_the_model_card(toy_run):
    _, _, proc = toy_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "✗" not in proc.stdout
    for asset in CHAIN:
        partition = "toy" if CHAIN.index(asset) < CHAIN.index("tuning_dataset") else TOY_PAIR
        assert any(f"✓ {asset} " in line and partition in line for line in proc.stdout.splitlines()), asset


def test_the_artifacts_say_what_the_toy_agent_declared(toy_run):
    home, _, _ = toy_run
    store = home / "store"
    rows = [json.loads(line) for line in (store / "benchmarks/toy/benchmark.jsonl").read_text().splitlines()]
    test_split = [json.loads(line) for line in (store / split_key(store, "toy", "test")).read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in test_split] and rows[0]["answer"] == rows[0]["word"][::-1]
    manifest = json.loads((store / "benchmarks/toy/manifest.json").read_text())
    assert manifest["counts"] == {"source": {"test": len(rows)}} and manifest["train_overlap_ids"] == []
    version = json.loads((store / f"reports/{TOY_PAIR}/latest.json").read_text())["version"]
    report = json.loads((store / f"reports/{TOY_PAIR}/{version}/report.json").read_text())
    assert report["metric"] == "exact_match" and list(report["headline"]) == list(TOY.headline_metrics)
    assert report["thresholds"] == {}
    card = (store / f"cards/{TOY_PAIR}/README.md").read_text()
    assert TOY.intended_use in card and "is synthetic" not in card
    assert "exact_match" in card and "toy-agent" in card


def test_every_check_ran_on_the_toy_partitions_and_none_failed(toy_run):
    home, _, proc = toy_run
    assert proc.returncode == 0
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        records = instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION), limit=10_000)
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    assert {e.partition for e in evaluations} == {"toy", TOY_PAIR}
    ran = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations}
    assert GATES <= ran and ("adapter", "adapter_matches_plan") in ran
    assert {"clean_examples", "dataset_splits", "benchmark", "tuning_dataset"} <= {asset for asset, _ in ran}
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations
              if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    assert not failed
    # schema.yml tests scoped to the router's partitions report themselves not applicable to the toy agent
    scoped = [e for e in evaluations if e.check_name == "user_query_not_blank"]
    assert scoped and all(e.passed and e.metadata["applicable"].value is False for e in scoped)
    assert not [name for _, name in ran if name.startswith("router_")]  # the router's thresholds stay its own


def test_an_agent_without_a_file_scorer_has_no_score_subcommand(tmp_path):
    project = write_toy_project(tmp_path)
    proc = coursegpt(tmp_path / "home", project, "score", "toy", "--help")
    assert proc.returncode == 2 and "invalid choice: 'toy'" in proc.stderr
    assert "router" in proc.stderr and "math" in proc.stderr and "code" in proc.stderr


def test_the_fixture_is_valid_for_the_toy_agent():
    assert all(TOY.validate(r) == [] for r in toy_records())
    assert len({TOY.dedup_key(r) for r in toy_records()}) == len(toy_records())

"""No paid job on fixture data: under COURSEGPT_ENV=gcp every agent's source must be named (else the
definitions do not load), and a blocking check (repeated inside tuning_job before it submits) refuses a
Vertex job on the shipped fixture or on fewer train rows than cost.min_train_rows."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import pytest

from coursegpt_assets.core import settings
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.core.settings import FIXTURES_DIR, SettingsError
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from coursegpt_assets.defs.tuning.checks import TUNING_DATA_CHECKS
from coursegpt_assets.training.validation import paid_data_problems
from resources import resources_for
from tests.conftest import NAMED_SOURCES, PROJECT_ROOT, step_failure_text
from tests.fakes.tuning_store import plan_copy, write_tuning_data
from tests.test_vertex_pipeline import instance, materialise_tuning_job, vertex_server  # noqa: F401

VERTEX_PAIR, LOCAL_PAIR = "router__llama31-8b", "router__tiny-llama"
CHECK = "paid_job_data_is_real"


@dg.asset(name="tuning_dataset", partitions_def=PAIR_PARTITIONS)
def tuning_data_written() -> None:
    """Stands in for tuning_dataset: write_tuning_data has put the pair's files in the store already."""


@pytest.fixture
def gcp(monkeypatch, gcs_store):
    monkeypatch.setenv("COURSEGPT_ENV", "gcp")
    for name, value in NAMED_SOURCES.items():
        monkeypatch.setenv(name, value)
    return gcs_store


def guard(store, pair: str) -> dg.AssetCheckEvaluation:
    result = dg.materialize([tuning_data_written, *TUNING_DATA_CHECKS], partition_key=pair,
                            resources={"store": store}, raise_on_error=False)
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == CHECK]
    return evaluation


def test_the_rule():
    assert paid_data_problems(train_rows=8189, min_train_rows=500, source="hf://x/y", is_fixture=False) == []
    small = paid_data_problems(train_rows=73, min_train_rows=500, source="/data/mine.jsonl", is_fixture=False)
    assert small == ["the train split has 73 rows, fewer than cost.min_train_rows = 500"]
    fixture = paid_data_problems(train_rows=9000, min_train_rows=500, source="f.jsonl", is_fixture=True)
    assert fixture == ["the data comes from the shipped fixture f.jsonl (name the agent's real source)"]
    assert settings.is_shipped_fixture(str(FIXTURES_DIR / "router.jsonl"))
    assert not settings.is_shipped_fixture("hf://Alovestocode/Router-agent-data")


def test_gcp_definitions_need_every_source_named(monkeypatch):
    monkeypatch.setenv("COURSEGPT_ENV", "gcp")
    monkeypatch.setenv("COURSEGPT_STORE", "gs://bucket/forge")
    monkeypatch.setenv("COURSEGPT_MATH_SOURCE", NAMED_SOURCES["COURSEGPT_MATH_SOURCE"])
    with pytest.raises(SettingsError, match="set COURSEGPT_ROUTER_SOURCE, COURSEGPT_CODE_SOURCE"):
        resources_for(settings.current())
    with pytest.raises(SettingsError, match="COURSEGPT_ROUTER_SOURCE"):
        settings.source_for("router", "COURSEGPT_ROUTER_SOURCE")
    # as a user meets it: a fresh `coursegpt` process loading the definitions
    done = subprocess.run([sys.executable, "-m", "coursegpt_assets.cli.main", "run", "--dry-run"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    err = done.stderr.strip()
    assert done.returncode == 2, done.stderr[-2000:]
    assert err.startswith("coursegpt: error: COURSEGPT_ENV=gcp needs every agent's source named") and "\n" not in err


def test_locally_the_fixture_is_the_default():
    assert settings.source_for("router", "COURSEGPT_ROUTER_SOURCE") == str(FIXTURES_DIR / "router.jsonl")


def test_the_check_refuses_the_fixture_and_a_small_split_for_a_paid_pair(gcp, tmp_path, monkeypatch):
    monkeypatch.delenv("COURSEGPT_ROUTER_SOURCE")  # the rows then record the shipped fixture as their source
    write_tuning_data(gcp, VERTEX_PAIR)
    refused = guard(gcp, VERTEX_PAIR)
    assert not refused.passed and "shipped fixture" in refused.description
    assert "fewer than cost.min_train_rows = 500" in refused.description


def test_a_named_source_with_enough_rows_passes(gcp, tmp_path, monkeypatch):
    plan_copy(tmp_path / "plan.yaml", lambda raw: raw["cost"].update(min_train_rows=8), monkeypatch=monkeypatch)
    try:
        write_tuning_data(gcp, VERTEX_PAIR)  # the source COURSEGPT_ROUTER_SOURCE names
        assert guard(gcp, VERTEX_PAIR).passed
    finally:
        default_plan.cache_clear()


def test_a_local_pair_is_not_guarded(store):
    write_tuning_data(store, LOCAL_PAIR)
    evaluation = guard(store, LOCAL_PAIR)
    assert evaluation.passed and "trains locally" in evaluation.description


def test_tuning_job_refuses_to_submit_on_the_fixture(gcp, vertex_server, instance, monkeypatch):  # noqa: F811
    monkeypatch.delenv("COURSEGPT_ROUTER_SOURCE")
    default_plan.cache_clear()
    write_tuning_data(gcp, VERTEX_PAIR)
    result = materialise_tuning_job(gcp, vertex_server, instance, raise_on_error=False)
    assert not result.success
    assert vertex_server.create_calls == 0
    assert "not submitting a paid Vertex job" in step_failure_text(result) and "shipped fixture" in step_failure_text(result)

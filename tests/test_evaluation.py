"""evaluation_report and leaderboard: real generation with a tiny adapter, the adapter-applied proof,
an OpenAI-compatible server on loopback, threshold WARN checks, report reuse and the leaderboard table."""

from __future__ import annotations

import base64

import dagster as dg
import pytest

from coursegpt_assets.agents import get_agent
from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.data.benchmark_rows import select_per_source
from coursegpt_assets.defs.evaluation.leaderboard import leaderboard
from coursegpt_assets.defs.evaluation.report import (
    CURRENT_CHECK,
    REPORT_KEY,
    THRESHOLD_CHECKS,
    evaluation_report,
    report_is_current,
    threshold_check_name,
)
from coursegpt_assets.defs.partitions import AGENT_PARTITIONS, PAIR_PARTITIONS
from coursegpt_assets.scoring.report import report_version
from resources.inference import InferenceError, LocalGenerator
from resources.openai_compatible import OpenAICompatibleServer
from resources.storage import ArtifactStore
from tests.conftest import step_failure_text
from tests.fakes.evaluation_store import (
    BENCHMARK_ROWS,
    PAIR,
    router_benchmark,
    write_benchmark,
    write_held_out,
)
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.tiny_adapter import write_tiny_adapter
from tests.fakes.tuning_store import valid_router_records

EVALUATION_ASSETS = [evaluation_report, leaderboard]
EVALUATION_CHECKS = [report_is_current]
UPSTREAM = [dg.AssetSpec("adapter", partitions_def=PAIR_PARTITIONS),
            dg.AssetSpec("benchmark", partitions_def=AGENT_PARTITIONS)]


def evaluate(store, inference, instance=None, config=None, raise_on_error=True):
    run_config = {"ops": {"evaluation_report": {"config": config}}} if config else None
    return dg.materialize([*UPSTREAM, *EVALUATION_ASSETS, *EVALUATION_CHECKS], partition_key=PAIR,
                          resources={"store": store, "inference": inference}, instance=instance,
                          selection=[REPORT_KEY], run_config=run_config, raise_on_error=raise_on_error)


def newest_report(store: ArtifactStore, pair: str = PAIR) -> dict:
    version = store.read_json(layout.report_latest(pair))["version"]
    return store.read_json(f"{layout.report_dir(pair, version)}/report.json")


# -- pure logic --------------------------------------------------------------------------------------------
def test_row_selection_is_seeded_per_source_and_keeps_benchmark_order():
    rows = [{"id": f"r{i}", "source": "big" if i < 40 else "small"} for i in range(50)]
    picked = select_per_source(rows, 6, seed=7)
    assert picked == select_per_source(rows, 6, seed=7)
    assert [r["source"] for r in picked].count("big") == 6 and [r["source"] for r in picked].count("small") == 6
    assert [rows.index(r) for r in picked] == sorted(rows.index(r) for r in picked)
    assert picked != select_per_source(rows, 6, seed=8)
    assert select_per_source(rows, None, seed=7) == rows and select_per_source(rows, 99, seed=7) == rows


def test_report_version_follows_every_input():
    base = {"adapter_version": "a", "benchmark_version": "b", "settings": {"backend": "x"}, "limit": 16,
            "max_new_tokens": 64}
    first = report_version(**base)
    assert first == report_version(**base)
    for change in ({"adapter_version": "a2"}, {"benchmark_version": "b2"}, {"settings": {"backend": "y"}},
                   {"limit": None}, {"max_new_tokens": 65}):
        assert report_version(**{**base, **change}) != first, change


def test_router_thresholds_become_warn_checks_on_the_report():
    names = {spec.name for spec in THRESHOLD_CHECKS}
    assert threshold_check_name("router", "overall", "json_valid", "min") in names
    assert all(spec.asset_key == REPORT_KEY for spec in THRESHOLD_CHECKS)
    assert len(names) == len(THRESHOLD_CHECKS) > 10


def test_router_scores_gold_plans_perfectly_and_prose_as_invalid():
    rows = router_benchmark()
    agent = get_agent("router")
    gold = agent.score(rows, [r["completion"] for r in rows])
    assert gold.headline["json_valid"] == 1.0 and gold.headline["route_plan_exact"] == 1.0
    prose = agent.score(rows, ["I would search the web first."] * len(rows))
    assert prose.headline["json_valid"] == 0.0


# -- local generation with a real adapter --------------------------------------------------------------------
def test_local_report_proves_the_adapter_and_saves_everything(evaluated_store, models_home):
    store, adapter_version = evaluated_store
    inference = LocalGenerator(models_home=str(models_home), batch_size=4)
    with dg.instance_for_test() as instance:
        result = evaluate(store, inference, instance, config={"max_new_tokens": 8, "max_examples": BENCHMARK_ROWS})
        assert result.success
        report = newest_report(store)
        assert report["adapter_version"] == adapter_version and report["benchmark_version"] == "bench-v1"
        proof = report["adapter_proof"]
        assert proof["kind"] == "logit_probe" and proof["passed"] and proof["max_abs_logit_diff"] > 0
        assert len(report["adapter_sha256"]) == 64
        assert report["inference"]["samples"] == BENCHMARK_ROWS
        rdir = layout.report_dir(PAIR, report["report_version"])
        predictions = store.read_jsonl(f"{rdir}/predictions.jsonl")
        assert [p["id"] for p in predictions] == [r["id"] for r in router_benchmark()]
        assert {p["finish_reason"] for p in predictions} <= {"stop", "length"}
        assert store.exists(f"{rdir}/report.md") and store.exists(f"{rdir}/scores.json")
        # the tiny model emits no valid plan: json_valid is measured (0), the other metrics have no parsed plan
        assert report["headline"]["json_valid"] == 0.0
        materialization = result.asset_materializations_for_node("evaluation_report")[0]
        assert materialization.metadata["adapter_proof"].value == "logit_probe"
        assert materialization.metadata["json_valid"].value == 0.0
        charts = {k: v.value for k, v in materialization.metadata.items() if k.startswith("chart/")}
        assert charts and len(charts) == len(report["files"]["plots"])  # every stored chart, on the asset page
        assert all(v.startswith("![") and "(data:image/png;base64," in v for v in charts.values())
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        json_check = checks[threshold_check_name("router", "overall", "json_valid", "min")]
        assert not json_check.passed and json_check.severity == dg.AssetCheckSeverity.WARN

        again = evaluate(store, inference, instance, config={"max_new_tokens": 8, "max_examples": BENCHMARK_ROWS})
        assert again.asset_materializations_for_node("evaluation_report")[0].metadata["reused"].value is True
        assert newest_report(store)["report_version"] == report["report_version"]


def test_an_adapter_that_changes_nothing_fails_the_report(store, models_home):
    write_benchmark(store, router_benchmark())
    write_held_out(store, valid_router_records()[:2])
    write_tiny_adapter(store, PAIR, models_home=models_home, steps=0)  # PEFT's initial adapter: B = 0
    result = evaluate(store, LocalGenerator(models_home=str(models_home)), raise_on_error=False)
    assert not result.success
    text = step_failure_text(result)
    assert "changes no logit" in text and "LoRA B tensors are all zero" in text
    assert not store.exists(layout.report_latest(PAIR))


def test_missing_upstream_names_the_asset_to_materialise(store):
    result = evaluate(store, LocalGenerator(), raise_on_error=False)
    assert "materialise adapter first" in step_failure_text(result)


# -- an OpenAI-compatible server on loopback -----------------------------------------------------------------
def gold_answers(rows):
    by_query = {r["user_query"].strip(): r["completion"] for r in rows}

    def answer(model, prompt):
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        return next(c for q, c in by_query.items() if q in text)

    return answer


def test_server_backend_scores_gold_answers_and_sends_the_adapters_template(evaluated_store):
    store, adapter_version = evaluated_store
    rows = router_benchmark()
    with FakeOpenAIServer([PAIR], gold_answers(rows)) as server:
        result = evaluate(store, OpenAICompatibleServer(base_url=server.base_url, api_key="sk-test"),
                          config={"max_examples": BENCHMARK_ROWS})  # every row (a smoke pair answers a subset)
        assert result.success
        report = newest_report(store)
        assert report["headline"]["json_valid"] == 1.0 and report["headline"]["route_plan_exact"] == 1.0
        assert report["adapter_proof"]["kind"] == "served_model" and report["adapter_proof"]["answered_as"] == [PAIR]
        assert report["inference"]["backend"] == "openai-compatible"
        assert len([r for r in server.requests if not r["body"].get("echo")]) == BENCHMARK_ROWS  # echo: perplexity
        sent = next(r for r in server.requests if rows[0]["user_query"].strip() in r["body"]["prompt"])
        assert sent["path"] == "/v1/completions" and sent["authorization"] == "Bearer sk-test"
        assert sent["body"]["stop"] == ["<|end|>"] and sent["body"]["temperature"] == 0.0
        # the prompt is the benchmark conversation rendered with the template stored beside the adapter
        from coursegpt_assets.core.chat_templates import render_template

        template = (store.local_dir(layout.adapter_dir(PAIR, adapter_version), store.root + "-cache")
                    / "chat_template.jinja").read_text()
        conversation = get_agent("router").benchmark_messages(rows[0])
        assert sent["body"]["prompt"] == render_template(template, conversation, bos_token="",
                                                         add_generation_prompt=True)
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks[threshold_check_name("router", "overall", "json_valid", "min")] is True


def test_server_that_does_not_serve_the_adapter_is_refused(evaluated_store):
    store, _ = evaluated_store
    with FakeOpenAIServer(["llama3.1:8b"], gold_answers(router_benchmark())) as server:
        with pytest.raises(InferenceError, match="does not serve 'router__tiny-llama'"):
            evaluate(store, OpenAICompatibleServer(base_url=server.base_url))


def test_server_answering_as_another_model_is_refused(evaluated_store):
    store, _ = evaluated_store
    with FakeOpenAIServer([PAIR], gold_answers(router_benchmark()), answer_as="llama3.1:8b") as server:
        with pytest.raises(InferenceError, match="answered as"):
            evaluate(store, OpenAICompatibleServer(base_url=server.base_url))


def test_unreachable_server_says_so(evaluated_store):
    store, _ = evaluated_store
    with pytest.raises(InferenceError, match=r"127\.0\.0\.1:9/v1/models: server not reachable.*after 2 attempts"):
        evaluate(store, OpenAICompatibleServer(base_url="http://127.0.0.1:9/v1", timeout_s=2, max_attempts=2,
                                               max_retry_delay_s=0.1))


# -- leaderboard -------------------------------------------------------------------------------------------
def fake_report(pair: str, version: str, headline: dict, samples: int = 16) -> dict:
    return {"pair": pair, "agent": "router", "base_model": pair.split("__")[1], "smoke": False,
            "report_version": version, "adapter_version": "a-" + version, "benchmark_version": "bench-v1",
            "headline": headline, "inference": {"samples": samples, "backend": "transformers+peft"}}


def write_report(store, report):
    store.write_json(f"{layout.report_dir(report['pair'], report['report_version'])}/report.json", report)
    store.write_json(layout.report_latest(report["pair"]), {"version": report["report_version"]})


def leaderboard_run(store, raise_on_error=True):
    reports = dg.AssetSpec(REPORT_KEY, partitions_def=PAIR_PARTITIONS)
    return dg.materialize([reports, leaderboard], partition_key="router", resources={"store": store},
                          raise_on_error=raise_on_error)


def test_leaderboard_ranks_base_models_per_metric(store):
    write_report(store, fake_report("router__llama31-8b", "v1", {"json_valid": 0.9, "route_plan_exact": 0.4}))
    write_report(store, fake_report("router__gemma3-27b", "v2", {"json_valid": 0.8, "route_plan_exact": 0.6}))
    result = leaderboard_run(store)
    board = store.read_json(f"{layout.leaderboard_dir('router')}/leaderboard.json")
    assert board["best"]["json_valid"]["base_models"] == ["llama31-8b"]
    assert board["best"]["route_plan_exact"]["base_models"] == ["gemma3-27b"]
    evaluated = [r for r in board["rows"] if r["evaluated"]]
    assert len(evaluated) == 2 and len(board["rows"]) > 2  # planned pairs without a report are listed too
    meta = result.asset_materializations_for_node("leaderboard")[0].metadata
    assert meta["evaluated_models"].value == 2 and meta["comparable"].value is True
    # on the asset page: a sortable table with a float column per metric, and the chart as an embedded PNG
    table = meta["table"]
    assert isinstance(table, dg.TableMetadataValue)
    assert {c.name: c.type for c in table.schema.columns}["json_valid"] == "float"
    by_model = {r.data["base_model"]: r.data for r in table.records}
    assert by_model["llama31-8b"]["json_valid"] == 0.9 and by_model["gemma3-27b"]["route_plan_exact"] == 0.6
    assert by_model["qwen3-32b"]["evaluated"] is False and by_model["qwen3-32b"]["json_valid"] is None
    chart = meta["chart"].value
    assert chart.startswith("![router leaderboard](data:image/png;base64,")
    png = base64.b64decode(chart.split("base64,", 1)[1].rstrip(")"))
    assert png == store.read_bytes(f"{layout.leaderboard_dir('router')}/leaderboard.png")
    assert "llama31-8b" in store.read_text(f"{layout.leaderboard_dir('router')}/leaderboard.md")


def test_leaderboard_flags_reports_that_are_not_comparable(store):
    write_report(store, fake_report("router__llama31-8b", "v1", {"json_valid": 0.9}, samples=16))
    write_report(store, fake_report("router__gemma3-27b", "v2", {"json_valid": 0.8}, samples=400))
    leaderboard_run(store)
    notes = store.read_json(f"{layout.leaderboard_dir('router')}/leaderboard.json")["notes"]
    assert any("samples" in n for n in notes)


def test_leaderboard_without_reports_is_an_empty_table_listing_the_pending_pairs(store):
    """A Vertex pair's report comes later, from the sensor: until then the leaderboard is empty, not failed."""
    result = leaderboard_run(store)
    meta = {k: v.value for k, v in result.asset_materializations_for_node("leaderboard")[0].metadata.items()}
    pairs = [p.key for p in default_plan().planned_pairs if p.agent == "router"]
    assert meta["evaluated_models"] == 0 and meta["not_evaluated"] == len(pairs)
    assert meta["pending"] == ", ".join(pairs)
    board = store.read_json(f"{layout.leaderboard_dir('router')}/leaderboard.json")
    assert board["best"] == {} and [r["evaluated"] for r in board["rows"]] == [False] * len(pairs)
    assert "not evaluated" in store.read_text(f"{layout.leaderboard_dir('router')}/leaderboard.md")


def test_report_is_current_flags_a_stale_report(evaluated_store, models_home):
    store, _ = evaluated_store
    with FakeOpenAIServer([PAIR], gold_answers(router_benchmark())) as server:
        evaluate(store, OpenAICompatibleServer(base_url=server.base_url))
    write_benchmark(store, router_benchmark()[:3], version="bench-v2")
    job = dg.define_asset_job("check_report", selection=dg.AssetSelection.checks(
        dg.AssetCheckKey(REPORT_KEY, CURRENT_CHECK)), partitions_def=PAIR_PARTITIONS)
    defs = dg.Definitions(assets=[*UPSTREAM, *EVALUATION_ASSETS], asset_checks=EVALUATION_CHECKS, jobs=[job],
                          resources={"store": store, "inference": LocalGenerator()})
    # a check-only selection has no asset to take the partitions from: pass the partition as the run tag
    result = defs.resolve_job_def("check_report").execute_in_process(tags={"dagster/partition": PAIR})
    evaluation = result.get_asset_check_evaluations()[0]
    assert not evaluation.passed and "bench-v2" in evaluation.description


def test_think_blocks_are_stripped_before_scoring():
    from coursegpt_assets.defs.evaluation.report import strip_think

    assert strip_think('<think>\nplan it\n</think>\n{"route_plan": []}') == '{"route_plan": []}'
    assert strip_think('{"route_plan": []}') == '{"route_plan": []}'
    assert strip_think("<think> never closed") == "<think> never closed"


def test_a_sensor_requested_run_evaluates_the_adapter_it_names(evaluated_store, models_home):
    """new_adapter_sensor tags its run with the version it checked; latest.json may name another one."""
    from coursegpt_assets.core.names import ADAPTER_VERSION_TAG

    store, first = evaluated_store
    second = write_tiny_adapter(store, PAIR, models_home=models_home, steps=3, seed=1)
    store.write_json(layout.adapter_latest(PAIR), {"version": first})  # the copied-in one is not "latest"
    rows = router_benchmark()
    with FakeOpenAIServer([PAIR], gold_answers(rows)) as server:
        result = dg.materialize([*UPSTREAM, *EVALUATION_ASSETS, *EVALUATION_CHECKS], partition_key=PAIR,
                                resources={"store": store, "inference": OpenAICompatibleServer(
                                    base_url=server.base_url)},
                                selection=[REPORT_KEY], tags={ADAPTER_VERSION_TAG: second})
    assert result.success
    assert newest_report(store)["adapter_version"] == second != first

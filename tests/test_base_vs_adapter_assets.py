"""evaluation_report scores the base model too: locally with the adapter disabled on the same load, on an
OpenAI-compatible server's served base model, on the plan's Vertex base endpoint; cached per base model and
prompts (two adapter versions generate the base once); `adapter_beats_base` and the not-measured paths."""

from __future__ import annotations

import dagster as dg
import pytest

from coursegpt_assets.core import layout
from coursegpt_assets.core.chat_templates import render_template
from coursegpt_assets.core.plan import PlanError, load_plan
from coursegpt_assets.defs.evaluation.base_model import BEATS_CHECK
from resources import local_generation
from resources.inference import LocalGenerator
from resources.openai_compatible import OpenAICompatibleServer
from resources.vertex_endpoint import VertexEndpoint
from tests.fakes.evaluation_store import BENCHMARK_ROWS, PAIR, router_benchmark
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.tiny_adapter import write_tiny_adapter
from tests.fakes.tuning_store import plan_copy
from tests.fakes.vertex_predict_server import FakeVertexPredictServer
from tests.test_evaluation import evaluate, gold_answers, newest_report

BASE_ID = "local/tiny-llama"  # the plan's hf_id of tiny-llama: what a server serves the base model as
PROSE = "I would search the web first."

EVERY_ROW = {"max_examples": BENCHMARK_ROWS}  # the smoke tier answers a subset per source otherwise


def beats_check(result) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == BEATS_CHECK)


def base_folders(store) -> list[str]:
    root = store.root + "/base_scores/router/tiny-llama"
    import os

    return sorted(os.listdir(root)) if os.path.isdir(root) else []


# -- locally: PEFT's disable_adapter on the same load ----------------------------------------------------------
def test_local_report_scores_the_base_model_with_the_adapter_disabled(evaluated_store, models_home):
    import torch
    from transformers import AutoModelForCausalLM

    from coursegpt_assets.core.plan import default_plan
    from coursegpt_assets.training.tiny_llama import ensure_base_model

    store, adapter_version = evaluated_store
    loads = []
    real_load = local_generation.load

    def counting_load(*args, **kwargs):
        loads.append(args[0])
        return real_load(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(local_generation, "load", counting_load)
        result = evaluate(store, LocalGenerator(models_home=str(models_home), batch_size=4),
                          config={"max_new_tokens": 8, **EVERY_ROW})
    # one load answers for the adapter and the base model (adapter disabled); held-out scoring loads once more
    assert result.success and len(loads) == 2
    report = newest_report(store)
    assert set(report["base"]["headline"]) == set(report["headline"]) and "overall" in report["base"]["metrics"]
    assert report["base"]["cache"]["reused"] is False
    assert set(report["delta"]) == set(report["headline"])
    assert set(report["ci"]) == {"adapter", "base", "delta"} and report["ci"]["adapter"]["json_valid"] is not None
    assert "## Base model vs adapter" in store.read_text(f"{layout.report_dir(PAIR, report['report_version'])}/report.md")

    # the base's answers are exactly what the plain base model (no PEFT at all) generates for the same prompts
    folder = layout.base_scores_dir("router", "tiny-llama", report["base"]["cache"]["key"])
    stored = store.read_json(f"{folder}/{layout.BASE_SCORES_FILE}")
    assert stored["proof"]["kind"] == "adapter_disabled" and stored["samples"] == BENCHMARK_ROWS
    base_answers = [p["completion"] for p in store.read_jsonl(f"{folder}/predictions.jsonl")]
    adapter_dir = store.local_dir(layout.adapter_dir(PAIR, adapter_version), store.root + "-cache")
    base_path = ensure_base_model("tiny-llama", default_plan(), home=models_home)
    loaded = real_load(base_path, adapter_dir, device="cpu", dtype="float32", end_of_turn="<|end|>")
    loaded.model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()
    from coursegpt_assets.agents import get_agent

    template = (adapter_dir / "chat_template.jinja").read_text()
    prompts = [render_template(template, get_agent("router").benchmark_messages(r),
                               bos_token=loaded.tokenizer.bos_token or "", add_generation_prompt=True)
               for r in router_benchmark()]
    plain, _, _ = local_generation.generate(loaded, prompts, max_new_tokens=8, batch_size=4)
    assert base_answers == plain

    check = beats_check(result)
    assert check.severity == dg.AssetCheckSeverity.WARN
    meta = {k: v.value for k, v in check.metadata.items()}
    assert meta["metric"] == "json_valid" and meta["adapter"] == report["headline"]["json_valid"]
    assert meta["base"] == report["base"]["headline"]["json_valid"]
    materialization = result.asset_materializations_for_node("evaluation_report")[0]
    assert materialization.metadata["base_measured"].value is True
    assert materialization.metadata["base/json_valid"].value == report["base"]["headline"]["json_valid"]


def test_two_adapter_versions_of_a_pair_generate_the_base_answers_once(evaluated_store, models_home):
    store, first = evaluated_store
    calls = []
    real_generate = local_generation.generate

    def counting_generate(*args, **kwargs):
        calls.append(1)
        return real_generate(*args, **kwargs)

    inference = LocalGenerator(models_home=str(models_home), batch_size=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(local_generation, "generate", counting_generate)
        assert evaluate(store, inference, config={"max_new_tokens": 8, **EVERY_ROW}).success
        one = newest_report(store)
        assert len(calls) == 2  # the adapter, then the base model
        second = write_tiny_adapter(store, PAIR, models_home=models_home, steps=3, seed=1)
        assert evaluate(store, inference, config={"max_new_tokens": 8, **EVERY_ROW}).success
        two = newest_report(store)
    assert len(calls) == 3  # the second adapter only: the base model's scores came from the cache
    assert (one["adapter_version"], two["adapter_version"]) == (first, second)
    assert two["base"]["cache"]["reused"] is True and two["base"]["cache"]["key"] == one["base"]["cache"]["key"]
    assert two["base"]["headline"] == one["base"]["headline"] and base_folders(store) == [one["base"]["cache"]["key"]]
    # another token budget asks the base model something else: scored again, under another key
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(local_generation, "generate", counting_generate)
        assert evaluate(store, inference, config={"max_new_tokens": 6, **EVERY_ROW}).success
    assert len(calls) == 5 and len(base_folders(store)) == 2


# -- an OpenAI-compatible server ---------------------------------------------------------------------------
def adapter_gold_base_prose(rows):
    gold = gold_answers(rows)
    return lambda model, prompt: gold(model, prompt) if model == PAIR else PROSE


def test_server_backend_asks_the_served_base_model_the_same_prompts(evaluated_store):
    store, _ = evaluated_store
    rows = router_benchmark()
    with FakeOpenAIServer([PAIR, BASE_ID], adapter_gold_base_prose(rows)) as server:
        result = evaluate(store, OpenAICompatibleServer(base_url=server.base_url), config=EVERY_ROW)
        sent = {m: sorted(r["body"]["prompt"] for r in server.requests  # echo: the held-out perplexity's
                          if r["body"]["model"] == m and not r["body"].get("echo"))
                for m in (PAIR, BASE_ID)}
    assert result.success
    assert len(sent[BASE_ID]) == BENCHMARK_ROWS and sent[BASE_ID] == sent[PAIR]
    report = newest_report(store)
    assert report["headline"]["json_valid"] == 1.0 and report["base"]["headline"]["json_valid"] == 0.0
    assert report["delta"]["json_valid"] == 1.0 and report["ci"]["delta"]["json_valid"] == [1.0, 1.0]
    assert report["base"]["model"] == BASE_ID
    check = beats_check(result)
    assert check.passed and "(significant)" in check.description
    assert check.metadata["delta_ci_low"].value == 1.0


def test_a_server_without_the_base_model_reports_it_not_measured_and_the_check_warns(evaluated_store):
    store, _ = evaluated_store
    with FakeOpenAIServer([PAIR], adapter_gold_base_prose(router_benchmark())) as server:
        result = evaluate(store, OpenAICompatibleServer(base_url=server.base_url), config=EVERY_ROW)
        assert {r["body"]["model"] for r in server.requests if not r["body"].get("echo")} == {PAIR}
    assert result.success
    reason = newest_report(store)["base"]["not_measured"]
    assert f"does not serve the base model '{BASE_ID}'" in reason and "base_model_name" in reason
    check = beats_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN and "not measured" in check.description
    assert result.asset_materializations_for_node("evaluation_report")[0].metadata["base_measured"].value is False


# -- Vertex AI: the plan's base-model endpoint -----------------------------------------------------------------
ENDPOINT_ID, BASE_ENDPOINT_ID = "4455667788", "9988776655"


@pytest.fixture
def vertex_env(monkeypatch):
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")


def _vertex(server) -> VertexEndpoint:
    return VertexEndpoint(endpoints={PAIR: ENDPOINT_ID}, project="p", location="us-central1",
                          api_endpoint=server.endpoint, credentials="anonymous", instances_per_request=4)


@pytest.fixture
def plan_with_base_endpoint(tmp_path, monkeypatch):
    """The shipped plan with a Vertex base endpoint for tiny-llama; the cached plan is dropped afterwards."""
    from coursegpt_assets.core.plan import default_plan

    plan_copy(tmp_path / "plan.yaml", lambda raw: raw["base_models"]["tiny-llama"].update(
        vertex_base_endpoint=BASE_ENDPOINT_ID), monkeypatch=monkeypatch)
    yield
    monkeypatch.delenv("COURSEGPT_PLAN")
    default_plan.cache_clear()


def test_vertex_scores_the_base_model_on_the_endpoint_the_plan_names(evaluated_store, vertex_env,
                                                                     plan_with_base_endpoint):
    store, _ = evaluated_store
    gold = gold_answers(router_benchmark())
    with FakeVertexPredictServer(lambda prompt: gold(PAIR, prompt)) as server:
        server.add_endpoint(ENDPOINT_ID)
        base_name = server.add_endpoint(BASE_ENDPOINT_ID, deployed_model_id="77", predict=lambda prompt: PROSE)
        result = evaluate(store, _vertex(server), config=EVERY_ROW)
        base_prompts = [i["prompt"] for b in server.predict_bodies for i in b["instances"]]
    assert result.success and len(base_prompts) == 2 * BENCHMARK_ROWS
    report = newest_report(store)
    assert report["headline"]["json_valid"] == 1.0 and report["base"]["headline"]["json_valid"] == 0.0
    stored = store.read_json(f"{layout.base_scores_dir('router', 'tiny-llama', report['base']['cache']['key'])}/"
                             f"{layout.BASE_SCORES_FILE}")
    assert stored["proof"]["endpoint"] == base_name and stored["proof"]["deployed_models"][0]["deployed_model_id"] == "77"
    assert beats_check(result).passed


def test_vertex_without_a_base_endpoint_reports_the_base_not_measured(evaluated_store, vertex_env):
    store, _ = evaluated_store
    gold = gold_answers(router_benchmark())
    with FakeVertexPredictServer(lambda prompt: gold(PAIR, prompt)) as server:
        server.add_endpoint(ENDPOINT_ID)
        result = evaluate(store, _vertex(server), config=EVERY_ROW)
    assert result.success
    reason = newest_report(store)["base"]["not_measured"]
    assert "base_models.tiny-llama.vertex_base_endpoint" in reason
    assert not beats_check(result).passed


def test_the_plan_refuses_a_base_endpoint_that_is_no_endpoint(tmp_path):
    path = plan_copy(tmp_path / "plan.yaml", lambda raw: raw["base_models"]["llama31-8b"].update(
        vertex_base_endpoint="my endpoint"))
    with pytest.raises(PlanError, match=r"base_models\.llama31-8b\.vertex_base_endpoint"):
        load_plan(path)
    for good in ("1234567890", "projects/p/locations/us-central1/endpoints/42"):
        path = plan_copy(tmp_path / "plan.yaml", lambda raw, good=good: raw["base_models"]["llama31-8b"].update(
            vertex_base_endpoint=good))
        assert load_plan(path).base_models["llama31-8b"].vertex_base_endpoint == good


# -- leaderboard and model card ----------------------------------------------------------------------------
def _compared_report(pair: str, version: str, adapter_rows: list[float], base_rows: list[float] | str) -> dict:
    from coursegpt_assets.scoring.bootstrap import row_mean
    from coursegpt_assets.scoring.comparison import comparison
    from tests.test_evaluation import fake_report

    headline = {"json_valid": row_mean(adapter_rows)}
    base = base_rows if isinstance(base_rows, str) else {
        "metrics": {"overall": {"json_valid": row_mean(base_rows)}}, "headline": {"json_valid": row_mean(base_rows)},
        "per_row": {"json_valid": base_rows}}
    return {**fake_report(pair, version, headline, samples=len(adapter_rows)),
            **comparison(headline, {"json_valid": adapter_rows}, base, seed=42)}


def test_leaderboard_shows_base_adapter_delta_and_flags_what_is_not_significant(store):
    from tests.test_evaluation import leaderboard_run, write_report

    write_report(store, _compared_report("router__llama31-8b", "v1", [1.0] * 18 + [0.0] * 2, [1.0] * 4 + [0.0] * 16))
    write_report(store, _compared_report("router__gemma3-27b", "v2", [1.0, 0.0] * 10, [0.0, 1.0] * 10))
    write_report(store, _compared_report("router__qwen3-32b", "v3", [1.0] * 20, "no vertex_base_endpoint"))
    result = leaderboard_run(store)
    folder = layout.leaderboard_dir("router")
    markdown = store.read_text(f"{folder}/leaderboard.md")
    assert "## Base model vs adapter" in markdown
    clear = next(line for line in markdown.splitlines() if line.startswith("| llama31-8b | json_valid |"))
    assert "| 0.2000 | 0.9000 | +0.7000 |" in clear and clear.endswith("| significant |")
    noise = next(line for line in markdown.splitlines() if line.startswith("| gemma3-27b | json_valid |"))
    assert "| 0.5000 | 0.5000 | +0.0000 |" in noise and noise.endswith("| not significant |")
    assert "| qwen3-32b | base model not measured: no vertex_base_endpoint |" in markdown
    board = store.read_json(f"{folder}/leaderboard.json")
    by_model = {r["base_model"]: r for r in board["base_vs_adapter"]}
    assert by_model["llama31-8b"]["significant"] and not by_model["gemma3-27b"]["significant"]
    assert by_model["qwen3-32b"]["not_measured"] == "no vertex_base_endpoint"
    meta = result.asset_materializations_for_node("leaderboard")[0].metadata
    assert meta["llama31-8b/json_valid/delta"].value == pytest.approx(0.7)


def test_the_card_body_compares_base_and_adapter_and_the_model_index_holds_the_adapters_numbers():
    from huggingface_hub import ModelCard

    from coursegpt_assets.cards.builder import build_card, inputs_from_plan
    from coursegpt_assets.cards.validation import validate_card
    from coursegpt_assets.core.plan import default_plan
    from tests.fakes.publish_artifacts import (
        scored_router_report,
        splits_manifest,
        training_summary,
        tuning_manifest,
    )

    pair = "router__tiny-llama"
    report, markdown = scored_router_report(pair)
    compared = _compared_report(pair, "v1", [1.0] * 18 + [0.0] * 2, [1.0] * 4 + [0.0] * 16)
    report.update(headline=compared["headline"], **{k: compared[k] for k in ("base", "delta", "ci", "bootstrap")})

    def card(report: dict) -> str:
        return build_card(inputs_from_plan(
            default_plan(), pair, repo_id="org/router-tiny-llama-peft", summary=training_summary(pair, "/tmp/base"),
            report=report, report_markdown=markdown, tuning_manifest=tuning_manifest(pair),
            splits_manifest=splits_manifest("router")))

    text = card(report)
    assert validate_card(text) == []
    body = ModelCard(text).text
    assert "### Base model vs adapter" in body
    assert "| json_valid | 0.2000 | 0.9000 | +0.7000 | " in body
    assert "1000 resamples of the benchmark rows, seed 42" in body
    row = next(line for line in body.splitlines() if line.startswith("| json_valid | 0.2000"))
    assert row.endswith("| significant |") and row.count("[") == 3
    values = {r.metric_type: r.metric_value for r in ModelCard(text).data.eval_results}
    assert values == {"json_valid": 0.9}  # the adapter's number; the base's is in the body only

    report["base"] = {"not_measured": "no vertex_base_endpoint for base model tiny-llama"}
    assert "Base model not measured: no vertex_base_endpoint for base model tiny-llama." in ModelCard(card(report)).text

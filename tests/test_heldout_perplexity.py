"""Held-out perplexity: the masked computation against a hand computation on the tiny model, the report,
metadata, leaderboard and card, the OpenAI-compatible echo + logprobs path and the Vertex "not measured"."""

from __future__ import annotations

import math

import pytest

from coursegpt_assets.agents import get_agent
from coursegpt_assets.cards.builder import build_card, inputs_from_plan
from coursegpt_assets.cards.validation import validate_card
from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.scoring.leaderboard import leaderboard_markdown, leaderboard_rows
from coursegpt_assets.scoring.perplexity import (
    TokenScores,
    completion_logprob,
    held_out_split,
    perplexity_result,
    scored_texts,
)
from coursegpt_assets.training.labels import through_end_of_turn
from resources.inference import LocalGenerator
from resources.openai_compatible import OpenAICompatibleServer
from tests.fakes.evaluation_store import BENCHMARK_ROWS, HELD_OUT_ROWS, PAIR, write_held_out
from tests.fakes.openai_server import FakeOpenAIServer, echo_rule, echo_tokens
from tests.fakes.publish_artifacts import (
    scored_router_report,
    splits_manifest,
    training_summary,
    tuning_manifest,
)
from tests.fakes.tiny_adapter import write_tiny_adapter
from tests.fakes.tuning_store import valid_router_records
from tests.test_evaluation import evaluate, gold_answers, newest_report, router_benchmark

EOT = "<|end|>"


def held_out_records(count: int = HELD_OUT_ROWS) -> list[dict]:
    return valid_router_records()[BENCHMARK_ROWS:BENCHMARK_ROWS + count]


def tiny_texts(count: int = 3) -> list[tuple[str, str]]:
    return scored_texts(get_agent("router"), held_out_records(count), "tiny", think=False)


# -- pure logic ------------------------------------------------------------------------------------------------
def test_the_held_out_split_is_test_else_validation():
    assert held_out_split({"train": 9, "validation": 2, "test": 1}) == "test"
    assert held_out_split({"train": 9, "validation": 2, "test": 0}) == "validation"
    assert held_out_split({"train": 9, "validation": 0, "test": 0}) is None


def test_echo_logprobs_count_the_completion_tokens_only():
    # "P " is the prompt (offsets 0-1), "ab cd" the completion, "zz" a token the server generated after it
    tokens, logprobs, offsets = ["P ", "ab ", "cd", "zz"], [None, -1.0, -2.0, -5.0], [0, 2, 5, 7]
    assert completion_logprob(tokens, logprobs, offsets, 2, 7) == (-3.0, 2)
    with pytest.raises(ValueError, match="no finite log-probability"):
        completion_logprob(tokens, logprobs, offsets, 0, 7)  # the first token has none
    with pytest.raises(ValueError, match="differ in length"):
        completion_logprob(tokens, logprobs[:2], offsets, 2, 7)


def test_perplexity_is_the_exponent_of_the_mean_token_nll():
    result = perplexity_result("test", 3, TokenScores(adapter_nll=20.0, base_nll=40.0, tokens=10), limit=16,
                               backend="x")
    assert result["adapter"] == pytest.approx(math.exp(2.0)) and result["base"] == pytest.approx(math.exp(4.0))
    assert (result["split"], result["rows"], result["tokens"]) == ("test", 3, 10)
    assert "not_measured" in perplexity_result("test", 0, TokenScores(0.0, 0.0, 0), limit=None, backend="x")


# -- the masked computation on the tiny model ----------------------------------------------------------------------
def hand_nll(model, tokenizer, prompt: str, completion: str, max_length: int) -> tuple[float, int]:
    """-sum log p(completion token | everything before it), one unpadded sequence at a time."""
    import torch

    completion = through_end_of_turn(completion, EOT)
    prompt_ids = tokenizer(text=prompt)["input_ids"]
    ids = tokenizer(text=prompt + completion)["input_ids"]
    assert ids[:len(prompt_ids)] == prompt_ids  # the tiny tokenizer splits at the prompt's final newline
    ids = ids[:max_length]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    positions = range(len(prompt_ids), len(ids))
    return -sum(float(logprobs[t - 1, ids[t]]) for t in positions), len(positions)


def test_score_completions_matches_a_hand_computation_for_adapter_and_base(store, models_home):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from coursegpt_assets.training.tiny_llama import ensure_base_model
    from resources import local_generation as lg

    version = write_tiny_adapter(store, PAIR, models_home=models_home, steps=3)
    adapter_dir = store.local_dir(layout.adapter_dir(PAIR, version), models_home / "cache")
    base_path = ensure_base_model("tiny-llama", default_plan(), home=models_home)
    texts = tiny_texts(3)
    loaded = lg.load(base_path, adapter_dir, device="cpu", dtype="float32", end_of_turn=EOT)
    lengths = [len(loaded.tokenizer(text=p + c)["input_ids"]) for p, c in texts]
    assert len(set(lengths)) > 1  # rows of different lengths: the batch is padded
    max_length = sorted(lengths)[1] - 5  # cuts two of the three rows
    scores = lg.score_completions(loaded, texts, end_of_turn=EOT, max_length=max_length, batch_size=2)
    lg.release(loaded)

    base = AutoModelForCausalLM.from_pretrained(base_path).eval()  # loaded alone: an independent base
    base_hand = [hand_nll(base, loaded.tokenizer, p, c, max_length) for p, c in texts]
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), str(adapter_dir)).eval()
    adapter_hand = [hand_nll(adapted, loaded.tokenizer, p, c, max_length) for p, c in texts]
    assert scores.tokens == sum(n for _, n in base_hand)
    assert scores.truncated_rows == sum(n > max_length for n in lengths) == 2
    assert scores.base_nll == pytest.approx(sum(v for v, _ in base_hand), rel=1e-4)
    assert scores.adapter_nll == pytest.approx(sum(v for v, _ in adapter_hand), rel=1e-4)
    assert scores.adapter_nll != pytest.approx(scores.base_nll, rel=1e-4)


# -- evaluation_report --------------------------------------------------------------------------------------------
def test_the_report_measures_held_out_perplexity_of_adapter_and_base(evaluated_store, models_home):
    store, _ = evaluated_store
    inference = LocalGenerator(models_home=str(models_home), batch_size=4)
    result = evaluate(store, inference, config={"max_new_tokens": 4})
    report = newest_report(store)
    ppl = report["perplexity"]
    assert (ppl["split"], ppl["rows"], ppl["backend"]) == ("test", HELD_OUT_ROWS, "transformers+peft")
    assert ppl["tokens"] > 0 and ppl["max_rows"] == default_plan().smoke.max_perplexity_rows
    assert 1.0 < ppl["adapter"] != ppl["base"] > 1.0
    meta = result.asset_materializations_for_node("evaluation_report")[0].metadata
    assert meta["perplexity_adapter"].value == pytest.approx(ppl["adapter"])
    assert meta["perplexity_base"].value == pytest.approx(ppl["base"])
    assert meta["perplexity_tokens"].value == ppl["tokens"]
    markdown = store.read_text(f"{layout.report_dir(PAIR, report['report_version'])}/report.md")
    assert "## Held-out perplexity" in markdown and f"{ppl['rows']} test rows" in markdown

    # fewer rows is another report version; without a test split, the validation split is scored
    evaluate(store, inference, config={"max_new_tokens": 4, "max_perplexity_rows": 2})
    fewer = newest_report(store)
    assert fewer["report_version"] != report["report_version"] and fewer["perplexity"]["rows"] == 2
    write_held_out(store, held_out_records(3), split="validation")
    evaluate(store, inference, config={"max_new_tokens": 4})
    assert newest_report(store)["perplexity"]["split"] == "validation"
    assert newest_report(store)["perplexity"]["rows"] == 3


def test_without_splits_the_report_names_dataset_splits(store, models_home):
    from tests.conftest import step_failure_text
    from tests.fakes.evaluation_store import write_benchmark

    write_benchmark(store, router_benchmark())
    write_tiny_adapter(store, PAIR, models_home=models_home, steps=3)
    result = evaluate(store, LocalGenerator(models_home=str(models_home)), raise_on_error=False)
    assert "materialise dataset_splits for router first" in step_failure_text(result)


def test_an_openai_compatible_server_scores_echoed_logprobs_for_adapter_and_base(evaluated_store):
    store, _ = evaluated_store
    base_name = default_plan().base_models["tiny-llama"].hf_id
    with FakeOpenAIServer([PAIR, base_name], gold_answers(router_benchmark())) as server:
        assert evaluate(store, OpenAICompatibleServer(base_url=server.base_url)).success
        scoring = [r["body"] for r in server.requests if r["body"].get("echo")]
    ppl = newest_report(store)["perplexity"]
    assert ppl["backend"] == "openai-compatible" and ppl["rows"] == HELD_OUT_ROWS
    assert sorted({b["model"] for b in scoring}) == sorted([PAIR, base_name]) and len(scoring) == 2 * HELD_OUT_ROWS
    assert all(b["logprobs"] == 1 and b["max_tokens"] == 0 for b in scoring)
    # the expected numbers, from the fake's rule over the completion tokens of what was sent
    expected, tokens = {}, 0
    for model in (PAIR, base_name):
        total, count = 0.0, 0
        for prompt, completion in tiny_texts(HELD_OUT_ROWS):
            sent = prompt.removeprefix("<s>") + through_end_of_turn(completion, EOT)
            assert any(b["prompt"] == sent and b["model"] == model for b in scoring)  # no BOS: the server adds it
            start = len(prompt.removeprefix("<s>"))
            picked = [echo_rule(model, t) for t, offset in echo_tokens(sent) if offset >= start]
            total, count = total + sum(picked), count + len(picked)
        expected[model], tokens = math.exp(-total / count), count
    assert ppl["tokens"] == tokens
    assert ppl["adapter"] == pytest.approx(expected[PAIR]) and ppl["base"] == pytest.approx(expected[base_name])
    assert ppl["adapter"] != pytest.approx(ppl["base"])


def test_a_server_that_does_not_serve_the_base_model_leaves_perplexity_not_measured(evaluated_store):
    store, _ = evaluated_store
    with FakeOpenAIServer([PAIR], gold_answers(router_benchmark())) as server:
        assert evaluate(store, OpenAICompatibleServer(base_url=server.base_url)).success
    report = newest_report(store)
    assert report["headline"]["json_valid"] == 1.0  # the generation scores are unaffected
    reason = report["perplexity"]["not_measured"]
    assert "'local/tiny-llama'" in reason and "model local/tiny-llama not found" in reason
    assert "set OpenAICompatibleServer.base_model_name" in reason


def test_a_vertex_endpoint_reports_perplexity_as_not_measured(evaluated_store):
    from tests.fakes.vertex_predict_server import FakeVertexPredictServer
    from tests.test_vertex_endpoint import ENDPOINT_ID, gold_predictor, vertex

    store, _ = evaluated_store
    with FakeVertexPredictServer(gold_predictor(router_benchmark(), [])) as server:
        server.add_endpoint(ENDPOINT_ID)
        result = evaluate(store, vertex(server))
    ppl = newest_report(store)["perplexity"]
    assert ppl == {"not_measured": "the vertex-endpoint backend returns generated text only, no token "
                                   "log-probabilities"}
    assert "not measured" in result.asset_materializations_for_node("evaluation_report")[0].metadata[
        "perplexity"].value


# -- leaderboard and model card ----------------------------------------------------------------------------------
MEASURED = {"split": "test", "rows": 3, "tokens": 1129, "adapter": 1232.5, "base": 2522.25}


def test_the_leaderboard_shows_base_and_adapter_perplexity_per_model():
    report, _ = scored_router_report("router__llama31-8b")
    rows = leaderboard_rows({"router__llama31-8b": {**report, "perplexity": MEASURED},
                             "router__tiny-llama": {**report, "perplexity": {"not_measured": "no logprobs"}},
                             "router__qwen3-32b": None})
    text = leaderboard_markdown("router", rows, {}, [])
    assert "| llama31-8b | test | 3 | 1129 | 2522.2500 | 1232.5000 | -51.1% |" in text
    assert "| tiny-llama | not measured: no logprobs |" in text
    assert "qwen3-32b | not evaluated" in text


def test_the_card_carries_the_adapters_perplexity_in_the_model_index_and_both_in_the_body():
    pair = "router__tiny-llama"
    report, report_md = scored_router_report(pair)
    manifest = {**splits_manifest("router"), "sha256": {"test": "c" * 64}}
    inputs = inputs_from_plan(default_plan(), pair, repo_id=f"org/{pair}", summary=training_summary(pair, "/tmp/b"),
                              report={**report, "perplexity": MEASURED}, report_markdown=report_md,
                              tuning_manifest=tuning_manifest(pair), splits_manifest=manifest)
    card = build_card(inputs)
    assert validate_card(card) == []
    from huggingface_hub import ModelCard

    results = {r.metric_type: r for r in ModelCard(card).data.eval_results}
    assert results["perplexity"].metric_value == MEASURED["adapter"]
    assert results["perplexity"].dataset_split == "test" and results["perplexity"].dataset_revision == "c" * 64
    assert "| Perplexity, base model | 2522.25 |" in card and "| Perplexity, adapter | 1232.5 |" in card
    unmeasured = build_card(inputs_from_plan(
        default_plan(), pair, repo_id=f"org/{pair}", summary=training_summary(pair, "/tmp/b"),
        report={**report, "perplexity": {"not_measured": "no logprobs"}}, report_markdown=report_md,
        tuning_manifest=tuning_manifest(pair), splits_manifest=manifest))
    assert "perplexity" not in {r.metric_type for r in ModelCard(unmeasured).data.eval_results}
    assert "| Held-out perplexity | not measured: no logprobs |" in unmeasured

"""The evaluation's token budget: sized from the benchmark's reference answers, recorded in the report,
and a WARN check when answers stop at it."""

from __future__ import annotations

import json
import math

from coursegpt_assets.agents import get_agent
from coursegpt_assets.core.tokens import estimate_tokens
from coursegpt_assets.defs.evaluation.report import BUDGET_CHECK, budget_result
from coursegpt_assets.scoring.token_budget import (
    EXTRA_TOKENS,
    FLOOR,
    MARGIN,
    from_references,
    tokenizer_counter,
)
from resources.inference import LocalGenerator
from tests.conftest import SHARED_DIR, requires_shared
from tests.test_evaluation import evaluate, newest_report


def test_a_margin_over_the_longest_reference_answer():
    budget = from_references(["a" * 10, "b" * 2000, None], count=len)
    assert budget.max_new_tokens == math.ceil(2000 * MARGIN) + EXTRA_TOKENS
    assert budget.longest_reference_tokens == 2000 and budget.counted_with == "tokenizer"
    assert "longest reference answer 2000 tokens (tokenizer)" in budget.source


def test_short_or_missing_references_get_the_floor():
    short = from_references(["x" * 40], count=len)
    assert short.max_new_tokens == FLOOR and "raised to the floor" in short.source
    none = from_references([None, ""], count=len)
    assert none.max_new_tokens == FLOOR and "no reference answers" in none.source


def test_without_a_tokenizer_the_byte_estimate_counts():
    text = "数" * 3000  # 9,000 bytes
    budget = from_references([text], count=None)
    assert budget.counted_with == "estimate" and budget.longest_reference_tokens == estimate_tokens(text)


def test_the_adapters_own_tokenizer_counts(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"plan": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    count = tokenizer_counter(tmp_path)
    assert count("plan plan other") == 3
    assert tokenizer_counter(tmp_path / "missing") is None


@requires_shared
def test_real_router_plans_get_more_than_the_old_1024_tokens():
    rows = [json.loads(line) for line in (SHARED_DIR / "data/router/router_benchmark_hard.jsonl").open()]
    router = get_agent("router")
    budget = from_references((router.reference_answer(r) for r in rows), count=None)
    longest = max(estimate_tokens(r["completion"]) for r in rows)
    assert longest > 1024 and budget.max_new_tokens == math.ceil(longest * MARGIN) + EXTRA_TOKENS


def _report(cut: int, samples: int) -> dict:
    return {"inference": {"samples": samples, "max_new_tokens": 1656, "finish_reasons": {"length": cut, "stop": samples - cut},
                          "token_budget": {"source": "longest reference answer 1312 tokens (tokenizer) x 1.25 + 16"}}}


def test_the_check_warns_when_answers_stop_at_the_budget():
    ok = budget_result(_report(cut=1, samples=40))
    assert ok.passed and ok.check_name == BUDGET_CHECK and "1 of 40 answers (2%)" in ok.description
    cut = budget_result(_report(cut=12, samples=40))
    assert not cut.passed and cut.severity.value == "WARN"
    assert "12 of 40 answers (30%) stopped at the 1656-token budget" in cut.description
    assert cut.metadata["answers_at_budget"].value == 12


def test_the_report_records_its_budget_and_the_check_runs(evaluated_store, models_home):
    store, _ = evaluated_store
    result = evaluate(store, LocalGenerator(models_home=str(models_home), batch_size=4))
    inference = newest_report(store)["inference"]
    assert inference["token_budget"]["source"].startswith("smoke.max_new_tokens")
    assert inference["answers_at_budget"] == inference["finish_reasons"].get("length", 0)
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == BUDGET_CHECK]
    assert evaluation.passed == (inference["answers_at_budget"] <= 0.05 * inference["samples"])

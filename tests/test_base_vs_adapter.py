"""Base vs adapter, the pure parts: per-row scores whose mean is the headline, the seeded paired bootstrap,
the comparison entries of report.json, and the `adapter_beats_base` verdict."""

from __future__ import annotations

import json
import random

import pytest

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.code_evaluation import pass_at_1_per_row
from coursegpt_assets.scoring.bootstrap import excludes_zero, paired_bootstrap, resample_indices, row_mean
from coursegpt_assets.scoring.comparison import (
    beats_base,
    comparison,
    comparison_markdown,
    comparison_rows,
    deltas,
    primary_metric,
)
from tests.fakes.evaluation_store import router_benchmark


# -- per-row scores ----------------------------------------------------------------------------------------
def _broken_router_answers(rows: list[dict]) -> list[str]:
    """Gold plans, one in three truncated (invalid JSON), one in four with a route step dropped."""
    out = []
    for i, row in enumerate(rows):
        gold = json.loads(row["completion"])
        if i % 4 == 1:
            gold["route_plan"] = gold["route_plan"][:-1]
        text = json.dumps(gold)
        out.append(text[:-5] if i % 3 == 2 else text)
    return out


def test_router_per_row_scores_average_to_the_headline_over_the_rows_that_recorded_them():
    rows = router_benchmark()
    score = get_agent("router").score(rows, _broken_router_answers(rows))
    assert set(score.per_row) == set(score.headline)
    assert all(len(values) == len(rows) for values in score.per_row.values())
    assert score.per_row["json_valid"].count(0.0) == sum(1 for i in range(len(rows)) if i % 3 == 2)
    # an unparsed row records no route metric (the seed's denominator), so its value is None, not 0
    assert score.per_row["route_plan_exact"][2] is None
    for metric, value in score.headline.items():
        assert row_mean(score.per_row[metric]) == pytest.approx(value), metric
    assert 0 < score.headline["route_plan_exact"] < 1


def test_math_per_row_scores_average_to_the_headline():
    rows = [{"id": f"m{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i), "file": "t"} for i in range(8)]
    answers = [f"The answer is \\boxed{{{2 * i if i % 3 else i + 1}}}" for i in range(8)]
    score = get_agent("math").score(rows, answers)
    for metric, value in score.headline.items():
        assert row_mean(score.per_row[metric]) == pytest.approx(value), metric
    assert score.per_row["accuracy"] == [float(bool(i % 3)) for i in range(8)]


def test_code_pass_at_1_per_row_is_the_share_of_each_rows_samples_that_passed():
    samples = [{"index": 0, "passed": True}, {"index": 1, "passed": False}, {"index": 2, "passed": True},
               {"index": 2, "passed": False}]
    assert pass_at_1_per_row(samples, 4) == [1.0, 0.0, 0.5, None]


# -- the bootstrap -----------------------------------------------------------------------------------------
def _scores(n: int, p: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < p) for _ in range(n)]


def test_the_bootstrap_is_seeded():
    adapter, base = {"acc": _scores(80, 0.6, 1)}, {"acc": _scores(80, 0.5, 2)}
    first = paired_bootstrap(adapter, base, seed=42)
    assert first == paired_bootstrap(adapter, base, seed=42)
    assert first != paired_bootstrap(adapter, base, seed=43)
    assert (resample_indices(10, seed=1) == resample_indices(10, seed=1)).all()
    assert resample_indices(10, seed=1).shape == (1000, 10)


@pytest.mark.parametrize("seed", range(5))
def test_every_interval_contains_its_point_estimate(seed):
    adapter, base = {"acc": _scores(60, 0.7, seed)}, {"acc": _scores(60, 0.4, seed + 100)}
    ci = paired_bootstrap(adapter, base, seed=seed)
    point = {"adapter": row_mean(adapter["acc"]), "base": row_mean(base["acc"])}
    point["delta"] = point["adapter"] - point["base"]
    for side, value in point.items():
        low, high = ci[side]["acc"]
        assert low <= value <= high and low < high, (side, low, value, high)


def test_identical_adapter_and_base_give_a_delta_interval_of_exactly_zero():
    values = {"acc": _scores(50, 0.5, 3), "partial": [None if i % 5 == 0 else i / 50 for i in range(50)]}
    ci = paired_bootstrap(values, values, seed=0)
    assert ci["delta"] == {"acc": [0.0, 0.0], "partial": [0.0, 0.0]}
    assert ci["adapter"] == ci["base"]
    assert not excludes_zero(ci["delta"]["acc"])


def test_a_large_clear_difference_excludes_zero_and_a_coin_flip_does_not():
    clear = paired_bootstrap({"acc": [1.0] * 45 + [0.0] * 5}, {"acc": [0.0] * 45 + [1.0] * 5}, seed=0)
    low, high = clear["delta"]["acc"]
    assert 0 < low <= 0.8 <= high and excludes_zero(clear["delta"]["acc"])
    noise = paired_bootstrap({"acc": [1.0, 0.0] * 10}, {"acc": [0.0, 1.0] * 10}, seed=0)
    assert not excludes_zero(noise["delta"]["acc"])


def test_pairing_narrows_the_delta_interval():
    """The same hard rows fail for both: resampling rows once for both sides cancels their difficulty."""
    hard = _scores(100, 0.5, 9)
    adapter = [1.0 if i % 10 == 0 else v for i, v in enumerate(hard)]  # the adapter fixes a few rows
    paired = paired_bootstrap({"acc": adapter}, {"acc": hard}, seed=0)["delta"]["acc"]
    assert excludes_zero(paired)  # unpaired, both ~[0.4, 0.6] intervals would overlap widely


def test_rows_without_a_value_are_left_out_and_a_metric_nobody_recorded_has_no_interval():
    ci = paired_bootstrap({"exact": [None, 1.0, None, 0.0] * 5, "never": [None] * 20}, None, seed=0)
    assert ci["adapter"]["never"] is None and ci["base"] == {} and ci["delta"] == {}
    low, high = ci["adapter"]["exact"]
    assert 0 <= low <= 0.5 <= high <= 1


def test_mismatched_row_counts_are_refused():
    with pytest.raises(ValueError, match="same rows"):
        paired_bootstrap({"acc": [1.0] * 5}, {"acc": [1.0] * 6}, seed=0)
    with pytest.raises(ValueError, match="different row counts"):
        paired_bootstrap({"a": [1.0] * 5, "b": [1.0] * 4}, None, seed=0)


# -- report.json's comparison and the check verdict -------------------------------------------------------
def _report(adapter: dict, base: dict | str, rows_adapter: dict, rows_base: dict | None = None) -> dict:
    base_scores = base if isinstance(base, str) else {"metrics": {"overall": base}, "headline": base,
                                                      "per_row": rows_base, "model": "m", "cache": None}
    return {"headline": adapter, "base_model_id": "m",
            **comparison(adapter, rows_adapter, base_scores, seed=42)}


def test_comparison_holds_base_delta_and_intervals_in_the_shared_shape():
    rows_a = {"acc": [1.0] * 18 + [0.0] * 2, "f1": [0.5] * 20}
    rows_b = {"acc": [1.0] * 4 + [0.0] * 16, "f1": [0.5] * 20}
    report = _report({"acc": 0.9, "f1": 0.5}, {"acc": 0.2, "f1": 0.5}, rows_a, rows_b)
    assert report["base"]["headline"] == {"acc": 0.2, "f1": 0.5} and "metrics" in report["base"]
    assert report["delta"] == pytest.approx({"acc": 0.7, "f1": 0.0})
    assert set(report["ci"]) == {"adapter", "base", "delta"}
    assert report["ci"]["delta"]["f1"] == [0.0, 0.0] and excludes_zero(report["ci"]["delta"]["acc"])
    assert report["bootstrap"]["resamples"] == 1000 and report["bootstrap"]["seed"] == 42
    table = {r["metric"]: r for r in comparison_rows(report)}
    assert table["acc"]["significant"] and not table["f1"]["significant"]
    markdown = "\n".join(comparison_markdown(report))
    assert "| acc | 0.2000 | 0.9000 | +0.7000 |" in markdown and "not significant" in markdown


def test_a_base_model_that_was_not_measured_says_why():
    report = _report({"acc": 0.9}, "no endpoint for the base model", {"acc": [1.0] * 9 + [0.0]})
    assert report["base"] == {"not_measured": "no endpoint for the base model"} and report["delta"] == {}
    assert report["ci"]["adapter"]["acc"] and report["ci"]["delta"] == {}
    assert comparison_rows(report) == []
    assert "Base model not measured: no endpoint for the base model." in comparison_markdown(report)
    passed, description, numbers = beats_base(report, "acc", frozenset())
    assert not passed and "not measured" in description and numbers["base"] is None


def test_deltas_skip_what_either_side_did_not_measure():
    assert deltas({"a": 0.5, "b": None, "c": 0.25}, {"a": 0.25, "b": 0.5}) == {"a": 0.25, "b": None, "c": None}


def test_beats_base_respects_lower_is_better_metrics():
    rows = {"err": [0.0] * 18 + [1.0] * 2}
    report = _report({"err": 0.1}, {"err": 0.6}, rows, {"err": [0.0] * 8 + [1.0] * 12})
    passed, description, numbers = beats_base(report, "err", frozenset({"err"}))
    assert passed and "lower is better" in description and "(significant)" in description
    assert numbers["delta_ci"][1] < 0
    assert not beats_base(report, "err", frozenset())[0]  # read as higher-is-better, 0.1 loses to 0.6


def test_an_equal_adapter_does_not_beat_its_base():
    rows = {"acc": [1.0, 0.0] * 10}
    report = _report({"acc": 0.5}, {"acc": 0.5}, rows, rows)
    passed, description, _ = beats_base(report, "acc", frozenset())
    assert not passed and "not significant" in description


def test_the_primary_metric_is_the_agents_first_headline_metric():
    assert primary_metric(get_agent("math").headline_metrics) == "accuracy"
    assert primary_metric(get_agent("code").headline_metrics) == "pass@1"

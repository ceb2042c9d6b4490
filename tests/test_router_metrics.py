"""Router scorer: gold-vs-gold is perfect, each perturbation moves exactly its metrics, seed denominators."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from coursegpt_assets.scoring.router_plans import (
    SEED_BUCKETS,
    load_gold_row,
    parse_lenient,
    parse_strict,
    score_sample,
)
from coursegpt_assets.scoring.router_report import score_router
from coursegpt_assets.scoring.router_thresholds import judge_thresholds, load_thresholds

FIXTURE = Path(__file__).parent / "fixtures" / "router_gold_small.jsonl"
SHARED = Path(__file__).resolve().parents[2] / "shared"
HARD = SHARED / "data" / "router" / "router_benchmark_hard.jsonl"

# Metrics that compare the prediction with the gold (perfect when prediction == gold).
COMPARATIVE_PERFECT = (
    "json_valid", "route_plan_exact", "route_length_match", "route_first_tool_match", "route_last_tool_match",
    "route_tool_precision", "route_tool_recall", "metrics_keys_match", "todo_covers_all_tools",
    "handoff_tools_covered", "length_ratio",
)


def _rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def _golds() -> list[dict]:
    return [load_gold_row(row) for row in _rows()]


def _only_sample(gold: dict, prediction) -> dict:
    return score_router([gold], [prediction], thresholds={})["metrics"]["overall"]


def test_gold_vs_gold_is_perfect_on_fixtures():
    rows = _rows()
    report = score_router(rows, [{"completion": row["completion"]} for row in rows])
    overall = report["metrics"]["overall"]
    assert overall["samples"] == len(rows)
    for name, value in overall.items():
        if name in ("samples", "total_token_count"):
            continue
        expected = 0.0 if name.startswith("length_ratio_") else 1.0
        assert value == expected, name
    assert report["lenient"] == report["metrics"]
    assert report["failure_examples"] == [] and report["error_samples"] == []
    assert report["parse"] == {"samples": 5, "strict_parsed": 5, "lenient_parsed": 5, "recovered_by_lenient": 0}


def test_seed_buckets_follow_gold_shape_and_categories_follow_rows():
    rows = _rows()
    report = score_router(rows, [row["completion"] for row in rows], thresholds={})
    samples = {name: bucket["samples"] for name, bucket in report["metrics"].items()}
    assert samples == {"overall": 5, "math_first": 2, "four_step": 2, "has_guidance": 1, "has_computation": 1, "advanced": 2}
    assert set(samples) <= {"overall", *SEED_BUCKETS}
    by_category = {name: bucket["samples"] for name, bucket in report["by_category"].items()}
    assert by_category == {"math_first": 2, "metrics_guidance": 1, "four_step": 2, "math_multi_pass": 2,
                           "metrics_computation": 1, "non_canonical_route": 1}
    # An explicit categories list overrides the rows' own.
    override = score_router(rows, [row["completion"] for row in rows], categories=[["x"]] * 5, thresholds={})
    assert {name: b["samples"] for name, b in override["by_category"].items()} == {"x": 5}


def test_retained_fields_only_counted_where_gold_has_them():
    rows = _rows()
    report = score_router(rows, [row["completion"] for row in rows], thresholds={})
    assert "primary_guidance_retained" in report["metrics"]["has_guidance"]
    assert "primary_guidance_retained" not in report["metrics"]["has_computation"]
    plain = _golds()[2]
    assert not any(key.endswith("_retained") for key in score_sample(plain, plain)[0])
    # Gold has guidance; prediction drops one field -> 0 for that field only.
    gold = _golds()[0]
    pred = copy.deepcopy(gold)
    del pred["metrics"]["secondary_guidance"]
    metrics, debug = score_sample(gold, pred)
    assert metrics["primary_guidance_retained"] is True
    assert metrics["secondary_guidance_retained"] is False
    assert metrics["metrics_keys_match"] is False
    assert debug["metrics_keys_pred"] == ["primary", "primary_guidance", "secondary"]


def test_reordered_plan_breaks_exactness_but_not_tool_sets():
    gold = _golds()[0]
    pred = copy.deepcopy(gold)
    pred["route_plan"] = list(reversed(pred["route_plan"]))
    metrics, debug = score_sample(gold, pred)
    assert metrics["route_plan_exact"] is False
    assert metrics["route_length_match"] is True
    assert metrics["route_first_tool_match"] is False and metrics["route_last_tool_match"] is False
    assert metrics["route_tool_precision"] == 1.0 and metrics["route_tool_recall"] == 1.0
    assert metrics["todo_tool_alignment"] == 1.0 and metrics["handoff_tools_covered"] is True
    assert debug["route_plan_pred"] == pred["route_plan"]


def test_dropped_tool_lowers_recall_only():
    gold = _golds()[2]  # /general-search, /code, /math
    pred = copy.deepcopy(gold)
    pred["route_plan"] = pred["route_plan"][:2]
    metrics, _ = score_sample(gold, pred)
    assert metrics["route_tool_recall"] == pytest.approx(2 / 3)
    assert metrics["route_tool_precision"] == 1.0
    assert metrics["route_length_match"] is False
    assert metrics["route_first_tool_match"] is True and metrics["route_last_tool_match"] is False
    # An extra tool lowers precision instead.
    pred = copy.deepcopy(gold)
    pred["route_plan"] = ["/vision(look)"] + pred["route_plan"]
    metrics, _ = score_sample(gold, pred)
    assert metrics["route_tool_precision"] == pytest.approx(3 / 4) and metrics["route_tool_recall"] == 1.0


def test_missing_keys_score_as_empty():
    gold = _golds()[1]
    pred = {key: value for key, value in gold.items() if key not in ("todo_list", "metrics", "handoff_plan", "acceptance_criteria")}
    metrics, _ = score_sample(gold, pred)
    assert metrics["json_valid"] is True
    assert metrics["todo_tool_alignment"] == 0.0 and metrics["todo_covers_all_tools"] is False
    assert metrics["metrics_keys_match"] is False
    assert metrics["metrics_primary_list"] is False and metrics["metrics_primary_nonempty"] is False
    assert metrics["primary_computation_retained"] is False
    assert metrics["handoff_tools_covered"] is False and metrics["handoff_router_qa"] is False
    assert metrics["acceptance_criteria_nonempty"] is False
    assert metrics["expected_artifacts_nonempty"] is True
    assert metrics["length_ratio"] < 0.9 and metrics["length_ratio_lt_0.9"] is True


def test_todo_alignment_follows_seed_rules():
    gold = _golds()[2]
    pred = copy.deepcopy(gold)
    # 4 items: /general-search ok, /vision not a gold tool, "router QA" ok, "/router:" is NOT ok in the seed
    # (the seed tests `"/router".startswith("router")`, which is false).
    pred["todo_list"] = ["- [ ] /general-search: find", "- [ ] /vision: look", "- [ ] router QA: approve", "- [ ] /router: review"]
    metrics, debug = score_sample(gold, pred)
    assert metrics["todo_tool_alignment"] == pytest.approx(2 / 4)
    assert metrics["todo_covers_all_tools"] is False
    assert debug["todo_list"] == pred["todo_list"]


def test_length_ratio_flags():
    gold = _golds()[3]
    pred = copy.deepcopy(gold)
    pred["route_rationale"] = gold["route_rationale"] + " " + "x" * len(json.dumps(gold, sort_keys=True))
    metrics, _ = score_sample(gold, pred)
    assert metrics["length_ratio"] > 1.25
    assert metrics["length_ratio_gt_1.1"] is True and metrics["length_ratio_gt_1.25"] is True
    assert metrics["length_ratio_lt_0.9"] is False


def test_invalid_json_counts_only_toward_json_valid():
    rows = _rows()
    golds = _golds()
    broken = copy.deepcopy(golds[1])
    broken["route_plan"] = broken["route_plan"][:1]
    predictions = [
        {"completion": rows[0]["completion"][:-3]},          # truncated JSON
        {"completion": json.dumps(broken)},                   # valid, wrong plan
        {"completion": "[1, 2, 3]"},                          # JSON but not an object
        rows[3]["completion"],
        golds[4],
    ]
    report = score_router(rows, predictions, thresholds={})
    overall = report["metrics"]["overall"]
    assert overall["samples"] == 5
    assert overall["json_valid"] == pytest.approx(3 / 5)
    # Every other metric averages over the 3 parsed samples only.
    assert overall["route_plan_exact"] == pytest.approx(2 / 3)
    assert overall["route_tool_recall"] == pytest.approx((1 / 3 + 1 + 1) / 3)  # row 1 keeps 1 of its 3 tools
    # Computation fields: only gold row 1 has them, and it parsed -> denominator 1.
    assert overall["primary_computation_retained"] == 1.0
    # Guidance fields: only gold row 0 has them and it failed to parse -> metric never recorded.
    assert "primary_guidance_retained" not in overall
    assert report["metrics"]["has_guidance"] == {"samples": 1, "json_valid": 0.0}
    errors = {entry["index"]: entry for entry in report["error_samples"]}
    assert errors[0]["details"]["error"].startswith("Failed to parse prediction: ")
    assert errors[0]["prompt_preview"] == rows[0]["prompt"][:140]
    assert report["failure_examples"][0]["score"] == 0.0
    assert report["failure_examples"][0]["id"] == "fixture_00"


def test_fenced_json_fails_strict_but_passes_lenient():
    rows = _rows()
    wrapped = [
        "```json\n" + rows[0]["completion"] + "\n```",
        "Here is the plan:\n" + rows[1]["completion"] + "\nLet me know if you need more.",
        "<think>route {carefully}</think>\n" + rows[2]["completion"],
        rows[3]["completion"],
        "no json at all",
    ]
    report = score_router(rows, [{"completion": text} for text in wrapped], thresholds={})
    assert report["metrics"]["overall"]["json_valid"] == pytest.approx(1 / 5)
    assert report["lenient"]["overall"]["json_valid"] == pytest.approx(4 / 5)
    assert report["lenient"]["overall"]["route_plan_exact"] == 1.0
    assert report["parse"]["recovered_by_lenient"] == 3
    reasons = {entry["id"]: entry["reasons"] for entry in report["failure_examples"]}
    assert "lenient parse recovers it" in reasons["fixture_00"]
    assert "lenient parse recovers it" not in reasons["fixture_04"]


def test_parsers():
    gold = _golds()[0]
    assert parse_strict({"completion": gold}) == gold
    assert parse_strict(json.dumps(gold)) == gold
    with pytest.raises(ValueError):
        parse_strict("```json\n{}\n```")
    assert parse_lenient("```\n" + json.dumps(gold) + "\n```") == gold
    assert parse_lenient('prefix {"a": 1} then ' + json.dumps(gold)) == gold
    assert parse_lenient("nothing") is None
    with pytest.raises(ValueError, match="gold completion"):
        load_gold_row({"completion": "not json"})


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="gold has 5 rows but predictions have 4"):
        score_router(_rows(), [row["completion"] for row in _rows()][:4])


def test_threshold_verdicts():
    rules = {"overall": {"min": {"route_plan_exact": 0.5, "json_valid": 0.9}, "max": {"length_ratio_gt_1.1": 0.1}},
             "has_guidance": {"min": {"primary_guidance_retained": 0.9}}}
    metrics = {"overall": {"samples": 3, "route_plan_exact": 0.4, "json_valid": 1.0, "length_ratio_gt_1.1": 0.1}}
    verdicts = judge_thresholds(metrics, rules)
    status = {(c["bucket"], c["metric"]): c["status"] for c in verdicts["checks"]}
    assert status == {("overall", "route_plan_exact"): "fail", ("overall", "json_valid"): "pass",
                      ("overall", "length_ratio_gt_1.1"): "pass", ("has_guidance", "primary_guidance_retained"): "missing"}
    assert (verdicts["passed"], verdicts["failed"], verdicts["missing"]) == (2, 1, 1)
    assert verdicts["all_passed"] is False
    with pytest.raises(ValueError, match="overall.min.json_valid"):
        judge_thresholds(metrics, {"overall": {"min": {"json_valid": "high"}}})


def test_shipped_thresholds_match_seed_buckets():
    rules = load_thresholds()
    assert set(rules) == {"overall", *SEED_BUCKETS}
    assert rules["overall"]["min"]["json_valid"] == pytest.approx(0.98)
    if (SHARED / "data" / "router" / "router_benchmark_thresholds.json").exists():
        shared = json.loads((SHARED / "data" / "router" / "router_benchmark_thresholds.json").read_text())
        assert rules == shared


@pytest.mark.skipif(not HARD.exists(), reason="needs /work/shared router benchmark")
def test_hard_benchmark_gold_vs_gold():
    rows = [json.loads(line) for line in HARD.read_text().splitlines() if line.strip()]
    report = score_router(rows, [{"completion": row["completion"]} for row in rows])
    for bucket, values in report["metrics"].items():
        for name in COMPARATIVE_PERFECT:
            assert values[name] == 1.0, (bucket, name)
        for name in ("length_ratio_gt_1.1", "length_ratio_gt_1.25", "length_ratio_lt_0.9"):
            assert values[name] == 0.0, (bucket, name)
        for name in values:
            if name.endswith("_retained") or name.startswith("metrics_"):
                assert values[name] == 1.0, (bucket, name)
    assert report["metrics"]["overall"]["samples"] == len(rows)
    assert report["by_category"]["non_canonical_route"]["samples"] == len(rows)
    # Gold todo lists use "/router:" items, which the seed's rule does not count as aligned.
    assert report["metrics"]["overall"]["todo_tool_alignment"] < 1.0
    assert report["thresholds"]["failed"] == 0 and report["thresholds"]["missing"] == 0

"""How the router agent is evaluated: its benchmark rows, their score, and `coursegpt score router`.

Benchmark rows are the test split plus the "hard" validation rows (those in at least one category), each
with the seed's prompt/completion and its `categories`. Scores are the seed's schema-aware route-plan
metrics, judged against the router's thresholds.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from coursegpt_assets.agents.base import Agent, ScoreCommand
from coursegpt_assets.data.splits import seeded_order
from coursegpt_assets.scoring.agent_scores import AgentScore, preview, row_id
from coursegpt_assets.scoring.files import check_pairing, objects, read_jsonl, text_table, write_report
from coursegpt_assets.scoring.router_plans import load_gold_row, score_router, tool_sequence
from coursegpt_assets.scoring.router_thresholds import DEFAULT_THRESHOLDS_PATH, load_thresholds

HEADLINE = (
    "json_valid", "route_plan_exact", "route_tool_precision", "route_tool_recall", "route_first_tool_match",
    "metrics_keys_match", "todo_tool_alignment", "handoff_tools_covered",
)
#: metrics where a smaller value is better (the seed's max-bounded length flags)
LOWER_IS_BETTER = frozenset({"length_ratio_gt_1.1", "length_ratio_gt_1.25", "length_ratio_lt_0.9"})
CANONICAL_ROUTE = ("/general-search", "/math", "/code")
ROUTER_CATEGORIES = (
    "math_first", "four_step", "has_guidance", "has_computation", "advanced",
    "non_canonical_route", "math_multi_pass", "math_backstop",
)
_SUMMARY_COLUMNS = ("json_valid", "route_plan_exact", "route_tool_precision", "route_tool_recall",
                    "todo_tool_alignment", "handoff_tools_covered")


# -- benchmark rows ----------------------------------------------------------------------------------
def router_categories(record: dict) -> list[str]:
    """The seed's gold-defined buckets plus the hard-set shapes, e.g. `/math` as first or last step."""
    tools = tool_sequence(record.get("route_plan") or [])
    keys = list((record.get("metrics") or {}).keys())
    flags = {
        "math_first": bool(tools) and tools[0] == "/math",
        "four_step": len(tools) >= 4,
        "has_guidance": any("guidance" in k for k in keys),
        "has_computation": any("computation" in k for k in keys),
        "advanced": record.get("difficulty") == "advanced",
        "non_canonical_route": tuple(tools) != CANONICAL_ROUTE,
        "math_multi_pass": tools.count("/math") >= 2,
        "math_backstop": bool(tools) and tools[-1] == "/math",
    }
    return [name for name in ROUTER_CATEGORIES if flags[name]]


def _router_row(agent: Agent, record: dict, source: str, split: str) -> dict:
    return {
        "id": record["id"], "source": source, "split": split,
        "user_query": record["user_query"],
        "prompt": agent.vertex_prompt(record), "completion": agent.assistant_text(record),
        "categories": router_categories(record),
    }


def router_rows(agent: Agent, test: list[dict], validation: list[dict], *, seed: int,
                hard_per_category: int | None = None) -> list[dict]:
    """The whole test split, then the validation rows with at least one category ("hard").

    With `hard_per_category`, categories are filled rarest first (seeded order within one) until that many
    chosen rows carry the category; a row counts for every category it carries. Rare shapes are thus
    oversampled like the seed's hard set (a common category may exceed the cap through rarer picks).
    """
    rows = [_router_row(agent, r, "test", "test") for r in test]
    candidates = [_router_row(agent, r, "hard", "validation") for r in validation]
    candidates = [candidates[i] for i in seeded_order([c["id"] for c in candidates], seed) if candidates[i]["categories"]]
    if hard_per_category is None:
        return rows + candidates
    counts = Counter(c for row in candidates for c in row["categories"])
    taken: dict[str, dict] = {}
    for category in sorted(counts, key=lambda c: (counts[c], c)):
        carried = sum(category in row["categories"] for row in taken.values())
        for row in candidates:
            if carried >= hard_per_category:
                break
            if category in row["categories"] and row["id"] not in taken:
                taken[row["id"]] = row
                carried += 1
    return rows + [row for row in candidates if row["id"] in taken]


# -- scores ------------------------------------------------------------------------------------------
def benchmark_score(rows: list[dict], completions: list[str]) -> AgentScore:
    """The seed's schema-aware metrics (strict), the lenient re-score and the threshold verdicts."""
    from coursegpt_assets.scoring.metric_modules import load_metric

    report = load_metric("router_plan").compute(
        predictions=list(completions), references=[row["completion"] for row in rows],
        categories=[list(row.get("categories") or []) for row in rows], per_row=True)
    overall = report["metrics"]["overall"]
    per_row = report.pop("per_row")
    failures = [{**f, "id": row_id(rows, f["index"]), "completion": preview(completions[f["index"]])}
                for f in report["failure_examples"]]
    return AgentScore(
        metric="router_plan", buckets=report["metrics"],
        headline={name: overall.get(name) for name in HEADLINE},
        breakdowns={"benchmark categories": report["by_category"]},
        plot_metrics=("json_valid", "route_plan_exact", "route_tool_recall"),
        failures=failures, thresholds=report["thresholds"],
        extra={"lenient": report["lenient"], "parse": report["parse"], "by_category": report["by_category"]},
        raw=report, per_row={name: [row.get(name) for row in per_row] for name in HEADLINE},
    )


# -- `coursegpt score router` ------------------------------------------------------------------------
def score_router_files(gold_path: str, predictions_path: str, out_path: str,
                       thresholds_path: str | None = None) -> dict[str, Any]:
    """Score a router predictions file against a gold benchmark file and write the report."""
    gold_rows = read_jsonl(gold_path)
    golds = objects(gold_path, gold_rows)
    for line_no, row in gold_rows:
        try:
            load_gold_row(row)
        except ValueError as exc:
            raise ValueError(f"{gold_path}:{line_no}: {exc}") from None
    predictions = [row for _, row in read_jsonl(predictions_path)]
    check_pairing(gold_path, golds, predictions_path, predictions)
    thresholds = load_thresholds(thresholds_path)
    report = {
        "config": {
            "gold_path": str(gold_path),
            "pred_path": str(predictions_path),
            "total_samples": len(golds),
            "thresholds_path": str(thresholds_path or DEFAULT_THRESHOLDS_PATH),
        },
        **score_router(golds, predictions, thresholds=thresholds),
    }
    write_report(out_path, report)
    return report


def router_summary(report: dict[str, Any]) -> str:
    rows = [[bucket, values["samples"], *(values.get(name) for name in _SUMMARY_COLUMNS)]
            for bucket, values in sorted(report["metrics"].items(), key=lambda item: item[0] != "overall")]
    verdicts, parse = report["thresholds"], report["parse"]
    return "\n".join([
        text_table(["bucket", "samples", *_SUMMARY_COLUMNS], rows),
        f"strict JSON {parse['strict_parsed']}/{parse['samples']}, lenient {parse['lenient_parsed']}/{parse['samples']}"
        f" ({parse['recovered_by_lenient']} lost to formatting alone)",
        f"thresholds: {verdicts['passed']} pass, {verdicts['failed']} fail, {verdicts['missing']} missing",
    ])


SCORE_COMMAND = ScoreCommand(
    help="schema-aware router metrics (the seed's), lenient block, thresholds",
    arguments=(
        ("--gold", {"required": True, "help": "benchmark JSONL: prompt/completion[/categories] rows"}),
        ("--predictions", {"required": True, "help": 'JSONL: {"completion": text} rows or router objects'}),
        ("--out", {"required": True, "help": "report JSON to write"}),
        ("--thresholds", {"default": None, "help": "thresholds JSON (default: the project's)"}),
    ),
    score=lambda a: score_router_files(a.gold, a.predictions, a.out, a.thresholds),
    summary=router_summary,
)

"""Each agent's benchmark score in one shape the evaluation report, checks and leaderboard understand.

Scoring goes through the agent's local `evaluate` module (loaded by path, offline); this module only
reshapes its report: `buckets` (report.json "metrics": {bucket: {"samples", metric: value}}), the
`headline` numbers (Dagster metadata, model card), `breakdowns` (per-category bar charts), threshold
verdicts and the worst samples. An agent's `score(rows, completions)` returns an `AgentScore`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROUTER_HEADLINE = (
    "json_valid", "route_plan_exact", "route_tool_precision", "route_tool_recall", "route_first_tool_match",
    "metrics_keys_match", "todo_tool_alignment", "handoff_tools_covered",
)
MATH_HEADLINE = ("accuracy", "seed_exact_match")
CODE_HEADLINE = ("pass@1",)
#: metrics where a smaller value is better (the seed's max-bounded length flags)
LOWER_IS_BETTER = frozenset({"length_ratio_gt_1.1", "length_ratio_gt_1.25", "length_ratio_lt_0.9"})
_PREVIEW = 300


@dataclass
class AgentScore:
    metric: str  # the evaluate module that scored it
    buckets: dict[str, dict[str, Any]]  # report.json "metrics"; the router's are the seed's buckets
    headline: dict[str, float | None]
    breakdowns: dict[str, dict[str, dict[str, Any]]]  # plotted: {title: {category: {"samples", metric: value}}}
    plot_metrics: tuple[str, ...]
    failures: list[dict]
    thresholds: dict = field(default_factory=dict)  # judge_thresholds() output; {} when the agent has none
    extra: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)  # the evaluate module's full report (scores.json)


def _preview(text: str) -> str:
    text = str(text)
    return text if len(text) <= _PREVIEW else text[:_PREVIEW] + "…"


def _row_id(rows: list[dict], index: int) -> str:
    return str(rows[index].get("id", index))


def score_router(rows: list[dict], completions: list[str]) -> AgentScore:
    """The seed's schema-aware metrics (strict), the lenient re-score and the threshold verdicts."""
    from coursegpt_assets.scoring.metric_modules import load_metric

    report = load_metric("router_plan").compute(
        predictions=list(completions), references=[row["completion"] for row in rows],
        categories=[list(row.get("categories") or []) for row in rows])
    overall = report["metrics"]["overall"]
    failures = [{**f, "id": _row_id(rows, f["index"]), "completion": _preview(completions[f["index"]])}
                for f in report["failure_examples"]]
    return AgentScore(
        metric="router_plan", buckets=report["metrics"],
        headline={name: overall.get(name) for name in ROUTER_HEADLINE},
        breakdowns={"benchmark categories": report["by_category"]},
        plot_metrics=("json_valid", "route_plan_exact", "route_tool_recall"),
        failures=failures, thresholds=report["thresholds"],
        extra={"lenient": report["lenient"], "parse": report["parse"], "by_category": report["by_category"]},
        raw=report,
    )


def score_math(rows: list[dict], completions: list[str]) -> AgentScore:
    """Final-answer accuracy (math-verify) and the seed's exact match, per level, file and topic."""
    from coursegpt_assets.scoring.metric_modules import load_metric

    report = load_metric("math_answer").compute(
        predictions=list(completions), references=[str(row["answer"]) for row in rows],
        options=[row.get("options") or None for row in rows], topics=[row.get("topic") for row in rows],
        file_labels=[row.get("file") for row in rows])
    metrics = report["metrics"]
    failures = [{"index": s["index"], "id": _row_id(rows, s["index"]), "gold": s["gold"], "extracted": s["extracted"],
                 "completion": _preview(completions[s["index"]])}
                for s in report["samples"] if not s["correct"]]
    return AgentScore(
        metric="math_answer", buckets={"overall": metrics["overall"]},
        headline={name: metrics["overall"].get(name) for name in MATH_HEADLINE},
        breakdowns={"level": metrics["by_level"], "benchmark file": metrics["by_file"]},
        plot_metrics=MATH_HEADLINE, failures=failures[:10],
        extra={"by_topic": metrics["by_topic"]}, raw=report,
    )


def score_code(rows: list[dict], completions: list[str]) -> AgentScore:
    """pass@1: each completion runs against its row's asserts in the sandbox."""
    from coursegpt_assets.scoring.metric_modules import load_metric

    report = load_metric("code_pass_at_k").compute(
        predictions=list(completions), references=[list(row["testcase"]) for row in rows],
        entry_points=[str(row.get("entry_point") or "") for row in rows], k=[1])
    overall = report["metrics"]["overall"]
    total = max(overall["samples"], 1)
    outcomes = {reason: {"samples": count, "share": count / total}
                for reason, count in sorted(overall["reasons"].items())}
    failures = [{"index": s["index"], "id": _row_id(rows, s["index"]), "reason": s["reason"],
                 "detail": _preview(s.get("detail") or ""), "completion": _preview(completions[s["index"]])}
                for s in report["samples"] if not s["passed"]]
    return AgentScore(
        metric="code_pass_at_k",
        buckets={"overall": {"samples": overall["samples"], "pass@1": overall["pass@1"]}},
        headline={"pass@1": overall["pass@1"]},
        breakdowns={"outcome": outcomes}, plot_metrics=("share",), failures=failures[:10],
        extra={"outcomes": overall["reasons"], "sandbox": report.get("config", {}).get("sandbox")}, raw=report,
    )

"""How the router agent is evaluated: its benchmark rows, their score, and `coursegpt score router`.

Benchmark rows are the held-out test split, the "hard" validation rows (those in at least one category) and
the seed's 322-row hard benchmark shipped in `coursegpt_assets/benchmarks/router/` (derived from the MIT
router dataset), each with the seed's prompt/completion and its `categories`. Scores are the seed's
schema-aware route-plan metrics, judged against the router's thresholds.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from coursegpt_assets.agents.base import Agent, ScoreCommand, matches_vertex_prompt_format
from coursegpt_assets.data.benchmark_rows import HELD_OUT, SHIPPED_BENCHMARKS, BenchmarkError, source_info
from coursegpt_assets.data.splits import seeded_order
from coursegpt_assets.scoring.agent_scores import AgentScore, preview, row_id
from coursegpt_assets.scoring.files import check_pairing, objects, read_jsonl, text_table, write_report
from coursegpt_assets.scoring.router_plans import load_gold_row, tool_sequence
from coursegpt_assets.scoring.router_report import score_router
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
HARD_BENCHMARK = SHIPPED_BENCHMARKS / "router" / "router_benchmark_hard.jsonl"
_QUERY_MARK = "\n\nUser query:\n"
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
        "id": record["id"], "source": source, "origin": HELD_OUT, "split": split,
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
    candidates = [_router_row(agent, r, "validation_hard", "validation") for r in validation]
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


def hard_benchmark_rows(agent: Agent, path: Path = HARD_BENCHMARK) -> list[dict]:
    """The shipped hard benchmark: the seed's prompt/completion byte for byte, the user query read back from
    the prompt, categories recomputed from the gold plan (the seed's own names differ); a bad row fails
    naming its line."""
    info = source_info(path.parent)
    if info is None:
        raise BenchmarkError(f"{path.parent}: no source.json naming the benchmark and its licence")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(line)
                gold = json.loads(row["completion"])
                prompt = row["prompt"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise BenchmarkError(f"{where}: expected a JSON object with a `prompt` and a JSON `completion` "
                                     f"({type(e).__name__}: {e})") from None
            if not isinstance(prompt, str) or not matches_vertex_prompt_format(
                    agent.vertex_prompt_format, agent.system_prompt, prompt):
                raise BenchmarkError(f"{where}: `prompt` is not the router's tuning prompt (system prompt, "
                                     "then 'User query:' and the query)")
            if not isinstance(gold, dict):
                raise BenchmarkError(f"{where}: `completion` is not a JSON object")
            rows.append({
                "id": f"{info['name']}:{line_no}", "source": info["name"], "origin": info["origin"],
                "user_query": prompt.split(_QUERY_MARK, 1)[1].removesuffix("\n"),
                "prompt": prompt, "completion": row["completion"], "categories": router_categories(gold),
            })
    return rows


def hard_benchmark_file(path: Path = HARD_BENCHMARK) -> dict:
    """The manifest entry of the shipped hard benchmark: path, sha256, rows, source and licence."""
    info = source_info(path.parent) or {}
    data = path.read_bytes()
    return {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(),
            "rows": sum(1 for line in data.splitlines() if line.strip()),
            "source": info.get("name"), "license": info.get("license"), "url": info.get("url")}


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

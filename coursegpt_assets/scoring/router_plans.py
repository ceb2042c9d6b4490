"""Schema-aware router scoring of one sample: parsing (strict and lenient) and the seed's metrics with its
exact semantics; `router_report.py` aggregates samples into buckets, verdicts and the worst samples.

Seed semantics kept on purpose (see SEED_FACTS "Router evaluation"): a prediction that fails strict
JSON parsing records only ``json_valid``; every other metric is averaged over the samples that
recorded it, so its denominator is the strictly parsed predictions (and, for ``<field>_retained``,
only those whose gold carries the field). Where the seed crashed on malformed shapes (a JSON array
instead of an object, a non-string handoff plan or todo item) the sample is scored instead: a
non-object counts as a parse failure, and a wrongly typed field as an empty one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

SEED_BUCKETS = ("math_first", "four_step", "has_guidance", "has_computation", "advanced")
OPTIONAL_METRIC_FIELDS = ("primary_guidance", "secondary_guidance", "primary_computation", "secondary_computation")
ROUTER_KEYS = (
    "route_plan", "route_rationale", "expected_artifacts", "thinking_outline", "handoff_plan",
    "todo_list", "difficulty", "tags", "acceptance_criteria", "metrics",
)
# Per-sample quality metrics used to rank failure examples (length flags and counts are not "quality").
QUALITY_METRICS = (
    "route_plan_exact", "route_length_match", "route_first_tool_match", "route_last_tool_match",
    "route_tool_precision", "route_tool_recall", "metrics_keys_match", "metrics_primary_list",
    "metrics_secondary_list", "metrics_primary_nonempty", "metrics_secondary_nonempty",
    *(f"{field}_retained" for field in OPTIONAL_METRIC_FIELDS),
    "todo_tool_alignment", "todo_covers_all_tools", "expected_artifacts_nonempty",
    "acceptance_criteria_nonempty", "handoff_tools_covered", "handoff_router_qa",
)
_TODO_TOOL = re.compile(r"/[a-zA-Z0-9_-]+")
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)```", re.S)
_MAX_BRACE_SCAN = 64


def _completion_payload(obj: Any) -> Any:
    """The part of a row that holds the router object: its `completion`, else the row itself."""
    if isinstance(obj, dict) and "completion" in obj:
        return obj["completion"]
    return obj


def parse_strict(obj: Any) -> dict[str, Any]:
    """The seed's strict parse: a dict is taken as is, a string must be one JSON object.

    Raises ValueError (json.JSONDecodeError included) or TypeError with the reason."""
    payload = _completion_payload(obj)
    if isinstance(payload, dict):
        return payload
    if isinstance(payload, str):
        parsed = json.loads(payload)
        if not isinstance(parsed, dict):
            raise ValueError(f"JSON is a {type(parsed).__name__}, not an object")
        return parsed
    raise TypeError(f"Cannot parse completion from {type(payload).__name__}")


def parse_lenient(obj: Any) -> dict[str, Any] | None:
    """Tolerant parse: strict first, then JSON inside code fences, then the first JSON object
    embedded in prose (preferring one that carries router keys). None when nothing parses."""
    try:
        return parse_strict(obj)
    except (ValueError, TypeError):
        pass
    text = _completion_payload(obj)
    if not isinstance(text, str):
        return None
    for block in _FENCE.findall(text):
        try:
            parsed = json.loads(block.strip())
        except ValueError:
            continue
        if isinstance(parsed, dict):
            return parsed
    decoder = json.JSONDecoder()
    fallback: dict[str, Any] | None = None
    start = text.find("{")
    scanned = 0
    while start != -1 and scanned < _MAX_BRACE_SCAN:
        scanned += 1
        try:
            parsed, _ = decoder.raw_decode(text, start)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            if any(key in parsed for key in ROUTER_KEYS):
                return parsed
            fallback = fallback or parsed
        start = text.find("{", start + 1)
    return fallback


def load_gold_row(row: Any) -> dict[str, Any]:
    """Gold object from a benchmark row (`completion` JSON string or object) or the object itself."""
    try:
        return parse_strict(row)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"gold completion is not a JSON object: {exc}") from exc


def tool_sequence(plan: Iterable[Any]) -> list[str]:
    """Each plan step's text before its first '(' — the tool name, e.g. '/math'."""
    return [str(step).split("(", 1)[0].strip() for step in plan]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _value_type(block: Any, key: str) -> str:
    if not isinstance(block, dict):
        return "missing"
    value = block.get(key)
    if value is None:
        return "missing"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def _key_set(block: Any) -> frozenset[str]:
    return frozenset(block.keys()) if isinstance(block, dict) else frozenset()


def _todo_tool(item: Any) -> str | None:
    if not isinstance(item, str):
        return None
    match = _TODO_TOOL.search(item)
    if match:
        return match.group(0)
    return "router QA" if "router qa" in item.lower() else None


def _todo_alignment(todo_list: list[Any], gold_tools: list[str]) -> float:
    if not todo_list:
        return 1.0 if not gold_tools else 0.0
    hits = 0
    for item in todo_list:
        tool = _todo_tool(item)
        if tool and (tool in gold_tools or tool.lower().startswith("router")):
            hits += 1
    return hits / len(todo_list)


def _todo_covers(todo_list: list[Any], gold_tools: list[str]) -> bool:
    todo_tools = {tool for tool in map(_todo_tool, todo_list) if tool is not None}
    return all(tool in todo_tools for tool in gold_tools)


def _count_tokens(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, (list, tuple)):
        return sum(_count_tokens(item) for item in value)
    if isinstance(value, dict):
        return sum(_count_tokens(item) for item in value.values())
    return 0


def gold_flags(gold: dict[str, Any]) -> dict[str, bool]:
    """The seed's gold-defined buckets a sample belongs to."""
    tools = tool_sequence(_as_list(gold.get("route_plan", [])))
    keys = _key_set(gold.get("metrics", {}))
    return {
        "math_first": bool(tools) and tools[0] == "/math",
        "four_step": len(_as_list(gold.get("route_plan", []))) >= 4,
        "has_guidance": any("guidance" in key for key in keys),
        "has_computation": any("computation" in key for key in keys),
        "advanced": gold.get("difficulty") == "advanced",
    }


def _route_metrics(gold_plan: list[Any], pred_plan_raw: Any) -> dict[str, Any]:
    """How the predicted route plan matches the gold one: exactly, in length, by end tools, by tool set."""
    pred_plan = _as_list(pred_plan_raw)
    gold_tools, pred_tools = tool_sequence(gold_plan), tool_sequence(pred_plan)
    gold_set, pred_set = set(gold_tools), set(pred_tools)
    common = len(gold_set & pred_set)
    return {
        "route_plan_exact": pred_plan_raw == gold_plan,
        "route_length_match": len(pred_plan) == len(gold_plan),
        "route_first_tool_match": (pred_tools[:1] or [None]) == (gold_tools[:1] or [None]),
        "route_last_tool_match": (pred_tools[-1:] or [None]) == (gold_tools[-1:] or [None]),
        "route_tool_precision": common / len(pred_set) if pred_set else 1.0,
        "route_tool_recall": common / len(gold_set) if gold_set else 1.0,
    }


def _metrics_block_metrics(gold_metrics: Any, pred_metrics: Any) -> dict[str, Any]:
    """The `metrics` block: same keys, list-valued primary/secondary, optional fields of the gold's type."""
    metrics: dict[str, Any] = {"metrics_keys_match": _key_set(pred_metrics) == _key_set(gold_metrics)}
    for key in ("primary", "secondary"):
        metrics[f"metrics_{key}_list"] = _value_type(pred_metrics, key) == "list"
        value = pred_metrics.get(key) if isinstance(pred_metrics, dict) else None
        metrics[f"metrics_{key}_nonempty"] = isinstance(value, list) and len(value) > 0
    for key in OPTIONAL_METRIC_FIELDS:
        expected = _value_type(gold_metrics, key)
        if expected != "missing":
            metrics[f"{key}_retained"] = _value_type(pred_metrics, key) == expected
    return metrics


def _follow_up_metrics(pred: dict[str, Any], gold_tools: list[str]) -> dict[str, Any]:
    """The todo list, artifacts, acceptance criteria and handoff plan, against the gold route's tools."""
    todo_list = _as_list(pred.get("todo_list"))
    artifacts, acceptance = pred.get("expected_artifacts", []), pred.get("acceptance_criteria", [])
    handoff = pred.get("handoff_plan", "")
    handoff = handoff if isinstance(handoff, str) else ""
    return {
        "todo_tool_alignment": _todo_alignment(todo_list, gold_tools),
        "todo_covers_all_tools": _todo_covers(todo_list, gold_tools),
        "expected_artifacts_nonempty": isinstance(artifacts, list) and len(artifacts) > 0,
        "acceptance_criteria_nonempty": isinstance(acceptance, list) and len(acceptance) > 0,
        "handoff_tools_covered": (all(tool.lower() in handoff.lower() for tool in gold_tools) if gold_tools
                                  else bool(handoff)),
        "handoff_router_qa": "router qa" in handoff.lower(),
    }


def _size_metrics(gold: dict[str, Any], pred: dict[str, Any]) -> dict[str, Any]:
    """The prediction's word count, and its JSON length against the gold's."""
    gold_json, pred_json = json.dumps(gold, sort_keys=True), json.dumps(pred, sort_keys=True)
    ratio = len(pred_json) / len(gold_json) if gold_json else 1.0
    return {
        "total_token_count": _count_tokens(pred),
        "length_ratio": ratio,
        "length_ratio_gt_1.1": ratio > 1.1,
        "length_ratio_gt_1.25": ratio > 1.25,
        "length_ratio_lt_0.9": ratio < 0.9,
    }


def _debug_details(metrics: dict[str, Any], gold: dict[str, Any], pred: dict[str, Any]) -> dict[str, Any]:
    """What a reviewer needs to see for each failed check: the predicted and gold values."""
    debug: dict[str, Any] = {}
    if not metrics["route_plan_exact"]:
        debug["route_plan_pred"] = pred.get("route_plan", [])
        debug["route_plan_gold"] = _as_list(gold.get("route_plan", []))
    if not metrics["metrics_keys_match"]:
        debug["metrics_keys_pred"] = sorted(_key_set(pred.get("metrics", {})))
        debug["metrics_keys_gold"] = sorted(_key_set(gold.get("metrics", {})))
    if metrics["todo_tool_alignment"] < 1.0:
        debug["todo_list"] = _as_list(pred.get("todo_list"))
    return debug


def score_sample(gold: dict[str, Any], pred: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One sample's metrics (bools, fractions, counts) and debug details, as the seed defined them."""
    metrics: dict[str, Any] = {"json_valid": pred is not None}
    if pred is None:
        return metrics, {}
    gold_plan = _as_list(gold.get("route_plan", []))
    metrics.update(_route_metrics(gold_plan, pred.get("route_plan", [])))
    metrics.update(_metrics_block_metrics(gold.get("metrics", {}), pred.get("metrics", {})))
    metrics.update(_follow_up_metrics(pred, tool_sequence(gold_plan)))
    metrics.update(_size_metrics(gold, pred))
    return metrics, _debug_details(metrics, gold, pred)

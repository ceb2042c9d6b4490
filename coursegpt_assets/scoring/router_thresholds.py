"""Router threshold configuration and verdicts: min/max bounds per bucket, judged metric by metric.

The thresholds ship with the project (`coursegpt_assets/agents/router_thresholds.json`, a copy of the
seed's `router_benchmark_thresholds.json`) so scoring works without the shared data folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_THRESHOLDS_PATH = Path(__file__).resolve().parents[1] / "agents" / "router_thresholds.json"
_BOUNDS = ("min", "max")


def validate_thresholds(rules: Any, source: str = "thresholds") -> dict[str, dict[str, dict[str, float]]]:
    """Check the `{bucket: {"min"|"max": {metric: number}}}` shape; errors name the bad entry."""
    if not isinstance(rules, dict):
        raise ValueError(f"{source}: expected an object of buckets, got {type(rules).__name__}")
    for bucket, bounds in rules.items():
        if not isinstance(bounds, dict):
            raise ValueError(f"{source}: bucket {bucket!r} must map 'min'/'max' to metrics")
        for bound, limits in bounds.items():
            if bound not in _BOUNDS:
                raise ValueError(f"{source}: bucket {bucket!r} has unknown bound {bound!r} (use 'min' or 'max')")
            if not isinstance(limits, dict):
                raise ValueError(f"{source}: {bucket}.{bound} must be an object of metric: number")
            for metric, value in limits.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{source}: {bucket}.{bound}.{metric} must be a number, got {value!r}")
    return rules


def load_thresholds(path: str | Path | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Thresholds from `path`, or the project's shipped defaults."""
    source = Path(path) if path is not None else DEFAULT_THRESHOLDS_PATH
    try:
        rules = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"router thresholds file not found: {source}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    return validate_thresholds(rules, str(source))


def judge_thresholds(metrics: dict[str, dict[str, Any]], rules: dict[str, Any]) -> dict[str, Any]:
    """One verdict per (bucket, bound, metric): pass, fail, or missing when the bucket or metric
    was not measured (e.g. no gold sample has guidance, or every prediction failed to parse)."""
    validate_thresholds(rules)
    checks: list[dict[str, Any]] = []
    for bucket in sorted(rules):
        for bound in _BOUNDS:
            for metric, limit in sorted(rules[bucket].get(bound, {}).items()):
                value = metrics.get(bucket, {}).get(metric)
                if value is None:
                    status = "missing"
                elif bound == "min":
                    status = "pass" if value >= limit else "fail"
                else:
                    status = "pass" if value <= limit else "fail"
                checks.append({
                    "bucket": bucket, "metric": metric, "bound": bound,
                    "threshold": limit, "value": value, "status": status,
                })
    counts = {status: sum(check["status"] == status for check in checks) for status in ("pass", "fail", "missing")}
    return {
        "checks": checks,
        "passed": counts["pass"],
        "failed": counts["fail"],
        "missing": counts["missing"],
        "all_passed": counts["fail"] == 0 and counts["missing"] == 0,
    }

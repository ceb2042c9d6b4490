"""The router report over many samples: per-category buckets, the lenient re-score, threshold verdicts and
the worst samples, from each sample's metrics (`router_plans.score_sample`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from coursegpt_assets.scoring.router_plans import (
    QUALITY_METRICS,
    SEED_BUCKETS,
    gold_flags,
    load_gold_row,
    parse_lenient,
    parse_strict,
    score_sample,
)
from coursegpt_assets.scoring.router_thresholds import judge_thresholds, load_thresholds


class _Bucket:
    """Running means: `samples` counts every sample, each metric its own recorded values."""

    def __init__(self) -> None:
        self.samples = 0
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: Counter[str] = Counter()

    def add(self, metrics: dict[str, Any]) -> None:
        self.samples += 1
        for name, value in metrics.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            self.sums[name] += float(value)
            self.counts[name] += 1

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": self.samples}
        for name in sorted(self.sums):
            out[name] = self.sums[name] / self.counts[name]
        return out


def _render(buckets: dict[str, _Bucket]) -> dict[str, dict[str, Any]]:
    return {name: buckets[name].render() for name in sorted(buckets)}


def _sample_quality(metrics: dict[str, Any]) -> tuple[float, list[str]]:
    """Mean of the quality metrics a sample recorded, and the ones below perfect."""
    if not metrics.get("json_valid"):
        return 0.0, ["json_invalid"]
    values = {name: float(metrics[name]) for name in QUALITY_METRICS if name in metrics}
    failed = [name if value == 0.0 else f"{name}={value:.2f}" for name, value in values.items() if value < 1.0]
    return (sum(values.values()) / len(values) if values else 1.0), failed


def _row_field(row: Any, key: str) -> Any:
    return row.get(key) if isinstance(row, dict) and "completion" in row else None


def _row_id(row: Any, index: int) -> str:
    if isinstance(row, dict):
        if row.get("id") is not None:
            return str(row["id"])
        if row.get("source") is not None and row.get("index") is not None:
            return f"{row['source']}#{row['index']}"
    return str(index)


@dataclass(frozen=True)
class _ScoredRow:
    """One row scored strictly (the seed's semantics) and leniently."""

    gold: dict[str, Any]
    metrics: dict[str, Any]
    debug: dict[str, Any]
    lenient_metrics: dict[str, Any]
    parse_error: str | None
    strict_parsed: bool
    lenient_parsed: bool


def _score_row(index: int, row: Any, pred_row: Any) -> _ScoredRow:
    try:
        gold = load_gold_row(row)
    except ValueError as exc:
        raise ValueError(f"gold row {index}: {exc}") from exc
    try:
        pred, parse_error = parse_strict(pred_row), None
    except (ValueError, TypeError) as exc:
        pred, parse_error = None, f"Failed to parse prediction: {exc}"
    metrics, debug = score_sample(gold, pred)
    if parse_error:
        debug["error"] = parse_error
    loose = pred if pred is not None else parse_lenient(pred_row)
    loose_metrics = metrics if loose is pred else score_sample(gold, loose)[0]
    return _ScoredRow(gold, metrics, debug, loose_metrics, parse_error, pred is not None, loose is not None)


class _Tally:
    """What score_router gathers over the rows: bucket means, parse counts, error and failure examples."""

    def __init__(self, max_error_examples: int) -> None:
        self.strict: dict[str, _Bucket] = {"overall": _Bucket()}
        self.lenient: dict[str, _Bucket] = {"overall": _Bucket()}
        self.by_category: dict[str, _Bucket] = {}
        self.errors: list[dict[str, Any]] = []
        self.ranked: list[tuple[float, int, dict[str, Any]]] = []
        self.strict_ok = self.lenient_ok = 0
        self.max_error_examples = max_error_examples
        self.rows: list[dict[str, Any]] = []  # each row's strict metrics, in row order

    def add(self, index: int, row: Any, scored: _ScoredRow, row_categories: Iterable[Any] | None) -> None:
        self.strict_ok += scored.strict_parsed
        self.lenient_ok += scored.lenient_parsed
        self.rows.append(scored.metrics)
        flags = gold_flags(scored.gold)
        for name in ("overall", *[flag for flag in SEED_BUCKETS if flags[flag]]):
            self.strict.setdefault(name, _Bucket()).add(scored.metrics)
            self.lenient.setdefault(name, _Bucket()).add(scored.lenient_metrics)
        for category in row_categories or []:
            self.by_category.setdefault(str(category), _Bucket()).add(scored.metrics)
        self._add_examples(index, row, scored)

    def _add_examples(self, index: int, row: Any, scored: _ScoredRow) -> None:
        if scored.debug and len(self.errors) < self.max_error_examples:
            prompt = _row_field(row, "prompt")
            self.errors.append({
                "index": index,
                "prompt_preview": (prompt if isinstance(prompt, str) else "")[:140],
                "details": scored.debug,
            })
        quality, reasons = _sample_quality(scored.metrics)
        if reasons:
            if scored.parse_error:
                reasons = [scored.parse_error] + (["lenient parse recovers it"] if scored.lenient_parsed else [])
            self.ranked.append((quality, index, {"index": index, "id": _row_id(row, index), "score": quality,
                                                 "reasons": reasons}))

    def report(self, samples: int, rules: dict[str, Any], max_failure_examples: int) -> dict[str, Any]:
        rendered = _render(self.strict)
        ranked = sorted(self.ranked, key=lambda item: (item[0], item[1]))
        return {
            "metrics": rendered,
            "lenient": _render(self.lenient),
            "by_category": _render(self.by_category),
            "parse": {
                "samples": samples,
                "strict_parsed": self.strict_ok,
                "lenient_parsed": self.lenient_ok,
                "recovered_by_lenient": self.lenient_ok - self.strict_ok,
            },
            "thresholds": judge_thresholds(rendered, rules),
            "error_samples": self.errors,
            "failure_examples": [entry for _, _, entry in ranked[:max_failure_examples]],
        }


def score_router(
    golds: list[Any],
    predictions: list[Any],
    categories: list[list[str]] | None = None,
    thresholds: dict[str, Any] | None = None,
    *,
    max_error_examples: int = 15,
    max_failure_examples: int = 5,
    per_row: bool = False,
) -> dict[str, Any]:
    """Score router predictions against gold, row i with row i.

    golds: benchmark rows (prompt/completion[/categories]) or ten-key objects; predictions:
    `{"completion": text}` rows, texts, or objects. categories defaults to each gold row's
    `categories`; thresholds defaults to the shipped project thresholds (pass {} to skip).
    per_row: also return `per_row`, each row's strict metrics (a metric it did not record is absent)."""
    if len(golds) != len(predictions):
        raise ValueError(f"gold has {len(golds)} rows but predictions have {len(predictions)}; row i must pair with row i")
    if categories is not None and len(categories) != len(golds):
        raise ValueError(f"categories has {len(categories)} entries for {len(golds)} gold rows")
    tally = _Tally(max_error_examples)
    for index, (row, pred_row) in enumerate(zip(golds, predictions, strict=True)):
        row_categories = categories[index] if categories is not None else _row_field(row, "categories")
        tally.add(index, row, _score_row(index, row, pred_row), row_categories)
    rules = load_thresholds() if thresholds is None else thresholds
    report = tally.report(len(golds), rules, max_failure_examples)
    if per_row:
        report["per_row"] = [{name: float(value) for name, value in row.items()
                              if value is not None and not (isinstance(value, float) and math.isnan(value))}
                             for row in tally.rows]
    return report

"""Each agent's benchmark score in one shape the evaluation report, checks and leaderboard understand.

An agent scores through its local `evaluate` module (loaded by path, offline) and reshapes the report
into this one: `buckets` (report.json "metrics": {bucket: {"samples", metric: value}}), the
`headline` numbers (Dagster metadata, model card), `breakdowns` (per-category bar charts), threshold
verdicts and the worst samples. An agent's `score(rows, completions)` returns an `AgentScore`; which
numbers are headline is the agent's `headline_metrics`. `per_row` holds each headline metric's value per
benchmark row (None where the row recorded none), whose mean is the headline: the bootstrap resamples it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    per_row: dict[str, list[float | None]] = field(default_factory=dict)  # {headline metric: value per row}


def preview(text: str) -> str:
    """A failure example's text, cut to what a report line can show."""
    text = str(text)
    return text if len(text) <= _PREVIEW else text[:_PREVIEW] + "…"


def row_id(rows: list[dict], index: int) -> str:
    """The benchmark id of row `index` (its position when the row has none)."""
    return str(rows[index].get("id", index))

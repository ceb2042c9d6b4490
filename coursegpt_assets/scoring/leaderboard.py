"""One agent's leaderboard as plain functions: every evaluated base model side by side, best per metric.

Rows come from each pair's newest report.json; pairs without one are listed as not evaluated. The best
model of a metric is the largest value (the smallest for the agent's `lower_is_better` metrics); reports on
another benchmark version or sample count are flagged, because their numbers are not comparable.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from coursegpt_assets.core.names import split_pair
from coursegpt_assets.scoring.comparison import (
    NOT_MEASURED,
    comparison_rows,
    interval_text,
    signed,
    significance,
)
from coursegpt_assets.scoring.perplexity import measured, reduction
from coursegpt_assets.scoring.report import bar_chart


def finite_number(value: Any) -> float | None:
    """The value as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def leaderboard_rows(reports: dict[str, dict | None]) -> list[dict]:
    """{pair: report.json or None} -> one row per pair, in the given (plan) order."""
    rows = []
    for pair, report in reports.items():
        base_model = split_pair(pair)[1]
        if report is None:
            rows.append({"pair": pair, "base_model": base_model, "evaluated": False})
            continue
        inference = report.get("inference") or {}
        rows.append({
            "pair": pair, "base_model": base_model, "evaluated": True, "smoke": bool(report.get("smoke")),
            "report_version": report.get("report_version"), "adapter_version": report.get("adapter_version"),
            "benchmark_version": report.get("benchmark_version"), "samples": inference.get("samples"),
            "backend": inference.get("backend"), "headline": dict(report.get("headline") or {}),
            "perplexity": report.get("perplexity"),
        })
    return rows


def best_per_metric(rows: list[dict], lower_is_better: frozenset[str] = frozenset()) -> dict[str, dict]:
    """{metric: {"base_models": [...], "value": v, "direction": "max"|"min"}} over the evaluated rows;
    `lower_is_better` (the agent's) are the metrics whose best is the smallest."""
    metrics = list(dict.fromkeys(m for r in rows if r["evaluated"] for m in r["headline"]))
    best = {}
    for metric in metrics:
        values = {r["base_model"]: finite_number(r["headline"].get(metric)) for r in rows if r["evaluated"]}
        values = {k: v for k, v in values.items() if v is not None}
        if not values:
            continue
        direction = "min" if metric in lower_is_better else "max"
        top = (min if direction == "min" else max)(values.values())
        best[metric] = {"base_models": [k for k, v in values.items() if v == top], "value": top,
                        "direction": direction}
    return best


def comparability(rows: list[dict]) -> list[str]:
    """Warnings when the evaluated reports did not all score the same benchmark rows."""
    done = [r for r in rows if r["evaluated"]]
    notes = []
    for field in ("benchmark_version", "samples"):
        seen = Counter(str(r.get(field)) for r in done)
        if len(seen) > 1:
            notes.append(f"reports differ in {field} ({', '.join(f'{k}: {v}' for k, v in seen.items())}): "
                         "their numbers are not directly comparable")
    return notes


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def leaderboard_markdown(agent: str, rows: list[dict], best: dict[str, dict], notes: list[str]) -> str:
    metrics = list(dict.fromkeys(m for r in rows if r["evaluated"] for m in r["headline"]))
    lines = [f"# Leaderboard: {agent}", "",
             "| base model | samples | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for row in rows:
        if not row["evaluated"]:
            lines.append(f"| {row['base_model']} | not evaluated |" + " — |" * len(metrics))
            continue
        cells = []
        for metric in metrics:
            value = finite_number(row["headline"].get(metric))
            text = _cell(value)
            cells.append(f"**{text}**" if metric in best and row["base_model"] in best[metric]["base_models"] else text)
        name = row["base_model"] + (" (smoke)" if row["smoke"] else "")
        lines.append(f"| {name} | {_cell(row['samples'])} | " + " | ".join(cells) + " |")
    lowest = [m for m, b in best.items() if b["direction"] == "min"]
    lines += ["", "Bold: best per metric (highest" + (f"; lowest for {', '.join(lowest)}" if lowest else "") + ")."]
    lines += [f"- Note: {n}" for n in notes]
    lines += perplexity_table(rows)
    return "\n".join(lines) + "\n"


def perplexity_table(rows: list[dict]) -> list[str]:
    """Held-out perplexity per base model: base, adapter and how far below the base the adapter is (lower is
    better); a report that could not measure it says why. Empty when no report carries perplexity."""
    shown = [r for r in rows if r["evaluated"] and r.get("perplexity")]
    if not shown:
        return []
    lines = ["", "## Held-out perplexity", "", "| base model | split | rows | tokens | perplexity (base) | "
             "perplexity (adapter) | adapter vs base |", "|---|---|---|---|---|---|---|"]
    for row in shown:
        ppl, name = row["perplexity"], row["base_model"] + (" (smoke)" if row["smoke"] else "")
        if not measured(ppl):
            lines.append(f"| {name} | not measured: {_cell(ppl.get('not_measured'))} | — | — | — | — | — |")
            continue
        lines.append(f"| {name} | {ppl['split']} | {ppl['rows']} | {ppl['tokens']} | {_cell(float(ppl['base']))} | "
                     f"{_cell(float(ppl['adapter']))} | {-reduction(ppl):+.1%} |")
    return lines


def leaderboard_chart(agent: str, rows: list[dict], path: Path) -> Path | None:
    """Grouped bars: one group per headline metric, one bar per evaluated base model."""
    done = [r for r in rows if r["evaluated"]]
    metrics = list(dict.fromkeys(m for r in done for m in r["headline"]))
    groups = {m: {r["base_model"]: finite_number(r["headline"].get(m)) for r in done} for m in metrics}
    return bar_chart(groups, tuple(r["base_model"] for r in done), path, title=f"{agent} leaderboard")


# -- base model vs adapter -------------------------------------------------------------------------------
def base_vs_adapter_rows(reports: dict[str, dict | None]) -> list[dict]:
    """One row per evaluated pair and headline metric (base, adapter, delta, the delta's interval and whether it
    excludes 0); a pair whose base model was not measured gets one row saying why."""
    rows = []
    for pair, report in reports.items():
        if report is None:
            continue
        base_model = split_pair(pair)[1]
        compared = comparison_rows(report)
        if not compared:
            reason = (report.get("base") or {}).get(NOT_MEASURED, "the report predates base-model scoring")
            rows.append({"base_model": base_model, "metric": None, NOT_MEASURED: reason})
        rows += [{"base_model": base_model, **row} for row in compared]
    return rows


def base_vs_adapter_markdown(rows: list[dict]) -> str:
    """The leaderboard's "Base model vs adapter" table; a delta whose 95 % interval contains 0 is flagged."""
    if not rows:
        return ""
    lines = ["", "## Base model vs adapter", "",
             "| base model | metric | base | adapter | delta | delta 95 % CI | |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["metric"] is None:
            lines.append(f"| {row['base_model']} | base model not measured: {_cell(row[NOT_MEASURED])} | — | — | — | — | |")
            continue
        lines.append(f"| {row['base_model']} | {row['metric']} | {_cell(row['base'])} | {_cell(row['adapter'])} | "
                     f"{signed(row['delta'])} | {interval_text(row['delta_ci'])} | {significance(row)} |")
    lines += ["", "Delta: adapter − base model on the same rows; \"not significant\": its 95 % paired-bootstrap "
              "interval contains 0."]
    return "\n".join(lines) + "\n"

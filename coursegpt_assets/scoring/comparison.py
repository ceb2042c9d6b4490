"""Base model vs adapter as plain functions: the base's entry in report.json, the deltas, the intervals,
the markdown table and the `adapter_beats_base` verdict.

Did fine-tuning help? The base model answers the same benchmark rows with the same prompts and decoding,
is scored by the same code, and a seeded paired bootstrap says whether the difference is more than noise.
report.json gains `base` ({"metrics", "headline"} like the adapter's, or {"not_measured": reason}),
`delta` (adapter - base per headline metric), `ci` ({"adapter"|"base"|"delta": {metric: [low, high]}})
and `bootstrap` (how the intervals were drawn).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import sys
from pathlib import Path
from typing import Any

from coursegpt_assets.scoring.bootstrap import CONFIDENCE, RESAMPLES

NOT_MEASURED = "not_measured"
SCORING_DIR = Path(__file__).resolve().parent
AGENTS_DIR = SCORING_DIR.parent / "agents"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def measured(report: dict) -> bool:
    """Whether the report holds the base model's scores (not a "not measured" reason)."""
    base = report.get("base")
    return isinstance(base, dict) and NOT_MEASURED not in base and "headline" in base


def scoring_code_version(agent: Any) -> str:
    """A hash of the code that turns completions into scores: the agent's module and the shipped agents and
    scoring packages. Cached base scores are keyed by it, so a scoring change scores the base again."""
    files = sorted({*SCORING_DIR.rglob("*.py"), *AGENTS_DIR.rglob("*.py"),
                    Path(inspect.getfile(sys.modules[type(agent).__module__]))})
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def base_cache_key(*, base_model: str, benchmark_version: str, row_ids: list[str], prompts: str, settings: dict,
                   max_new_tokens: int, scoring_version: str) -> str:
    """A short stable hash of everything that decides the base model's scores on these rows."""
    inputs = {"base_model": base_model, "benchmark_version": benchmark_version, "rows": row_ids, "prompts": prompts,
              "settings": settings, "max_new_tokens": max_new_tokens, "scoring": scoring_version}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def deltas(adapter: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    """adapter - base per headline metric (None where either side measured nothing)."""
    out = {}
    for metric, value in adapter.items():
        ours, theirs = _number(value), _number(base.get(metric))
        out[metric] = None if ours is None or theirs is None else ours - theirs
    return out


def comparison(adapter_headline: dict, adapter_rows: dict, base: dict | str, *, seed: int,
               resamples: int = RESAMPLES) -> dict:
    """The report's `base`, `delta`, `ci` and `bootstrap` entries. `base` is the cached base scores
    ({"metrics", "headline", "per_row", ...}) or the reason they were not measured."""
    from coursegpt_assets.scoring.bootstrap import paired_bootstrap  # numpy: only when a report is built

    base_rows = base.get("per_row") if isinstance(base, dict) else None
    ci = paired_bootstrap({m: adapter_rows[m] for m in adapter_headline if m in adapter_rows},
                          {m: base_rows[m] for m in adapter_headline if m in (base_rows or {})} or None,
                          seed=seed, resamples=resamples)
    method = {"method": "paired percentile bootstrap over benchmark rows", "resamples": resamples,
              "confidence": CONFIDENCE, "seed": seed}
    if isinstance(base, str):
        return {"base": {NOT_MEASURED: base}, "delta": {}, "ci": ci, "bootstrap": method}
    entry = {"metrics": base["metrics"], "headline": base["headline"],
             "model": base.get("model"), "cache": base.get("cache")}
    return {"base": entry, "delta": deltas(adapter_headline, base["headline"]), "ci": ci, "bootstrap": method}


def comparison_rows(report: dict) -> list[dict]:
    """One row per headline metric: base, adapter, delta, the intervals and whether the delta is significant."""
    from coursegpt_assets.scoring.bootstrap import excludes_zero

    if not measured(report):
        return []
    ci = report.get("ci") or {}
    rows = []
    for metric, value in (report.get("headline") or {}).items():
        interval = (ci.get("delta") or {}).get(metric)
        rows.append({"metric": metric, "base": _number(report["base"]["headline"].get(metric)),
                     "adapter": _number(value), "delta": _number((report.get("delta") or {}).get(metric)),
                     "adapter_ci": (ci.get("adapter") or {}).get(metric), "base_ci": (ci.get("base") or {}).get(metric),
                     "delta_ci": interval, "significant": excludes_zero(interval)})
    return rows


def interval_text(interval: list[float] | None) -> str:
    return "—" if not interval else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def value_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.4f}"


def significance(row: dict) -> str:
    if row["delta_ci"] is None:
        return "—"
    return "significant" if row["significant"] else "not significant"


def comparison_markdown(report: dict) -> list[str]:
    """report.md's "Base model vs adapter" section."""
    lines = ["## Base model vs adapter", ""]
    base = report.get("base") or {}
    if not measured(report):
        reason = base.get(NOT_MEASURED, "this report predates base-model scoring")
        return lines + [f"Base model not measured: {reason}.", ""]
    how = report.get("bootstrap") or {}
    lines += [f"The base model `{report.get('base_model_id')}` answered the same rows with the same prompts and "
              f"decoding, scored by the same code. Intervals: {how.get('confidence', CONFIDENCE):.0%}, "
              f"{how.get('method', 'bootstrap')}, {how.get('resamples', RESAMPLES)} resamples (seed "
              f"{how.get('seed')}); a delta whose interval contains 0 is not significant.", "",
              "| metric | base | adapter | delta | adapter 95 % CI | base 95 % CI | delta 95 % CI | |",
              "|---|---|---|---|---|---|---|---|"]
    for row in comparison_rows(report):
        lines.append(f"| {row['metric']} | {value_text(row['base'])} | {value_text(row['adapter'])} | {signed(row['delta'])} | "
                     f"{interval_text(row['adapter_ci'])} | {interval_text(row['base_ci'])} | "
                     f"{interval_text(row['delta_ci'])} | {significance(row)} |")
    return [*lines, ""]


def primary_metric(headline_metrics: tuple[str, ...]) -> str:
    """The agent's primary headline metric: its first."""
    return headline_metrics[0]


def beats_base(report: dict, metric: str, lower_is_better: frozenset[str]) -> tuple[bool, str, dict]:
    """(passed, description, numbers) of `adapter_beats_base` on `metric`: the adapter must do better than
    the base model (smaller for a lower-is-better metric); the interval says whether that is significant."""
    ours = _number((report.get("headline") or {}).get(metric))
    if not measured(report):
        reason = (report.get("base") or {}).get(NOT_MEASURED, "the report holds no base-model scores")
        return False, f"{metric}: base model not measured ({reason})", {"adapter": ours, "base": None}
    theirs = _number(report["base"]["headline"].get(metric))
    interval = ((report.get("ci") or {}).get("delta") or {}).get(metric)
    numbers = {"adapter": ours, "base": theirs, "delta": _number((report.get("delta") or {}).get(metric)),
               "delta_ci": interval}
    if ours is None or theirs is None:
        return False, f"{metric}: not measured for the {'adapter' if ours is None else 'base model'}", numbers
    lower = metric in lower_is_better
    better = ours < theirs if lower else ours > theirs
    from coursegpt_assets.scoring.bootstrap import excludes_zero

    verdict = "beats" if better else "does not beat"
    sure = "significant" if excludes_zero(interval) else "not significant"
    return better, (f"adapter {verdict} the base model on {metric} ({'lower' if lower else 'higher'} is better): "
                    f"{ours:.4f} vs {theirs:.4f}, delta {ours - theirs:+.4f}, 95 % CI {interval_text(interval)} "
                    f"({sure})"), numbers

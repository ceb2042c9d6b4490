"""The evaluation report of one pair as plain functions: rows evaluated, version, report.json, report.md, plots.

`evaluation_report` (coursegpt_assets/defs/evaluation/report.py) calls these; the model card consumes report.json
(`headline`, `benchmark_version`, `adapter_version`, `sources`) and report.md. The version hashes what decides
the numbers (adapter, benchmark, inference settings, row limit, token budget), so an unchanged input
maps to an existing report.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coursegpt_assets.data.benchmark_rows import subset_phrase
from coursegpt_assets.scoring.comparison import comparison_markdown
from coursegpt_assets.scoring.perplexity import perplexity_markdown

REPORT_FORMAT = 2  # 2: rows are sampled per benchmark source; `sources` lists them


def with_sources(report: dict, table: list[dict], manifest_sources: list[dict] | None = None) -> dict:
    """report.json's `sources`: each benchmark source, its origin (held-out data or an external benchmark), its
    rows and how many were answered (`data.benchmark_rows.sources`), with the licence and URL the benchmark
    manifest records for it."""
    known = {e.get("source"): e for e in manifest_sources or []}
    return {**report, "sources": [{**e, "license": known.get(e["source"], {}).get("license"),
                                   "url": known.get(e["source"], {}).get("url")} for e in table]}


def sources_lines(report: dict) -> list[str]:
    """report.md's list of benchmark sources ("subset of N of M rows" where a subset was answered)."""
    table = report.get("sources") or []
    if not table:
        return []
    return ["## Benchmark sources", "", *_table(["source", "origin", "rows answered"],
                                                 [[e["source"], e["origin"], subset_phrase(e)] for e in table]), ""]


def report_version(*, adapter_version: str, benchmark_version: str, settings: dict, limit: int | None,
                   max_new_tokens: int, base: Any = None) -> str:
    """A short stable hash of everything that decides the report's numbers (`base`: the base scores' key, or
    why they are not measured)."""
    inputs = {"format": REPORT_FORMAT, "adapter_version": adapter_version, "benchmark_version": benchmark_version,
              "settings": settings, "limit": limit, "max_new_tokens": max_new_tokens}
    if base is not None:
        inputs["base"] = base
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prediction_rows(rows: list[dict], completions: list[str], finish_reasons: list[str]) -> list[dict]:
    """predictions.jsonl: row i answers benchmark row i (`coursegpt score <agent>` reads `completion`)."""
    return [{"index": i, "id": row.get("id", i), "completion": text, "finish_reason": reason}
            for i, (row, text, reason) in enumerate(zip(rows, completions, finish_reasons, strict=True))]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def build_report(*, pair: str, agent: str, base_model: str, base_model_id: str, smoke: bool, version: str,
                 adapter_version: str, benchmark_version: str, benchmark_rows: int, score, generation,
                 budget: dict, limit: int | None, files: dict[str, Any], perplexity: dict | None = None) -> dict:
    """report.json: every number, where it came from, and the evidence that the adapter answered
    (`perplexity`: the held-out perplexity of adapter and base, `scoring.perplexity`)."""
    reasons = Counter(generation.finish_reasons)
    samples = len(generation.completions)
    tokens = generation.generated_tokens
    inference = {
        **generation.settings, "samples": samples, "benchmark_rows": benchmark_rows, "max_examples": limit,
        "max_new_tokens": budget["max_new_tokens"], "token_budget": budget,
        "answers_at_budget": reasons.get("length", 0), "wall_time_s": round(generation.wall_time_s, 3),
        "generated_tokens": tokens,
        "tokens_per_second": round(tokens / generation.wall_time_s, 2) if tokens and generation.wall_time_s else None,
        "finish_reasons": dict(sorted(reasons.items())),
    }
    return {
        "format": REPORT_FORMAT, "pair": pair, "agent": agent, "base_model": base_model,
        "base_model_id": base_model_id, "smoke": smoke, "report_version": version,
        "adapter_version": adapter_version, "adapter_sha256": generation.proof.get("adapter_sha256"),
        "benchmark_version": benchmark_version, "metric": score.metric,
        "metrics": score.buckets, "headline": score.headline, "thresholds": score.thresholds,
        "breakdowns": score.breakdowns, "extra": score.extra, "failure_examples": score.failures,
        "inference": inference, "adapter_proof": generation.proof, "files": files,
        **({"perplexity": perplexity} if perplexity is not None else {}),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# -- markdown -------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]


def _proof_line(proof: dict) -> str:
    sha = proof.get("adapter_sha256", "")[:16]
    if proof.get("kind") == "logit_probe":
        return (f"Adapter applied: logits with and without the adapter differ by up to "
                f"{proof['max_abs_logit_diff']:.4g} (mean {proof['mean_abs_logit_diff']:.4g}) over "
                f"{proof['tokens']} probe tokens (tolerance {proof['tolerance']:g}); weights sha256 `{sha}…`.")
    if proof.get("kind") == "served_model":
        return f"Served model `{proof.get('model')}` at {proof.get('base_url')}; adapter weights sha256 `{sha}…`."
    if proof.get("kind") == "vertex_endpoint":
        return f"Vertex endpoint `{proof.get('endpoint')}`; adapter weights sha256 `{sha}…`."
    return f"Adapter weights sha256 `{sha}…`."


def report_markdown(report: dict, plot_metrics: tuple[str, ...]) -> str:
    inf = report["inference"]
    lines = [f"# Evaluation report: {report['pair']}", ""]
    if report.get("smoke"):
        lines += ["_Smoke model: a tiny locally built model that proves the pipeline runs, not a real result._", ""]
    lines += [
        f"Adapter `{report['adapter_version']}` on benchmark `{report['benchmark_version'][:16]}`: "
        f"{inf['samples']} of {inf['benchmark_rows']} rows, {inf['backend']}, greedy, "
        f"max {inf['max_new_tokens']} new tokens ({report['metric']}).", "", _proof_line(report["adapter_proof"]), "",
        *sources_lines(report),
        "## Headline", "", *_table(["metric", "value"], [[k, v] for k, v in report["headline"].items()]), "",
    ]
    if "base" in report:
        lines += comparison_markdown(report)
    columns = list(dict.fromkeys([*report["headline"], *plot_metrics]))
    for title, groups in [("Metrics by bucket", report["metrics"]), *report["breakdowns"].items()]:
        if not groups:
            continue
        shown = [c for c in columns if any(c in values for values in groups.values())]
        rows = [[name, values.get("samples"), *(values.get(c) for c in shown)] for name, values in groups.items()]
        lines += [f"## {title[0].upper()}{title[1:]}", "", *_table(["group", "samples", *shown], rows), ""]
    verdicts = report.get("thresholds") or {}
    if verdicts.get("checks"):
        lines += ["## Thresholds", "", f"{verdicts['passed']} pass, {verdicts['failed']} fail, "
                  f"{verdicts['missing']} not measured.", ""]
        failed = [[c["bucket"], c["metric"], c["bound"], c["threshold"], c["value"], c["status"]]
                  for c in verdicts["checks"] if c["status"] != "pass"]
        if failed:
            lines += _table(["bucket", "metric", "bound", "threshold", "value", "status"], failed) + [""]
    lines += perplexity_markdown(report)
    reasons = ", ".join(f"{k} {v}" for k, v in inf["finish_reasons"].items())
    lines += ["## Generation", "", f"Finish reasons: {reasons}. Wall time {inf['wall_time_s']:.1f} s"
              + (f", {inf['tokens_per_second']:.1f} generated tokens/s." if inf.get("tokens_per_second") else "."), ""]
    if inf.get("token_budget"):
        lines += [f"Token budget {inf['max_new_tokens']} ({inf['token_budget']['source']}): "
                  f"{inf.get('answers_at_budget', 0)} of {inf['samples']} answers stopped at it.", ""]
    if report["failure_examples"]:
        lines += ["## Failure examples", ""]
        for f in report["failure_examples"]:
            detail = {k: v for k, v in f.items() if k not in ("index", "id", "completion")}
            lines.append(f"- `{f['id']}`: {_fmt(json.dumps(detail, default=str))}; output: "
                         f"`{_fmt(f.get('completion', ''))[:160]}`")
        lines.append("")
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------------------
def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def bar_chart(groups: dict[str, dict[str, Any]], metrics: tuple[str, ...], path: Path, *, title: str,
              ylabel: str = "score") -> Path | None:
    """Grouped bars: one group per category, one bar per metric, sample counts under the labels."""
    shown = [m for m in metrics if any(_finite(v.get(m)) for v in groups.values())]
    if not groups or not shown:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    width = 0.8 / len(shown)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) * max(1, len(shown) / 2)), 3.8), dpi=100)
    for j, metric in enumerate(shown):
        values = [groups[n].get(metric) for n in names]
        xs = [i + (j - (len(shown) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, [v if _finite(v) else 0.0 for v in values], width, label=metric)
    labels = [f"{n}\n(n={groups[n]['samples']})" if "samples" in groups[n] else n for n in names]
    ax.set_xticks(range(len(names)), labels, fontsize=7, rotation=30 if len(names) > 4 else 0, ha="center")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if all(0 <= (groups[n].get(m) or 0) <= 1 for n in names for m in shown if _finite(groups[n].get(m))):
        ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(score, folder: Path, pair: str) -> list[str]:
    """One PNG per breakdown (per-category bars); returns the file names written."""
    names = []
    charts = {"buckets": score.buckets} if len(score.buckets) > 1 else {}
    for title, groups in {**charts, **score.breakdowns}.items():
        path = bar_chart(groups, score.plot_metrics, folder / f"{slug(title)}.png", title=f"{pair}: {title}")
        if path is not None:
            names.append(path.name)
    return names

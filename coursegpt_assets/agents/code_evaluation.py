"""How the code agent is evaluated: its benchmark rows and their score.

Benchmark rows are the held-out test split with everything pass@1 needs; each completion runs against its
row's asserts in the sandbox (`scoring/code_eval.py`).
"""

from __future__ import annotations

from coursegpt_assets.scoring.agent_scores import AgentScore, preview, row_id

HEADLINE = ("pass@1",)


def code_rows(test: list[dict]) -> list[dict]:
    """The held-out test split with everything pass@1 needs; `reference` is the dataset's own solution."""
    return [
        {"id": r["id"], "source": "test", "instruction": r["instruction"], "entry_point": r["entry_point"],
         "testcase": r["testcase"], "reference": r["code"]}
        for r in test
    ]


def benchmark_score(rows: list[dict], completions: list[str]) -> AgentScore:
    """pass@1: each completion runs against its row's asserts in the sandbox."""
    from coursegpt_assets.scoring.metric_modules import load_metric

    report = load_metric("code_pass_at_k").compute(
        predictions=list(completions), references=[list(row["testcase"]) for row in rows],
        entry_points=[str(row.get("entry_point") or "") for row in rows], k=[1])
    overall = report["metrics"]["overall"]
    total = max(overall["samples"], 1)
    outcomes = {reason: {"samples": count, "share": count / total}
                for reason, count in sorted(overall["reasons"].items())}
    failures = [{"index": s["index"], "id": row_id(rows, s["index"]), "reason": s["reason"],
                 "detail": preview(s.get("detail") or ""), "completion": preview(completions[s["index"]])}
                for s in report["samples"] if not s["passed"]]
    return AgentScore(
        metric="code_pass_at_k",
        buckets={"overall": {"samples": overall["samples"], "pass@1": overall["pass@1"]}},
        headline={name: overall.get(name) for name in HEADLINE},
        breakdowns={"outcome": outcomes}, plot_metrics=("share",), failures=failures[:10],
        extra={"outcomes": overall["reasons"], "sandbox": report.get("config", {}).get("sandbox")}, raw=report,
    )

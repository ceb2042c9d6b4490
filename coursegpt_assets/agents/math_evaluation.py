"""How the math agent is evaluated: its benchmark rows, their score, and `coursegpt score math`.

Benchmark rows are the held-out validation split plus cloze / single-choice / worked-solution files: by
default the shipped MathBench files (`coursegpt_assets/benchmarks/math/mathbench/`, Apache-2.0), else the
files $COURSEGPT_MATH_BENCHMARKS or the benchmark config names. Scores are final-answer accuracy
(math-verify) and the seed's exact match, per level, file and topic.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from coursegpt_assets.agents.base import Agent, ScoreCommand
from coursegpt_assets.data.benchmark_rows import (
    EXTERNAL,
    HELD_OUT,
    SHIPPED_BENCHMARKS,
    BenchmarkError,
    source_info,
)
from coursegpt_assets.scoring.agent_scores import AgentScore, preview, row_id
from coursegpt_assets.scoring.files import check_pairing, objects, read_jsonl, text_table, write_report
from coursegpt_assets.scoring.math_answers import gold_answer, prediction_text, row_level, score_math

MATH_BENCHMARKS_VARIABLE = "COURSEGPT_MATH_BENCHMARKS"
DEFAULT_MATH_BENCHMARKS = SHIPPED_BENCHMARKS / "math" / "mathbench"
HEADLINE = ("accuracy", "seed_exact_match")
_LETTERS = "ABCDEFGHIJ"


# -- benchmark rows ----------------------------------------------------------------------------------
def math_benchmark_files(entries: Iterable[str] | None = None) -> list[Path]:
    """Files from config entries, else COURSEGPT_MATH_BENCHMARKS (os.pathsep-separated), else shipped MathBench.

    Each entry is a .jsonl file, a folder (all its .jsonl files) or a glob pattern.
    """
    if entries is None:
        env = os.environ.get(MATH_BENCHMARKS_VARIABLE, "").strip()
        entries = [e for e in env.split(os.pathsep) if e.strip()] if env else [str(DEFAULT_MATH_BENCHMARKS)]
    files: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            found = sorted(path.glob("*.jsonl"))
        elif path.is_file():
            found = [path]
        else:
            found = [Path(p) for p in sorted(glob.glob(str(path)))]
        if not found:
            raise BenchmarkError(f"math benchmark entry {entry!r} matches no .jsonl file")
        files += [f for f in found if f not in files]
    return files


def file_source(path: Path) -> dict:
    """Where a benchmark file's rows come from: its folder's `source.json`, else the file itself (external)."""
    info = source_info(path.parent)
    if info is None:
        return {"name": path.stem, "origin": EXTERNAL, "license": None, "url": None}
    return info


def _math_file_row(path: Path, line_no: int, row: dict, source: dict) -> dict:
    where = f"{path} line {line_no}"
    question = row.get("question") or row.get("problem")
    if not isinstance(question, str) or not question.strip():
        raise BenchmarkError(f"{where}: no 'question' text")
    try:
        answer = gold_answer(row)
    except ValueError as e:
        raise BenchmarkError(f"{where}: {e}") from None
    if not answer:
        raise BenchmarkError(f"{where}: empty answer")
    named = source["name"] != path.stem  # a named benchmark (source.json) prefixes its ids
    out = {
        "id": f"{source['name']}/{path.stem}:{line_no}" if named else f"{path.stem}:{line_no}",
        "source": source["name"], "origin": source["origin"], "file": path.stem,
        "question": question, "answer": answer, "topic": str(row.get("topic") or ""),
    }
    out["level"] = row_level(row, path.stem)
    options = row.get("options")
    if options:
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise BenchmarkError(f"{where}: 'options' must be a list of strings")
        if answer.upper() not in _LETTERS[: len(options)]:
            raise BenchmarkError(f"{where}: answer {answer!r} is not a letter A-{_LETTERS[len(options) - 1]}")
        out.update(format="single_choice", options=options, answer=answer.upper())
    elif "####" in str(row.get("answer", "")):
        out.update(format="worked_solution", solution=str(row["answer"]).rsplit("####", 1)[0].strip())
    else:
        out["format"] = "cloze"
    return out


def math_file_rows(path: Path) -> list[dict]:
    """Rows of one cloze / single-choice / worked-solution ("... #### answer") file; a bad row fails naming
    its line."""
    rows, source = [], file_source(path)
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchmarkError(f"{path.name} line {line_no}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise BenchmarkError(f"{path.name} line {line_no}: expected a JSON object")
            rows.append(_math_file_row(path, line_no, row, source))
    return rows


def math_validation_rows(agent: Agent, validation: list[dict]) -> list[dict]:
    """The held-out split as open-answer rows (gold = the source's or the extracted final answer).

    Split records may be in the source's shape or the agent's canonical one; `clean_record` reads both.
    """
    rows = []
    for r in validation:
        canonical = agent.clean_record(r)
        rows.append({"id": r["id"], "source": "validation", "origin": HELD_OUT, "file": "validation", "format": "open",
                     "question": canonical["problem"], "answer": canonical["answer"],
                     "topic": "", "level": "unknown"})  # MathX rows carry no level
    return rows


def math_rows(agent: Agent, validation: list[dict] | None, *,
              files: list[str] | None) -> tuple[list[dict], list[dict]]:
    """The validation split's rows (None: left out), then every benchmark file's; and the files read."""
    rows = math_validation_rows(agent, validation) if validation is not None else []
    read = []
    for path in math_benchmark_files(files):
        file_rows = math_file_rows(path)
        rows += file_rows
        source = file_source(path)
        read.append({"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                     "rows": len(file_rows), "source": source["name"], "license": source["license"],
                     "url": source["url"]})
    return rows, read


# -- scores ------------------------------------------------------------------------------------------
def benchmark_score(rows: list[dict], completions: list[str]) -> AgentScore:
    """Final-answer accuracy (math-verify) and the seed's exact match, per level, file and topic."""
    from coursegpt_assets.scoring.metric_modules import load_metric

    report = load_metric("math_answer").compute(
        predictions=list(completions), references=[str(row["answer"]) for row in rows],
        options=[row.get("options") or None for row in rows], topics=[row.get("topic") for row in rows],
        file_labels=[row.get("file") for row in rows])
    metrics = report["metrics"]
    failures = [{"index": s["index"], "id": row_id(rows, s["index"]), "gold": s["gold"], "extracted": s["extracted"],
                 "completion": preview(completions[s["index"]])}
                for s in report["samples"] if not s["correct"]]
    return AgentScore(
        metric="math_answer", buckets={"overall": metrics["overall"]},
        headline={name: metrics["overall"].get(name) for name in HEADLINE},
        breakdowns={"level": metrics["by_level"], "benchmark file": metrics["by_file"]},
        plot_metrics=HEADLINE, failures=failures[:10],
        extra={"by_topic": metrics["by_topic"]}, raw=report,
        per_row={name: [float(s[name if name != "accuracy" else "correct"]) for s in report["samples"]]
                 for name in HEADLINE},
    )


# -- `coursegpt score math` --------------------------------------------------------------------------
def score_math_files(benchmark_paths: list[str], predictions_path: str, out_path: str) -> dict[str, Any]:
    """Score a math predictions file against one or more benchmark files (concatenated in order)."""
    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    for path in benchmark_paths:
        numbered = read_jsonl(path)
        file_rows = objects(path, numbered)
        for (line, _), row in zip(numbered, file_rows, strict=True):  # name path:line before scoring
            try:
                gold_answer(row)
            except ValueError as e:
                raise ValueError(f"{path}:{line}: {e}") from None
        rows += file_rows
        labels += [Path(path).stem] * len(file_rows)
    numbered_predictions = read_jsonl(predictions_path)
    for line, prediction in numbered_predictions:
        try:
            prediction_text(prediction, line)
        except ValueError as e:
            raise ValueError(f"{predictions_path}:{line}: {str(e).split(': ', 1)[-1]}") from None
    predictions = [row for _, row in numbered_predictions]
    check_pairing(" + ".join(map(str, benchmark_paths)), rows, predictions_path, predictions)
    report = score_math(rows, predictions, file_labels=labels)
    report["config"] = {"benchmark": [str(p) for p in benchmark_paths], "predictions": str(predictions_path),
                        "total_samples": len(rows)}
    write_report(out_path, report)
    return report


def math_summary(report: dict[str, Any]) -> str:
    metrics = report["metrics"]
    rows = [["overall", "all", *metrics["overall"].values()]]
    rows += [["level", name, *values.values()] for name, values in metrics["by_level"].items()]
    rows += [["file", name, *values.values()] for name, values in metrics["by_file"].items()]
    return text_table(["group", "name", "samples", "accuracy", "seed_exact_match"], rows)


SCORE_COMMAND = ScoreCommand(
    help="final-answer accuracy overall, per level, file and topic",
    arguments=(
        ("--benchmark", {"required": True, "nargs": "+", "help": "benchmark JSONL file(s), concatenated in order"}),
        ("--predictions", {"required": True, "help": 'JSONL: {"completion": text} rows'}),
        ("--out", {"required": True, "help": "report JSON to write"}),
    ),
    score=lambda a: score_math_files(a.benchmark, a.predictions, a.out),
    summary=math_summary,
)

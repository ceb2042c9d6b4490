"""pass@1 throughput of the sandboxed code scorer: serial (workers=1) vs parallel (all cores).

Why: every sample costs a bwrap sandbox plus a Python start-up, so scoring a benchmark is
dominated by per-sample overhead; running sandboxes in parallel should scale with cores
(target: >= 1.6x on 2 cores). Prints timings, the speed-up and the per-sample overhead over
executing the same programs in-process (unsafe, for reference only).

    .venv/bin/python bench/code_eval.py [--samples 200] [--workers N] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import random
import time

from coursegpt_assets.scoring.code_eval import build_test_code, extract_code, score_code
from coursegpt_assets.scoring.sandbox import sandbox_problem

_TASKS = [  # (entry point, correct body, wrong body, test inputs -> expected via the correct body)
    ("add", "return a + b", "return a - b", [(1, 2), (5, -3), (0, 0)]),
    ("mul", "return a * b", "return a + b", [(2, 3), (4, 5), (-1, 7)]),
    ("maxi", "return a if a > b else b", "return a if a < b else b", [(3, 9), (9, 3), (4, 4)]),
    ("gcd", "return a if b == 0 else gcd(b, a % b)", "return min(a, b)", [(12, 18), (7, 5), (9, 6)]),
    ("power", "return a ** b", "return a * b", [(2, 10), (3, 3), (5, 0)]),
]


def generate(samples: int, seed: int = 0) -> tuple[list[dict], list[str]]:
    """`samples` problems, each with one completion: ~60% correct, 30% wrong, 10% syntax errors."""
    rng = random.Random(seed)
    rows, completions = [], []
    for i in range(samples):
        name, good, bad, cases = _TASKS[i % len(_TASKS)]
        entry = f"{name}_{i}"
        reference = {}
        exec(f"def {name}(a, b):\n    {good}\n", reference)
        asserts = [f"assert {entry}({a}, {b}) == {reference[name](a, b)!r}" for a, b in cases]
        rows.append({"instruction": f"Write {entry}(a, b).", "entry_point": entry, "testcase": asserts})
        roll = rng.random()
        body = good if roll < 0.6 else bad
        code = f"def {entry}(a, b):\n    {body.replace(name + '(', entry + '(')}\n"
        if roll >= 0.9:
            code = code.replace("(a, b):", "(a, b)", 1)  # syntax error
        completions.append(f"Sure:\n```python\n{code}```\n")
    return rows, completions


def in_process_seconds(rows: list[dict], completions: list[str]) -> float:
    """Execute the same programs directly in this process (no isolation) as the floor."""
    started = time.perf_counter()
    for row, text in zip(rows, completions, strict=True):
        try:
            exec(
                compile(extract_code(text, row["entry_point"]) + "\n" + build_test_code(row), "s", "exec"), {}
            )
        except (AssertionError, SyntaxError):
            pass
    return time.perf_counter() - started


def timed(rows: list[dict], completions: list[str], workers: int, repeats: int) -> tuple[float, dict]:
    best, report = float("inf"), {}
    for _ in range(repeats):
        started = time.perf_counter()
        report = score_code(rows, completions, workers=workers, timeout_s=10)
        best = min(best, time.perf_counter() - started)
    return best, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=1, help="best of N timings per mode")
    args = parser.parse_args()
    problem = sandbox_problem()
    if problem:
        raise SystemExit(f"sandbox unavailable: {problem}")
    rows, completions = generate(args.samples)
    score_code(rows[:2], completions[:2], workers=1)  # warm caches (bwrap, interpreter pages)
    serial_s, serial = timed(rows, completions, 1, args.repeats)
    parallel_s, parallel = timed(rows, completions, args.workers, args.repeats)
    floor_s = in_process_seconds(rows, completions)
    same = [s["passed"] for s in serial["samples"]] == [s["passed"] for s in parallel["samples"]]
    n = args.samples
    print(f"samples: {n}  cpus: {os.cpu_count()}  parallel workers: {args.workers}")
    print(
        f"pass@1: serial {serial['metrics']['overall']['pass@1']:.3f}, parallel "
        f"{parallel['metrics']['overall']['pass@1']:.3f}, identical per-sample results: {same}"
    )
    print(f"reasons: {serial['metrics']['overall']['reasons']}")
    print(
        f"serial   (workers=1): {serial_s:7.2f} s  {n / serial_s:7.1f} samples/s  {1000 * serial_s / n:6.1f} ms/sample"
    )
    print(
        f"parallel (workers={args.workers}): {parallel_s:7.2f} s  {n / parallel_s:7.1f} samples/s  "
        f"{1000 * parallel_s / n:6.1f} ms/sample"
    )
    print(f"speed-up: {serial_s / parallel_s:.2f}x (target >= 1.6x on 2 cores)")
    print(
        f"in-process exec of the same programs: {1000 * floor_s / n:.3f} ms/sample; "
        f"sandbox overhead: {1000 * (serial_s - floor_s) / n:.1f} ms/sample"
    )
    if not same:
        raise SystemExit("serial and parallel runs disagree")


if __name__ == "__main__":
    main()

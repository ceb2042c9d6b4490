"""Math subset: pick the seeded 10,000-row subset from a 5,000,000-row MathX-shaped Parquet file.

Ours: `coursegpt_assets.data.subset.select_subset` exactly as the math agent's `load_raw` calls it: it
reads seeded row groups spread over the file, at most 10 % of its rows (`parquet_plan`), and runs the
SipHash bottom-k over them; the bench prints the rows read and their share of the source. Also timed:
the single streaming pass over every row that the subset used before (`bottom_k(source_batches(...))`).
Baseline: the naive way — `pandas.read_parquet` of the whole file, then `.sample(n=10000,
random_state=seed)`. Each runs in its own fresh process; the parent samples its RSS every 50 ms (peak
reported) and stops the baseline if it passes --baseline-cap-gib, so the bench cannot starve a shared
machine. Target: under 60 s and under 2 GiB on 2 cores, reading at most 10 % of the rows.

The file is generated once (seeded, ~0.8 GB of text per million rows, ~3% repeated problems like MathX)
under bench/out/ and reused. --row-group-rows sets its row groups (the unit a bounded read fetches).

    .venv/bin/python bench/math_subset.py [--rows 5000000] [--k 10000] [--seed 42] [--row-group-rows 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
CHUNK = 100_000  # rows generated at a time (~90 MB of text)

OURS = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from coursegpt_assets.agents.math import AGENT, PROBLEM_FIELDS
from coursegpt_assets.data.subset import bottom_k, select_subset, source_batches
start = time.perf_counter()
if sys.argv[5] == "stream":  # the single pass over every row
    sel = bottom_k(source_batches(sys.argv[2], PROBLEM_FIELDS), int(sys.argv[3]), int(sys.argv[4]),
                   AGENT.is_valid_row)
else:
    sel = select_subset(sys.argv[2], k=int(sys.argv[3]), seed=int(sys.argv[4]), key_fields=PROBLEM_FIELDS,
                        is_valid=AGENT.is_valid_row)
print(json.dumps({"wall_s": time.perf_counter() - start, "selected": len(sel.rows), "scanned": sel.scanned,
                  "materialised": sel.materialised, "batches": sel.batches, "read_mode": sel.read_mode,
                  "first_lines": [r.line for r in sel.rows[:5]],
                  "maxrss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""

NAIVE = """
import json, resource, sys, time
import pandas as pd
start = time.perf_counter()
df = pd.read_parquet(sys.argv[2])
sample = df.sample(n=int(sys.argv[3]), random_state=int(sys.argv[4]))
print(json.dumps({"wall_s": time.perf_counter() - start, "selected": len(sample), "scanned": len(df),
                  "maxrss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def generate(path: Path, rows: int, row_group_rows: int, seed: int = 2024) -> None:
    """MathX-shaped rows: problem, generated_solution (step-by-step, boxed answer), expected_answer."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    topics = pa.array([
        "a triangle with integer sides", "the sequence defined by a recurrence", "a bag of coloured marbles",
        "the polynomial with real coefficients", "a train leaving the station", "the sum of the digits",
        "a circle inscribed in a square", "the number of lattice paths", "a geometric series",
        "the remainder upon division",
    ])
    steps = pa.array([
        "First we rewrite the expression in a simpler form. ",
        "Next we substitute the known values into the equation. ",
        "We check the boundary cases separately to avoid division by zero. ",
        "Applying the identity again reduces the problem to a linear equation. ",
        "Counting the cases carefully gives the total. ",
    ])
    tmp = path.with_suffix(".tmp")
    writer = None
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        ids = np.arange(start, start + n)
        repeat = rng.random(n) < 0.03  # MathX lists some problems with several solutions
        ids = np.where(repeat & (ids > 0), np.maximum(ids - rng.integers(1, 5_000, n), 0), ids)
        a, b, c = (pa.array(rng.integers(2, 10_000, n)).cast(pa.string()) for _ in range(3))
        answer = pa.array(rng.integers(-500, 50_000, n)).cast(pa.string())
        topic = topics.take(pa.array(rng.integers(0, len(topics), n)))
        problem = pc.binary_join_element_wise(
            "Problem ", pa.array(ids).cast(pa.string()), ": Consider ", topic, ". Given that $x = ", a,
            "$ and $y = ", b, "$, determine the value of the expression $3x^2 - 2xy + ", c,
            "$ and explain each step of your reasoning.", "")
        body = pc.binary_repeat(steps.take(pa.array(rng.integers(0, len(steps), n))),
                                pa.array(rng.integers(6, 16, n)))
        solution = pc.binary_join_element_wise(
            "Let us solve this step by step. ", body, "Substituting $x = ", a, "$ and $y = ", b,
            "$ gives the final value.\n\nTherefore the answer is $\\boxed{", answer, "}$.", "")
        table = pa.table({"problem": problem, "generated_solution": solution, "expected_answer": answer})
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=row_group_rows)
    writer.close()
    os.replace(tmp, path)


def run_measured(code: str, args: list[str], cap_gib: float | None) -> dict:
    """Run `code` in a fresh interpreter; peak RSS sampled every 50 ms, killed above cap_gib."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    handle, peak, killed = psutil.Process(proc.pid), 0, False
    while proc.poll() is None:
        try:
            peak = max(peak, handle.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        if cap_gib and peak > cap_gib * 2**30:
            proc.kill()
            killed = True
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    result = {"outer_wall_s": time.perf_counter() - start, "sampled_peak_gib": peak / 2**30, "killed": killed}
    if proc.returncode == 0:
        result |= json.loads(out.strip().splitlines()[-1])
    elif not killed:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{err[-2000:]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--k", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--row-group-rows", type=int, default=10_000)
    parser.add_argument("--baseline-cap-gib", type=float, default=8.0)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    import pyarrow.parquet as pq

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"mathx_{args.rows}_rg{args.row_group_rows}.parquet"
    if not path.exists() or pq.ParquetFile(path).metadata.num_rows != args.rows:
        t = time.perf_counter()
        generate(path, args.rows, args.row_group_rows)
        print(f"generated {path} in {time.perf_counter() - t:.0f} s")
    meta = pq.ParquetFile(path).metadata
    text_bytes = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    print(f"source: {path.name}, {meta.num_rows:,} rows, {meta.num_row_groups} row groups, "
          f"{path.stat().st_size / 2**30:.2f} GiB on disk, {text_bytes / 2**30:.2f} GiB uncompressed")
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()[0]:.2f} "
          f"(shared with other jobs: timings include contention)")

    common = [str(path), str(args.k), str(args.seed)]
    runs = {}
    for mode in ("bounded", "stream"):
        run = runs[mode] = run_measured(OURS, [str(ROOT), *common, mode], cap_gib=None)
        print(f"{mode:7}: {run['wall_s']:.1f} s wall, "
              f"peak RSS {max(run['maxrss_gib'], run['sampled_peak_gib']):.2f} GiB, {run['selected']:,} selected; "
              f"read {run['scanned']:,} of {meta.num_rows:,} rows ({run['scanned'] / meta.num_rows:.1%} of the "
              f"source, {run['read_mode']}), {run['materialised']:,} rows turned into Python objects, "
              f"first lines {run['first_lines']}")
    ours = runs["bounded"]
    if args.skip_baseline:
        return
    naive = run_measured(NAIVE, [str(ROOT), *common], cap_gib=args.baseline_cap_gib)
    if naive["killed"]:
        print(f"naive  : stopped at {naive['sampled_peak_gib']:.2f} GiB RSS after {naive['outer_wall_s']:.1f} s "
              f"(over the {args.baseline_cap_gib:g} GiB cap) without finishing pd.read_parquet + sample")
    else:
        naive_peak = max(naive["maxrss_gib"], naive["sampled_peak_gib"])
        ours_peak = max(ours["maxrss_gib"], ours["sampled_peak_gib"])
        print(f"naive  : {naive['wall_s']:.1f} s wall, peak RSS {naive_peak:.2f} GiB")
        print(f"ratio  : time ours/naive {ours['wall_s'] / naive['wall_s']:.2f}, "
              f"memory ours/naive {ours_peak / naive_peak:.3f}")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

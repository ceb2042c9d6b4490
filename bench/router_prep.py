"""Router data prep: raw → clean → splits → tuning JSONL through the real assets, vs the seed's script.

The baseline does what the seed's `prepare_vertex_tuning_dataset.py` did — read the JSONL, shuffle,
slice 85/10/5, dump prompt/completion JSONL — with no validation. Both run in this process on the same
synthetic records (the shipped fixture's valid records, replicated with fresh ids and query variants).
Wall times are medians of --repeat runs, on one Dagster instance created before timing; peak memory is
traced in a separate pass so it does not slow the timed runs. Target: ratio ≤ 1.0 (no slower than the
baseline while also validating).

Two things keep the comparison fair to the baseline. The heap that exists before timing (Dagster,
pydantic, the instance) is frozen out of the garbage collector, so neither side's collections walk
objects the seed's standalone script would not have. Dirty pages are flushed before each timed run, so
neither side pays for the other's writes. The pipeline's wall time is also split into the time inside
its four steps (the data work) and the rest (Dagster: runs, event log, compute-log capture), which does
not grow with the data.

    .venv/bin/python bench/router_prep.py --sizes 8189 200000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import dagster as dg

from coursegpt_assets.agents.router import AGENT, validate
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.defs.data.assets import DATA_ASSETS
from coursegpt_assets.defs.tuning.assets import tuning_dataset
from resources.local_store import LocalStore

PAIR = "router__llama31-8b"


def make_source(n: int, path: Path) -> Path:
    templates = []
    for line in (FIXTURES_DIR / "router.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not validate(record):
            templates.append(record)
    with path.open("w") as fh:
        for i in range(n):
            base = templates[i % len(templates)]
            record = dict(base, id=f"router_{i:07d}", user_query=f"{base['user_query']} (variant {i})")
            fh.write(json.dumps(record) + "\n")
    return path


def baseline(source: Path, out: Path) -> None:
    """The seed's script: read, shuffle, slice, dump prompt/completion."""
    records = [json.loads(line) for line in source.open()]
    random.Random(42).shuffle(records)
    n = len(records)
    n_val, n_test = int(n * 0.10), int(n * 0.05)
    splits = {"validation": records[:n_val], "test": records[n_val:n_val + n_test], "train": records[n_val + n_test:]}
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with (out / f"{name}.jsonl").open("w") as fh:
            for r in rows:
                fh.write(json.dumps({"prompt": AGENT.vertex_prompt(r), "completion": AGENT.assistant_text(r)}) + "\n")


def pipeline(source: Path, root: Path, instance: dg.DagsterInstance | None = None) -> None:
    """The assets as a deployment runs them: on an instance that already exists (creating one is a
    SQLite schema migration, not data preparation; pass none to include it)."""
    store = LocalStore(root=str(root))
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    data = dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store}, instance=instance,
                          run_config={**quiet, "ops": {"raw_examples": {"config": {"source": str(source)}}}})
    tuning = dg.materialize([tuning_dataset, *[a.to_source_asset() for a in DATA_ASSETS]], partition_key=PAIR,
                   resources={"store": store}, selection=[tuning_dataset], run_config=quiet, instance=instance)
    return [data.run_id, tuning.run_id]


def step_seconds(instance: dg.DagsterInstance, run_ids: list[str]) -> float:
    """Seconds spent inside the steps of these runs (STEP_START to STEP_SUCCESS)."""
    total = 0.0
    for run_id in run_ids:
        started = {}
        for entry in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START,
                                                        dg.DagsterEventType.STEP_SUCCESS}):
            if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                started[entry.step_key] = entry.timestamp
            else:
                total += entry.timestamp - started[entry.step_key]
    return total


def timed(fn, *args, **kwargs):
    """(seconds, result) of one call."""
    os.sync()  # untimed: flush what the previous run left dirty
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def peak_mib(fn, *args) -> float:
    tracemalloc.start()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8189, 200_000])
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed runs per size (default: 3 up to 20,000 records, 1 above)")
    parser.add_argument("--no-memory", action="store_true", help="skip the traced-memory pass")
    args = parser.parse_args()
    print(f"{'records':>9} {'baseline s':>11} {'pipeline s':>11} {'ratio':>6} {'in steps s':>11} {'steps ratio':>12} "
          f"{'base MiB':>9} {'pipe MiB':>9}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="router-prep-") as tmp:
            tmp = Path(tmp)
            source = make_source(n, tmp / "source.jsonl")
            repeat = args.repeat or (3 if n <= 20_000 else 1)
            base_t, pipe_t, steps_t = [], [], []
            with dg.instance_for_test() as instance:
                pipeline(source, tmp / "warm-up", instance=instance)  # first-run imports and caches
                gc.collect()
                gc.freeze()
                for i in range(repeat):  # interleaved so drift on a shared machine hits both alike
                    base_t.append(timed(baseline, source, tmp / f"base{i}")[0])
                    seconds, run_ids = timed(pipeline, source, tmp / f"store{i}", instance=instance)
                    pipe_t.append(seconds)
                    steps_t.append(step_seconds(instance, run_ids))
                gc.unfreeze()
            b, p, st = statistics.median(base_t), statistics.median(pipe_t), statistics.median(steps_t)
            mem = ("-", "-") if args.no_memory else (
                f"{peak_mib(baseline, source, tmp / 'base_m'):.0f}", f"{peak_mib(pipeline, source, tmp / 'store_m'):.0f}")
            print(f"{n:>9} {b:>11.2f} {p:>11.2f} {p / b:>6.2f} {st:>11.2f} {st / b:>12.2f} {mem[0]:>9} {mem[1]:>9}",
                  flush=True)


if __name__ == "__main__":
    main()

"""Router data prep on real-size records: raw → clean → splits → tuning JSONL with every check, vs the seed's script.

The baseline does what the seed's `prepare_vertex_tuning_dataset.py` did — read the JSONL, shuffle,
slice 85/10/5, dump prompt/completion JSONL — with no validation. The pipeline is the real chain as a run
has it: `raw_examples`, `clean_examples`, `dataset_splits` with their schema.yml checks, then
`tuning_dataset` with its schema.yml checks and the blocking tuning checks, for `router__tiny-llama`.

Records are shaped like the real traces: each is one of the 322 traces of
`../shared/data/router/router_benchmark_hard.jsonl` (completions of ~5,050 characters) turned back into a
router record, or, without that file, a shipped fixture record whose list fields are lengthened to the
same size; every copy gets a fresh id and query. The bench's own copy of the training plan (COURSEGPT_PLAN)
raises tiny-llama's context and the cost budget so the blocking length checks let these rows through; the
shipped plan is untouched.

Each side runs in a fresh process, one after the other, alternating (`--repeat`), on the same source file.
Wall time is what that process spends on the work (after its imports and, for the pipeline, after the
Dagster instance exists and a 20-record warm-up run); peak memory is the largest sum of RSS over the
process and its children, sampled every 20 ms. Targets at 200,000 records: time ratio ≤ 1.0, memory
ratio ≤ 0.5.

    .venv/bin/python bench/router_prep.py --sizes 50000 200000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_TRACES = Path(os.environ.get("COURSEGPT_SHARED", ROOT.parent / "shared")) / "data/router/router_benchmark_hard.jsonl"
PAIR = "router__tiny-llama"
REAL_COMPLETION_CHARS = 5050  # the real traces' mean completion length
SAMPLE_S = 0.02


# -- real-size records -------------------------------------------------------------------------------
def trace_records(path: Path) -> list[dict]:
    """The real traces (prompt/completion rows) as router records: the query from the prompt, the ten keys
    from the completion."""
    records = []
    for row in (json.loads(line) for line in path.open() if line.strip()):
        query = row["prompt"].split("User query:\n", 1)[1].removesuffix("\n")
        records.append({"id": f"trace_{row['index']}", "user_query": query, **json.loads(row["completion"])})
    return records


def padded_fixture_records() -> list[dict]:
    """The shipped fixture's valid records, their list fields lengthened until the completion is as long as
    a real trace's (for a machine without the shared traces)."""
    from coursegpt_assets.agents.router import AGENT, valid_fixture_records

    records = []
    for record in valid_fixture_records():
        step = 0
        while len(AGENT.assistant_text(record)) < REAL_COMPLETION_CHARS:
            key = ("thinking_outline", "acceptance_criteria", "expected_artifacts", "todo_list")[step % 4]
            record[key] = [*record[key], f"{record[key][step // 4 % len(record[key])]} (step {step})"]
            step += 1
        records.append(record)
    return records


def make_source(n: int, path: Path) -> tuple[Path, str, float]:
    """n real-size records at `path`; returns (path, where the shapes came from, mean completion chars)."""
    from coursegpt_assets.agents.router import AGENT, validate

    if SHARED_TRACES.is_file():
        templates, origin = trace_records(SHARED_TRACES), f"{SHARED_TRACES.name} ({SHARED_TRACES})"
    else:
        templates, origin = padded_fixture_records(), "the shipped fixture, padded to real-trace length"
    if bad := [(t["id"], validate(t)) for t in templates if validate(t)]:
        raise SystemExit(f"template records do not validate: {bad[:3]}")
    chars = statistics.mean(len(AGENT.assistant_text(t)) for t in templates)
    with path.open("w") as fh:
        for i in range(n):
            base = templates[i % len(templates)]
            fh.write(json.dumps(dict(base, id=f"router_{i:07d}", user_query=f"{base['user_query']} (variant {i})"))
                     + "\n")
    return path, origin, chars


def bench_plan(path: Path) -> Path:
    """The shipped plan with tiny-llama's context and the cost budget raised (real traces are ~1,600
    estimated tokens; tiny-llama's 1,024 would block every row)."""
    import yaml

    plan = yaml.safe_load((ROOT / "training_plan.yaml").read_text())
    plan["base_models"]["tiny-llama"]["max_length"] = 16384
    plan["cost"]["budget_usd"] = 1e9
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


# -- the two sides, each run in a child process ------------------------------------------------------
def baseline(source: Path, out: Path) -> dict:
    """The seed's script: read, shuffle, slice, dump prompt/completion."""
    from coursegpt_assets.agents.router import AGENT

    start = time.perf_counter()
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
    return {"seconds": time.perf_counter() - start}


def pipeline(source: Path, out: Path) -> dict:
    """The chain with every check, on a Dagster instance created (and warmed up on 20 records) before timing."""
    import dagster as dg

    from coursegpt_assets.defs.data.assets import DATA_ASSETS
    from coursegpt_assets.defs.tuning.assets import tuning_dataset
    from coursegpt_assets.defs.tuning.checks import TUNING_DATA_CHECKS
    from dbt_style_checks.loader import build_dbt_checks
    from resources.local_store import LocalStore

    data_defs = [*DATA_ASSETS, *build_dbt_checks(only=["clean_examples", "dataset_splits"])]
    tuning_defs = [tuning_dataset, *TUNING_DATA_CHECKS, *build_dbt_checks(only=["tuning_dataset"]),
                   *[a.to_source_asset() for a in DATA_ASSETS]]
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

    def chain(src: Path, root: Path, instance) -> list:
        store = {"store": LocalStore(root=str(root))}
        data = dg.materialize(data_defs, partition_key="router", resources=store, instance=instance,
                              run_config={**quiet, "ops": {"raw_examples": {"config": {"source": str(src)}}}})
        tuning = dg.materialize(tuning_defs, partition_key=PAIR, resources=store, instance=instance,
                                selection=dg.AssetSelection.assets(tuning_dataset), run_config=quiet)
        return [data, tuning]

    with dg.instance_for_test() as instance:
        out.mkdir(parents=True, exist_ok=True)
        warm = out / "warm-up.jsonl"
        warm.write_text("".join(line for _, line in zip(range(20), source.open(), strict=False)))
        chain(warm, out / "warm-up", instance)
        start = time.perf_counter()
        results = chain(source, out / "store", instance)
        seconds = time.perf_counter() - start
        checks = [e for r in results for e in r.get_asset_check_evaluations()]
        failed = sorted(f"{e.asset_key.path[-1]}.{e.check_name}" for e in checks if not e.passed)
        return {"seconds": seconds, "checks": len(checks), "checks_failed": failed,
                "steps": step_seconds(instance, [r.run_id for r in results])}


def step_seconds(instance, run_ids: list[str]) -> dict[str, float]:
    """Seconds inside each step of these runs (STEP_START to STEP_SUCCESS or STEP_FAILURE)."""
    import dagster as dg

    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    started, spent = {}, {}
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=kinds):
            if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                started[entry.step_key] = entry.timestamp
            else:
                spent[entry.step_key] = round(entry.timestamp - started[entry.step_key], 2)
    return spent


def run_child(side: str, source: Path, out: Path, plan: Path) -> dict:
    """Run one side in a fresh process; its result plus the peak RSS of its process tree."""
    import psutil

    os.sync()  # untimed: what the previous run left dirty does not land on this one
    result_file = out.with_suffix(".json")
    env = {**os.environ, "COURSEGPT_PLAN": str(plan), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", side, str(source), str(out), str(result_file)],
                            env=env, cwd=ROOT)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(SAMPLE_S)
    if proc.returncode:
        raise SystemExit(f"{side} child failed with exit code {proc.returncode}")
    result = json.loads(result_file.read_text())
    return {**result, "process_seconds": time.perf_counter() - start, "peak_mib": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side per size (medians reported)")
    parser.add_argument("--child", nargs=4, metavar=("SIDE", "SOURCE", "OUT", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, source, out, result = args.child
        report = (baseline if side == "baseline" else pipeline)(Path(source), Path(out))
        Path(result).write_text(json.dumps(report))
        return
    with tempfile.TemporaryDirectory(prefix="router-prep-") as tmp:
        tmp = Path(tmp)
        plan = bench_plan(tmp / "plan.yaml")
        print(f"{'records':>9} {'seed s':>8} {'chain s':>8} {'ratio':>6} {'seed MiB':>9} {'chain MiB':>10} {'ratio':>6}"
              f"  checks")
        for n in args.sizes:
            source, origin, chars = make_source(n, tmp / f"source-{n}.jsonl")
            runs = {"baseline": [], "pipeline": []}
            for i in range(args.repeat):  # alternating, so drift on a shared machine hits both alike
                for side in runs:
                    runs[side].append(run_child(side, source, tmp / f"{side}-{n}-{i}", plan))
            seed, chain = runs["baseline"], runs["pipeline"]
            b, p = (statistics.median(r["seconds"] for r in rs) for rs in (seed, chain))
            bm, pm = (statistics.median(r["peak_mib"] for r in rs) for rs in (seed, chain))
            failed = sorted({c for r in chain for c in r["checks_failed"]})
            print(f"{n:>9} {b:>8.1f} {p:>8.1f} {p / b:>6.2f} {bm:>9.0f} {pm:>10.0f} {pm / bm:>6.2f}  "
                  f"{chain[0]['checks']} evaluated, not passed: {', '.join(failed) or 'none'}", flush=True)
            print(f"          records from {origin}; mean completion {chars:,.0f} chars; "
                  f"process wall seed {statistics.median(r['process_seconds'] for r in seed):.1f} s, "
                  f"chain {statistics.median(r['process_seconds'] for r in chain):.1f} s", flush=True)
            print("          steps (last chain run): " + ", ".join(f"{k} {v:.1f}" for k, v in chain[-1]["steps"].items()),
                  flush=True)
            for side in runs:  # the stores of this size are not needed for the next
                for i in range(args.repeat):
                    subprocess.run(["rm", "-rf", str(tmp / f"{side}-{n}-{i}")], check=False)
            source.unlink()


if __name__ == "__main__":
    main()

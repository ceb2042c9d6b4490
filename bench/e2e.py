"""Wall time per asset for `make run`'s graph (every *__tiny-llama pair), on a fresh temporary home.

Prints one line per asset and partition (step time as Dagster measured it), the wall time of each
stage and the whole graph (target: under 5 minutes on 2 cores after install).

    .venv/bin/python bench/e2e.py [--parallel N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coursegpt-e2e-") as home:
        os.environ.update(COURSEGPT_HOME=home, DAGSTER_HOME=f"{home}/dagster")
        os.makedirs(f"{home}/dagster", exist_ok=True)
        open(f"{home}/dagster/dagster.yaml", "w").close()
        import dagster as dg

        from coursegpt_assets.cli.runner import run_pipeline
        from coursegpt_assets.core.plan import default_plan
        from coursegpt_assets.definitions import defs

        plan = default_plan()
        graph = defs.resolve_asset_graph()
        defined = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
        start = time.perf_counter()
        ok, lines = run_pipeline(
            instance=dg.DagsterInstance.get(), agents=plan.agent_names,
            pairs=[p.key for p in plan.planned_pairs if plan.base_models[p.base_model].smoke],
            assets=None, defined_assets=defined, max_parallel=args.parallel, emit=lambda _: None,
        )
        wall = time.perf_counter() - start
    per_asset: dict[str, list[float]] = defaultdict(list)
    for line in lines:
        per_asset[line.asset].append(line.seconds)
    print(f"{'step':<44} {'runs':>4} {'median s':>9} {'max s':>7}")
    for asset, seconds in per_asset.items():
        print(f"{asset:<44} {len(seconds):>4} {statistics.median(seconds):>9.1f} {max(seconds):>7.1f}")
    failed = [f"{x.asset}[{x.partition}]" for x in lines if x.status != "success"]
    print(f"\nwhole graph: {wall:.1f} s wall ({'ok' if ok else 'FAILED: ' + ', '.join(failed)}); "
          f"target < 300 s; ratio to target {wall / 300:.2f}")


if __name__ == "__main__":
    main()

"""How long new_adapter_sensor takes to scan a store holding 1,000 adapter versions (target: < 2 s a tick).

Why: the sensor lists the whole `adapters/` prefix every tick (a GCS listing in production), so its
cost grows with every adapter ever trained. Builds a temporary local store with N adapter folders
(the files the adapter asset writes, tiny contents) spread over the planned pairs, then times
  - a plain `os.walk` over adapters/ finding the summaries (the floor for any local scan);
  - the sensor's scan (ArtifactStore.list_keys + adapter_scan.scan), first tick and steady state;
  - a full `evaluate_tick` of the sensor on a test instance (cursor, instance look-ups, run requests).

    .venv/bin/python bench/sensor_scan.py [--adapters 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import dagster as dg

from coursegpt_assets.core import layout
from coursegpt_assets.core.layout import SUMMARY_FILE as SUMMARY
from coursegpt_assets.core.names import split_pair
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from resources.local_store import LocalStore
from resources.storage import ArtifactStore
from schedules.adapter_scan import ScanCursor, scan
from schedules.sensors import new_adapter_sensor

FILES = ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "chat_template.jinja", "loss_curve.png", "job.json")


def build_store(root: str, n: int) -> ArtifactStore:
    store = LocalStore(root=root)
    pairs = PAIR_PARTITIONS.get_partition_keys()
    for i in range(n):
        pair = pairs[i % len(pairs)]
        folder = layout.adapter_dir(pair, f"v{i:05d}")
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        for name in FILES:  # plain writes: building the fixture is not what is measured
            with open(os.path.join(root, folder, name), "wb") as fh:
                fh.write(b"{}")
        agent, base = split_pair(pair)
        store.write_json(f"{folder}/{SUMMARY}", {"pair": pair, "agent": agent, "base_model": base,
                                                 "version": f"v{i:05d}", "steps": 8, "final_loss": 1.0})
    for pair in pairs:
        store.write_json(layout.adapter_latest(pair), {"version": "none"})
    return store


def stand_ins() -> list[dg.AssetsDefinition]:
    """The sensor's targets (adapter, evaluation_report, model_card), bodies irrelevant: only ticks run."""

    def make(name: str):
        @dg.asset(name=name, partitions_def=PAIR_PARTITIONS)
        def _asset() -> None:
            return None

        return _asset

    return [make(n) for n in ("adapter", "evaluation_report", "model_card")]


def walk_baseline(root: str) -> int:
    found = 0
    for _dirpath, _dirs, files in os.walk(os.path.join(root, layout.adapters_root())):
        found += SUMMARY in files
    return found


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pairs = PAIR_PARTITIONS.get_partition_keys()
    with tempfile.TemporaryDirectory() as root:
        store = build_store(root, args.adapters)
        files = sum(len(f) for _, _, f in os.walk(os.path.join(root, layout.adapters_root())))
        print(f"store: {args.adapters} adapter versions over {len(pairs)} pairs, {files} files")

        walk_s, found = timed(lambda: walk_baseline(root), args.repeats)
        assert found == args.adapters, found

        def first_scan():
            return scan(store.list_keys(layout.adapters_root()), ScanCursor(), known_pairs=pairs,
                        read_json=store.read_json)

        first_s, first = timed(first_scan, args.repeats)
        steady_s, steady = timed(lambda: scan(store.list_keys(layout.adapters_root()), first.cursor,
                                              known_pairs=pairs, read_json=store.read_json), args.repeats)
        assert len(first.new) == len(pairs) and not steady.new and not first.skipped

        defs = dg.Definitions(assets=stand_ins(), sensors=[new_adapter_sensor], resources={"store": store})
        with dg.instance_for_test() as instance:
            def tick(cursor=None):
                with dg.build_sensor_context(instance_ref=instance.get_ref(), cursor=cursor, definitions=defs,
                                             resources={"store": store}) as context:
                    return new_adapter_sensor.evaluate_tick(context)

            tick_first_s, result = timed(tick, args.repeats)
            tick_steady_s, again = timed(lambda: tick(result.cursor), args.repeats)
            assert len(result.run_requests) == len(pairs) and not again.run_requests
        cursor_kb = len(first.cursor.dump()) / 1024

    print(f"os.walk baseline (summaries found)      {walk_s * 1000:8.1f} ms")
    print(f"sensor scan, first tick (reads {args.adapters} summaries) {first_s * 1000:8.1f} ms  "
          f"({first_s / walk_s:.1f}x the walk)")
    print(f"sensor scan, steady state (no change)   {steady_s * 1000:8.1f} ms  ({steady_s / walk_s:.1f}x the walk)")
    print(f"evaluate_tick, first tick               {tick_first_s * 1000:8.1f} ms  "
          f"({len(result.run_requests)} requests, {len(result.asset_events)} materialisations)")
    print(f"evaluate_tick, steady state             {tick_steady_s * 1000:8.1f} ms")
    print(f"cursor size                             {cursor_kb:8.1f} KiB")
    verdict = "meets" if max(tick_first_s, tick_steady_s) < 2.0 else "MISSES"
    print(f"target < 2 s per tick: {verdict} (worst tick {max(tick_first_s, tick_steady_s):.2f} s)")


if __name__ == "__main__":
    main()

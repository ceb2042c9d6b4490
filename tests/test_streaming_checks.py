"""The checks and the data path stream: all the tests of one asset share one read of each file, and no step
holds a partition's rows in memory (at most a handful are alive at once, however many the partition has)."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from typing import ClassVar

import dagster as dg
import pytest

from coursegpt_assets.agents.router import validate as validate_router
from coursegpt_assets.core import layout
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.data.sources import iter_jsonl_file
from coursegpt_assets.defs.data.assets import DATA_ASSETS
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from coursegpt_assets.defs.tuning.assets import tuning_dataset
from coursegpt_assets.defs.tuning.checks import TUNING_DATA_CHECKS
from dbt_style_checks.loader import PartitionData, run_tests
from dbt_style_checks.spec import load_schema
from resources.local_store import LocalStore

PAIR = "router__tiny-llama"


class Row(dict):
    """A row read from the store that counts how many rows are alive at once."""

    alive = peak = 0

    def __init__(self, *args):
        super().__init__(*args)
        Row.alive += 1
        Row.peak = max(Row.peak, Row.alive)

    def __del__(self):
        Row.alive -= 1


class CountingStore(LocalStore):
    """A LocalStore that counts the reads of each key and hands out counted rows."""

    reads: ClassVar[Counter] = Counter()

    def iter_jsonl(self, key: str):
        CountingStore.reads[key] += 1
        for row in super().iter_jsonl(key):
            yield Row(row)


@pytest.fixture
def counting(tmp_path):
    CountingStore.reads.clear()
    Row.alive = Row.peak = 0
    return CountingStore(root=str(tmp_path / "store"))


def _fixture_records() -> list[dict]:
    """The shipped fixture's valid records (it also holds invalid lines on purpose)."""
    return [r.record for r in iter_jsonl_file(FIXTURES_DIR / "router.jsonl")
            if isinstance(r.record, dict) and not validate_router(r.record)]


@dg.asset(name="tuning_dataset", partitions_def=PAIR_PARTITIONS)
def tuning_data_written() -> None:
    """Stands in for tuning_dataset, whose files are in the store already."""


def _router_path(store, source=None) -> None:
    config = {"ops": {"raw_examples": {"config": {"source": str(source)}}}} if source else None
    with dg.instance_for_test() as instance:
        dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store}, instance=instance,
                       run_config=config)
        dg.materialize([tuning_dataset, *[a.to_source_asset() for a in DATA_ASSETS]], selection=[tuning_dataset],
                       partition_key=PAIR, resources={"store": store}, instance=instance)


@pytest.mark.parametrize("asset, partition", [("dataset_splits", "router"), ("tuning_dataset", PAIR)])
def test_an_assets_tests_read_each_file_once_and_hold_no_rows(counting, asset, partition):
    _router_path(LocalStore(root=counting.root))
    tests = [t for t in load_schema() if t.asset == asset]
    results = run_tests(tests, PartitionData(counting, partition), partition)
    assert [r.check_name for r in results] == [t.name for t in tests] and all(r.passed for r in results)
    split_files = [layout.split_records("router", s, counting.read_json(layout.splits_manifest("router"))["version"])
                   for s in layout.SPLITS]
    tuning_files = [layout.tuning_records(PAIR, s) for s in layout.TUNING_SPLITS]
    # dataset_splits: its row tests and split tests share the read; tuning_dataset: its own files once, and
    # the splits its `relationships` test refers to once
    assert CountingStore.reads == Counter(split_files if asset == "dataset_splits" else split_files + tuning_files)
    assert max(r.metadata["rows_checked"].value for r in results if "rows_checked" in r.metadata) > 50
    assert Row.peak <= 3, f"{Row.peak} rows alive at once: a test holds the partition"


def test_the_blocking_tuning_checks_share_one_read(counting):
    _router_path(LocalStore(root=counting.root))
    result = dg.materialize([tuning_data_written, *TUNING_DATA_CHECKS], partition_key=PAIR,
                            resources={"store": counting})
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {
        "tuning_data_trainable": True, "tuning_cost_within_budget": True, "paid_job_data_is_real": True}
    assert {k: n for k, n in CountingStore.reads.items() if k.startswith("tuning/")} == {
        layout.tuning_records(PAIR, s): 1 for s in layout.TUNING_SPLITS}
    assert Row.peak <= 3


def test_the_data_path_holds_no_partition_in_memory(tmp_path):
    """raw → tuning on records of ~16 KB: the steps' traced peak stays a small share of the data they write
    (it was over the whole split set when dataset_splits and tuning_dataset kept every row)."""
    base = _fixture_records()
    pad = " ".join(["step"] * 1600)
    with (tmp_path / "big.jsonl").open("w") as fh:
        for i in range(2000):
            r = base[i % len(base)]
            fh.write(json.dumps({**r, "id": f"big_{i:05d}", "user_query": f"{r['user_query']} ({i})",
                                 "thinking_outline": [*r["thinking_outline"], f"{pad} {i}"]}) + "\n")
    store = LocalStore(root=str(tmp_path / "store"))
    _router_path(store, tmp_path / "big.jsonl")  # first run: imports and caches are not what is measured
    tracemalloc.start()
    try:
        _router_path(store, tmp_path / "big.jsonl")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    written = sum((tmp_path / "store" / k).stat().st_size for k in store.list_keys("datasets/router/splits")
                  if k.endswith(".jsonl")) + sum(
        (tmp_path / "store" / layout.tuning_records(PAIR, s)).stat().st_size for s in layout.TUNING_SPLITS)
    assert written > 30 * 2**20
    print(f"traced peak {peak / 2**20:.1f} MiB, written {written / 2**20:.1f} MiB")
    assert peak < 0.25 * written, f"traced peak {peak / 2**20:.0f} MiB for {written / 2**20:.0f} MiB written"


def test_direct_feeding_after_the_first_rows_decides_as_the_full_bookkeeping(tmp_path, monkeypatch):
    """Past PRESENCE_ROWS rows a test without `where` is fed directly: every verdict, count and failing row
    is what feeding every row through the bookkeeping gives (here with PRESENCE_ROWS at 5 vs unlimited)."""
    import dbt_style_checks.loader as loader

    store = LocalStore(root=str(tmp_path / "store"))
    _router_path(store)
    clean = store.read_jsonl(layout.clean_records("router"))
    clean[20]["difficulty"] = "expert"
    clean[30]["id"] = clean[31]["id"]
    clean[40]["user_query"] = "   "
    store.write_jsonl(layout.clean_records("router"), clean)
    version = store.read_json(layout.splits_manifest("router"))["version"]
    leaked = store.read_jsonl(layout.split_records("router", "train", version))[3]
    validation = layout.split_records("router", "validation", version)
    store.write_jsonl(validation, [*store.read_jsonl(validation), {**leaked, "user_query": leaked["user_query"].upper()}])

    def outcome(presence_rows: int) -> dict:
        monkeypatch.setattr(loader, "PRESENCE_ROWS", presence_rows)
        found = {}
        for asset, partition in [("clean_examples", "router"), ("dataset_splits", "router"), ("tuning_dataset", PAIR)]:
            tests = [t for t in load_schema() if t.asset == asset]
            for r in run_tests(tests, PartitionData(store, partition), partition):
                found[asset, r.check_name] = (r.passed, r.description, {k: v.value for k, v in r.metadata.items()})
        return found

    direct, bookkept = outcome(5), outcome(10**9)
    assert direct == bookkept
    assert {k for k, v in direct.items() if not v[0]} >= {
        ("clean_examples", "accepted_values_difficulty"), ("clean_examples", "unique_id"),
        ("clean_examples", "user_query_not_blank"), ("dataset_splits", "no_overlap_id"),
        ("dataset_splits", "no_overlap_normalised_user_query")}

"""A store ready for evaluation_report: a small router benchmark and a tiny trained adapter for
`router__tiny-llama`. Shared by the evaluation tests of every inference backend (fixtures registered in
tests/conftest.py)."""

from __future__ import annotations

import pytest

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.router_evaluation import router_rows
from coursegpt_assets.core import layout
from resources.storage import ArtifactStore
from tests.fakes.tiny_adapter import write_tiny_adapter
from tests.fakes.tuning_store import valid_router_records

PAIR = "router__tiny-llama"
BENCHMARK_ROWS = 6
HELD_OUT_ROWS = 4  # test split rows whose perplexity the report measures


def router_benchmark() -> list[dict]:
    return router_rows(get_agent("router"), valid_router_records()[:BENCHMARK_ROWS], [], seed=0)


def write_benchmark(store: ArtifactStore, rows: list[dict], version: str = "bench-v1") -> None:
    store.write_jsonl(layout.benchmark_records("router"), rows)
    store.write_json(layout.benchmark_manifest("router"), {"agent": "router", "version": version,
                                                           "rows": len(rows)})


HELD_OUT_SET = "held-out-v1"  # the split-set version the fake splits manifest publishes


def write_held_out(store: ArtifactStore, records: list[dict], *, agent: str = "router", split: str = "test") -> None:
    """The agent's held-out split (what held-out perplexity scores) and its splits manifest, as dataset_splits
    writes them; the other splits are empty."""
    hashes, counts = {}, {}
    for name in layout.SPLITS:
        _, counts[name], hashes[name] = store.write_jsonl(layout.split_records(agent, name, HELD_OUT_SET),
                                                          records if name == split else [])
    store.write_json(layout.splits_manifest(agent), {"agent": agent, "version": HELD_OUT_SET, "counts": counts,
                                                     "sha256": hashes, "seed": 42, "think_wrapping": False})


@pytest.fixture(scope="module")
def models_home(tmp_path_factory):
    """Where the tiny base model is built: once per module."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def evaluated_store(store, models_home):
    """(store, adapter version): the router benchmark, a held-out test split and a tiny adapter trained for a
    few steps."""
    write_benchmark(store, router_benchmark())
    write_held_out(store, valid_router_records()[BENCHMARK_ROWS:BENCHMARK_ROWS + HELD_OUT_ROWS])
    version = write_tiny_adapter(store, PAIR, models_home=models_home, steps=3)
    return store, version

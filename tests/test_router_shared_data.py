"""Every real trace of ../shared/data/router/router_benchmark_hard.jsonl goes through the router data path."""

import json

import dagster as dg

from coursegpt_assets.defs.data.assets import DATA_ASSETS
from coursegpt_assets.defs.tuning.assets import tuning_dataset
from tests.conftest import requires_shared

pytestmark = requires_shared


def recover_raw_records(rows: list[dict]) -> list[dict]:
    """Turn prompt/completion rows back into raw router records (id from the seed's split and index)."""
    records = []
    for row in rows:
        split = row["source"].rsplit("/", 1)[-1].removesuffix(".jsonl")
        query = row["prompt"].split("User query:\n", 1)[1].removesuffix("\n")
        records.append({"id": f"hard_{split}_{row['index']}", "user_query": query, **json.loads(row["completion"])})
    return records


def test_every_hard_benchmark_trace_is_valid_and_round_trips(shared_dir, store, tmp_path):
    rows = [json.loads(line) for line in (shared_dir / "data/router/router_benchmark_hard.jsonl").open()]
    source = tmp_path / "router_hard.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in recover_raw_records(rows)))
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store},
                   run_config={"ops": {"raw_examples": {"config": {"source": str(source)}}}})
    assert store.list_keys("quarantine") == []
    manifest = store.read_json("datasets/router/splits/manifest.json")
    assert manifest["counts"] == {"train": 322 - 32 - 16, "validation": 32, "test": 16}

    dg.materialize([tuning_dataset, *[a.to_source_asset() for a in DATA_ASSETS]], partition_key="router__llama31-8b",
                   resources={"store": store}, selection=[tuning_dataset])
    by_query = {r["prompt"]: r["completion"] for r in rows}
    tuned = store.read_jsonl("tuning/router__llama31-8b/train.jsonl") + store.read_jsonl(
        "tuning/router__llama31-8b/validation.jsonl")
    assert len(tuned) == 322 - 16
    for row in tuned:  # the seed's Vertex prompt/completion strings are reproduced byte for byte
        assert by_query[row["prompt"]] == row["completion"]

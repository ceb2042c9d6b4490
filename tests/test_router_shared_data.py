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


def test_tiny_llama_trains_on_real_size_traces_every_check_passing(shared_dir, store, tmp_path):
    """The embedded default works on real records, not only its own fixtures: every recovered trace fits
    router__tiny-llama's context and training length, and every check of tuning_dataset passes."""
    from coursegpt_assets.defs.tuning.checks import TUNING_DATA_CHECKS
    from dbt_style_checks.loader import build_dbt_checks

    rows = [json.loads(line) for line in (shared_dir / "data/router/router_benchmark_hard.jsonl").open()]
    source = tmp_path / "router_hard.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in recover_raw_records(rows)))
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store},
                   run_config={"ops": {"raw_examples": {"config": {"source": str(source)}}}})
    result = dg.materialize(
        [tuning_dataset, *[a.to_source_asset() for a in DATA_ASSETS], *build_dbt_checks(only=["tuning_dataset"]),
         *TUNING_DATA_CHECKS], partition_key="router__tiny-llama", resources={"store": store}, raise_on_error=False)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {"max_tokens_model_context", "max_tokens_training_length", "tuning_data_trainable"} <= set(checks)
    assert [name for name, e in checks.items() if not e.passed] == []
    tuned = store.read_jsonl("tuning/router__tiny-llama/train.jsonl")
    assert len(tuned) == 322 - 32 - 16  # every train trace, none dropped as too long

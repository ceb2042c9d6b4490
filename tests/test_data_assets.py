"""dagster.materialize tests for raw_examples → clean_examples → dataset_splits → tuning_dataset."""

import json

import dagster as dg
import pytest

from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.defs.data.assets import DATA_ASSETS, clean_examples, dataset_splits, raw_examples
from coursegpt_assets.defs.tuning.assets import tuning_dataset
from tests.conftest import split_key, step_failure_text


def _materialize(assets, partition, store, selection=None, run_config=None, raise_on_error=True):
    return dg.materialize(
        assets, partition_key=partition, resources={"store": store}, selection=selection,
        run_config=run_config, raise_on_error=raise_on_error,
    )


def _meta(result, asset):
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_router_chain_on_the_fixture(store):
    result = _materialize(DATA_ASSETS, "router", store)
    raw, clean, splits = (_meta(result, a) for a in ("raw_examples", "clean_examples", "dataset_splits"))
    lines = (FIXTURES_DIR / "router.jsonl").read_text().splitlines()
    assert raw["dagster/row_count"] == len(lines)
    assert clean["dagster/row_count"] + clean["quarantined_rows"] == len(lines)
    [quarantine_key] = store.list_keys("quarantine/router")
    quarantined = store.read_jsonl(quarantine_key)
    reasons = {q["line"]: q["reason"] for q in quarantined}
    assert any("unknown tool '/calculator'" in r for r in reasons.values())
    assert any("duplicate id" in r for r in reasons.values())
    assert any("not valid JSON" in r for r in reasons.values())
    for q in quarantined:  # the line number points at the offending source line
        if q["record"] is not None:
            assert json.loads(lines[q["line"] - 1]) == q["record"]
    manifest = store.read_json("datasets/router/splits/manifest.json")
    n = clean["dagster/row_count"]
    assert manifest["counts"] == {"train": n - n // 10 - n // 20, "validation": n // 10, "test": n // 20}
    assert splits["train_rows"] == manifest["counts"]["train"]
    ids = [{r["id"] for r in store.read_jsonl(split_key(store, "router", s))} for s in ("train", "validation", "test")]
    assert sum(map(len, ids)) == n and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    # the catalog's columns tab: the record fields, typed by their values
    for meta in (raw, clean, splits):
        columns = {c.name: c for c in meta["dagster/column_schema"].columns}
        assert columns["user_query"].type == "string" and columns["route_plan"].type == "list"
        assert columns["user_query"].constraints.nullable is False


def test_materialising_twice_gives_identical_splits(store):
    _materialize(DATA_ASSETS, "router", store)
    first = store.read_json("datasets/router/splits/manifest.json")["content_hash"]
    _materialize(DATA_ASSETS, "router", store)
    assert store.read_json("datasets/router/splits/manifest.json")["content_hash"] == first


def test_too_many_invalid_rows_fail_with_the_first_reasons(store, tmp_path):
    good = [json.loads(line) for line in (FIXTURES_DIR / "router.jsonl").read_text().splitlines()[:10]]
    bad = [dict(r, difficulty="impossible") for r in good[:3]]
    source = tmp_path / "router.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in good[3:] + bad) + "\n")
    result = _materialize(
        [raw_examples, clean_examples], "router", store, raise_on_error=False,
        run_config={"ops": {"raw_examples": {"config": {"source": str(source)}}}},
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    assert "invalid (limit 5%)" in message and "line 8" in message and "difficulty 'impossible'" in message
    # the quarantine is written so the user can inspect every rejected row
    [key] = store.list_keys("quarantine/router")
    assert len(store.read_jsonl(key)) == 3


def test_limit_and_think_wrapping_are_recorded(store):
    _materialize(DATA_ASSETS, "router", store, run_config={
        "ops": {"dataset_splits": {"config": {"limit": 40, "think_wrapping": True}}}
    })
    manifest = store.read_json("datasets/router/splits/manifest.json")
    assert sum(manifest["counts"].values()) == 40 and manifest["think_wrapping"] is True
    _materialize([tuning_dataset, *[a.to_source_asset() for a in DATA_ASSETS]], "router__qwen3-32b", store,
                 selection=[tuning_dataset])
    row = store.read_jsonl("tuning/router__qwen3-32b/train.jsonl")[0]
    assert row["completion"].startswith("<think>\n")


@pytest.mark.parametrize(("pair", "start", "end"), [
    ("router__tiny-llama", "<s><|system|>\n", "<|end|>\n"),
    ("router__llama31-8b", "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"),
    ("router__gemma3-27b", "<bos><start_of_turn>user\n", "<end_of_turn>\n"),
    ("router__qwen3-32b", "<|im_start|>system\n", "<|im_end|>\n"),
])
def test_tuning_dataset_renders_the_pair_family(store, pair, start, end):
    _materialize(DATA_ASSETS, "router", store)
    result = _materialize([tuning_dataset, *[a.to_source_asset() for a in DATA_ASSETS]], pair, store,
                          selection=[tuning_dataset])
    meta = _meta(result, "tuning_dataset")
    manifest = store.read_json(f"tuning/{pair}/manifest.json")
    splits = store.read_json("datasets/router/splits/manifest.json")["counts"]
    assert manifest["counts"] == {"train": splits["train"], "validation": splits["validation"]}
    assert meta["estimated_train_tokens"] > 0 and meta["rows_over_max_length"] == 0
    for row in store.read_jsonl(f"tuning/{pair}/train.jsonl"):
        assert row["text_prompt"].startswith(start) and row["text_completion"].endswith(end)
        assert row["prompt"] and row["completion"]
    assert manifest["data_version"] == meta["data_version"]


def test_dataset_splits_without_upstream_names_the_missing_file(store):
    result = _materialize([dataset_splits, *[a.to_source_asset() for a in (raw_examples, clean_examples)]],
                          "router", store, selection=[dataset_splits], raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    text = failure.step_failure_data.error.to_string()
    assert "clean/manifest.json does not exist; materialise clean_examples for router first" in text


def test_a_published_split_file_changed_afterwards_stops_tuning_and_names_the_producer(store):
    """A split file rewritten after its set was published (by hand, by another tool): caught."""
    _materialize(DATA_ASSETS, "router", store)
    validation = split_key(store, "router", "validation")
    rows = store.read_jsonl(validation)
    store.write_jsonl(validation, rows[:-1])
    pair = "router__llama31-8b"
    result = _materialize([tuning_dataset, *[a.to_source_asset() for a in DATA_ASSETS]], pair, store,
                          selection=[tuning_dataset], raise_on_error=False)
    assert not result.success
    text = step_failure_text(result)
    assert "do not match its manifest" in text and validation in text
    assert "Re-materialise dataset_splits for router" in text
    assert not store.exists(f"tuning/{pair}/train.jsonl")


def test_a_mixed_clean_set_stops_the_splits(store):
    _materialize(DATA_ASSETS, "router", store)
    store.write_lines("datasets/router/clean/index.jsonl", [b'["router_0001", "x"]'])
    result = _materialize([dataset_splits, *[a.to_source_asset() for a in (raw_examples, clean_examples)]],
                          "router", store, selection=[dataset_splits], raise_on_error=False)
    assert not result.success
    assert "clean/index.jsonl has sha256" in step_failure_text(result)
    assert "Re-materialise clean_examples for router" in step_failure_text(result)


def test_an_empty_source_fails_and_keeps_the_previous_raw_file(store, tmp_path):
    _materialize([raw_examples], "router", store)
    before = store.read_bytes("datasets/router/raw/records.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    result = _materialize([raw_examples], "router", store, raise_on_error=False,
                          run_config={"ops": {"raw_examples": {"config": {"source": str(empty)}}}})
    assert not result.success
    assert f"{empty} holds no records" in step_failure_text(result)
    assert store.read_bytes("datasets/router/raw/records.jsonl") == before


def test_a_folder_source_reads_record_files_only(store, tmp_path):
    folder = tmp_path / "router_data"
    folder.mkdir()
    (folder / "part-0.jsonl").write_bytes((FIXTURES_DIR / "router.jsonl").read_bytes())
    (folder / "dataset_info.json").write_text('{\n  "description": "metadata, not records"\n}\n')
    result = _materialize([raw_examples], "router", store,
                          run_config={"ops": {"raw_examples": {"config": {"source": str(folder)}}}})
    fixture_rows = sum(1 for line in (FIXTURES_DIR / "router.jsonl").read_text().splitlines() if line.strip())
    assert _meta(result, "raw_examples")["dagster/row_count"] == fixture_rows


def test_quarantine_names_the_file_and_its_line_in_a_folder_source(store, tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    good = [line for line in (FIXTURES_DIR / "router.jsonl").read_text().splitlines()
            if line.strip() and line.startswith("{") and '"router_9' not in line][:30]
    (folder / "a.jsonl").write_text("\n".join(good[:20]) + "\n")
    (folder / "b.jsonl").write_text("\n".join(good[20:25]) + "\n{not json\n" + "\n".join(good[25:]) + "\n")
    result = _materialize(DATA_ASSETS[:2], "router", store,
                          run_config={"ops": {"raw_examples": {"config": {"source": str(folder)}}}})
    quarantined = [q for q in store.read_jsonl(_meta(result, "clean_examples")["quarantine"].removeprefix(
        store.root.rstrip("/") + "/")) if q["reason"].startswith("not valid JSON")]
    assert [(q["file"], q["file_line"], q["line"]) for q in quarantined] == [("b.jsonl", 6, 26)]


@pytest.mark.parametrize("block", [1, 2, 3, 7, 1 << 20])
def test_last_nonblank_line_agrees_with_the_line_reader(tmp_path, monkeypatch, block):
    import random

    from coursegpt_assets.data import sources

    rng = random.Random(block)
    for trial in range(60):
        pieces = [rng.choice([b"", b"  ", b"\t", b"\r", b"\x0b", b'{"a": 1}', b"x" * rng.randint(1, 40)])
                  for _ in range(rng.randint(0, 25))]
        data = rng.choice([b"\n", b"\r\n"]).join(pieces) + rng.choice([b"", b"\n", b"\n\n  \n"])
        path = tmp_path / f"{trial}.jsonl"
        path.write_bytes(data)
        expected = max((row.line for row in sources.iter_jsonl_file(path)), default=0)
        monkeypatch.setattr(sources, "READ_BUFFER_BYTES", block)
        assert sources.last_nonblank_line(path) == expected, data
        monkeypatch.undo()

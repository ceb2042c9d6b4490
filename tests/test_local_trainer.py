"""tuning_job + adapter for router__tiny-llama with the real LocalTrainer (TRL + PEFT in a Pipes child).

The pair trains once per module (tens of seconds on 2 cores); the other tests read that run, re-run the
assets (no retraining) or tamper with a copy of the store.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
from types import SimpleNamespace

import dagster as dg
import pytest

from coursegpt_assets.core import layout
from coursegpt_assets.core.chat_templates import family
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.defs.adapters.assets import (
    ADAPTER_ASSETS,
    ADAPTER_CHECK,
    adapter,
    tuning_job,
)
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from coursegpt_assets.defs.tuning.checks import TUNING_DATA_CHECKS
from coursegpt_assets.training.spec import effective_hyperparameters
from coursegpt_assets.training.validation import validate_adapter
from resources.local_store import LocalStore
from resources.tuning import LocalTrainer
from tests.conftest import step_failure_text
from tests.fakes.tuning_store import plan_with_smoke_max_length, write_tuning_data

PAIR = "router__tiny-llama"
UPSTREAM = dg.AssetSpec("tuning_dataset", partitions_def=PAIR_PARTITIONS)
SUMMARY_FIELDS = {"pair", "agent", "base_model", "base_model_id", "version", "data_version", "backend", "device",
                  "hardware", "hyperparameters", "steps", "final_loss", "wall_time_s", "train_examples",
                  "validation_examples", "smoke", "tokens_per_second"}


def run(store, instance, selection=(tuning_job, adapter), raise_on_error=True):
    return dg.materialize([UPSTREAM, *ADAPTER_ASSETS, *TUNING_DATA_CHECKS], partition_key=PAIR, instance=instance,
                          resources={"store": store, "trainer": LocalTrainer()}, selection=list(selection),
                          raise_on_error=raise_on_error)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("trainer_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSEGPT_HOME", str(home))
        mp.setenv("COURSEGPT_PLAN", str(plan_with_smoke_max_length(home, 1024)))
        default_plan.cache_clear()
        default_plan()  # cached for this module; cleared again below
        store = LocalStore(root=str(home / "store"))
        manifest = write_tuning_data(store, PAIR)
        instance = dg.DagsterInstance.ephemeral()
        result = run(store, instance)
        version = store.read_json(layout.adapter_latest(PAIR))["version"]
        yield SimpleNamespace(store=store, instance=instance, result=result, manifest=manifest, version=version,
                              adir=layout.adapter_dir(PAIR, version))
    default_plan.cache_clear()


def test_adapter_folder_and_summary(trained):
    store, adir = trained.store, trained.adir
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "loss_curve.png", "training_summary.json"):
        assert store.exists(f"{adir}/{name}"), name
    assert store.read_bytes(f"{adir}/loss_curve.png")[:8] == b"\x89PNG\r\n\x1a\n"
    # the same curve on the tuning_job and adapter asset pages, embedded in markdown metadata
    png = base64.b64encode(store.read_bytes(f"{adir}/loss_curve.png")).decode()
    for node in ("tuning_job", "adapter"):
        [mat] = trained.result.asset_materializations_for_node(node)
        assert mat.metadata["loss_curve"].value == f"![Training and validation loss](data:image/png;base64,{png})"
    assert store.read_text(f"{adir}/chat_template.jinja") == family("tiny").template
    assert store.read_json(f"{adir}/adapter_config.json")["base_model_name_or_path"] == "local/tiny-llama"
    summary = store.read_json(f"{adir}/training_summary.json")
    assert SUMMARY_FIELDS <= set(summary)
    assert summary["data_version"] == trained.manifest["data_version"] and summary["version"] == trained.version
    assert summary["backend"] == "trl" and summary["device"] == "cpu" and summary["smoke"] is True
    assert summary["steps"] > 0 and math.isfinite(summary["final_loss"]) and summary["tokens_per_second"] > 0
    assert summary["hyperparameters"]["lora_rank"] == effective_hyperparameters(default_plan(), PAIR)["lora_rank"]
    assert summary["train_examples"] == min(trained.manifest["counts"]["train"], default_plan().smoke.max_train_examples)
    losses = [p["loss"] for p in summary["loss_history"]]
    assert losses[-1] < losses[0], f"loss did not go down: {losses}"


def test_every_logging_step_is_an_observation(trained):
    summary = trained.store.read_json(f"{trained.adir}/training_summary.json")
    observations = [e.asset_observation_data.asset_observation for e in trained.result.all_events
                    if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION]
    assert len(observations) == len(summary["loss_history"]) > 0
    for obs, point in zip(observations, summary["loss_history"], strict=True):
        assert obs.asset_key == dg.AssetKey("tuning_job") and obs.partition == PAIR
        assert obs.metadata["step"].value == point["step"]
        assert obs.metadata["loss"].value == pytest.approx(point["loss"])
        assert obs.metadata["learning_rate"].value > 0 and obs.metadata["tokens_per_second"].value > 0
    stored = trained.instance.fetch_observations(dg.AssetKey("tuning_job"), limit=100).records
    assert len(stored) == len(observations)


def test_materialisation_metadata_is_numeric(trained):
    [job_event, adapter_event] = trained.result.get_asset_materialization_events()
    meta = job_event.materialization.metadata
    assert isinstance(meta["final_loss"], dg.FloatMetadataValue) and isinstance(meta["steps"], dg.IntMetadataValue)
    assert meta["reused"].value is False and meta["version"].value == trained.version
    [check] = trained.result.get_asset_check_evaluations()
    assert check.check_name == ADAPTER_CHECK and check.passed
    assert adapter_event.materialization.metadata["lora_tensors"].value > 0


def test_unchanged_input_is_not_retrained(trained):
    stamp = os.stat(trained.store.uri(f"{trained.adir}/adapter_model.safetensors")).st_mtime_ns
    again = run(trained.store, trained.instance)
    metas = {e.asset_key.path[-1]: e.materialization.metadata for e in again.get_asset_materialization_events()}
    assert metas["tuning_job"]["reused"].value is True
    assert not [e for e in again.all_events if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION]
    assert os.stat(trained.store.uri(f"{trained.adir}/adapter_model.safetensors")).st_mtime_ns == stamp
    assert trained.store.list_keys(f"adapters/{PAIR}") == sorted(
        [*trained.store.list_keys(trained.adir), layout.adapter_latest(PAIR)])


def test_tampered_adapter_config_fails_the_blocking_check(trained, tmp_path):
    shutil.copytree(trained.store.root, tmp_path / "store")
    store = LocalStore(root=str(tmp_path / "store"))
    config = store.read_json(f"{trained.adir}/adapter_config.json")
    store.write_json(f"{trained.adir}/adapter_config.json", {**config, "r": 8, "target_modules": ["q_proj"]})
    store.delete(layout.adapter_latest(PAIR))
    result = run(store, dg.DagsterInstance.ephemeral(), selection=[adapter], raise_on_error=False)
    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    assert "r=8" in check.description and "target_modules" in check.description
    assert not store.exists(layout.adapter_latest(PAIR)), "a failing adapter must not become latest"


def test_missing_lora_tensors_are_reported(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "adapter"
    shutil.copytree(trained.store.uri(trained.adir), folder)
    hp = effective_hyperparameters(default_plan(), PAIR)
    args = dict(rank=hp["lora_rank"], target_modules=hp["target_modules"], base_model_id="local/tiny-llama")
    assert validate_adapter(folder, **args).valid
    tensors = load_file(folder / "adapter_model.safetensors")
    save_file({k: v for k, v in tensors.items() if ".v_proj." not in k}, folder / "adapter_model.safetensors")
    report = validate_adapter(folder, **args)
    assert [p for p in report.problems if "v_proj" in p and "0 lora_A" in p]
    (folder / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    assert any("cannot be read" in p for p in validate_adapter(folder, **args).problems)


def test_adapter_without_training_asks_for_tuning_job(tmp_path):
    store = LocalStore(root=str(tmp_path / "store"))
    write_tuning_data(store, PAIR)
    result = run(store, dg.DagsterInstance.ephemeral(), selection=[adapter], raise_on_error=False)
    assert not result.success
    assert "materialise tuning_job" in step_failure_text(result)


def test_bad_tuning_row_fails_the_child_with_its_line(tmp_path):
    store = LocalStore(root=str(tmp_path / "store"))
    from tests.fakes.tuning_store import router_rows

    rows = router_rows("tiny")[:12]
    rows[1] = {**rows[1], "text_completion": "   "}
    write_tuning_data(store, PAIR, rows=rows, validation=2)
    result = run(store, dg.DagsterInstance.ephemeral(), selection=[tuning_job], raise_on_error=False)
    assert not result.success
    message = step_failure_text(result)
    assert "exited with code" in message and "train.jsonl:2" in message and "text_completion" in message, message
    assert not store.list_keys("adapters"), "a failed training must leave no adapter behind"

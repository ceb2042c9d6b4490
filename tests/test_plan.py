from pathlib import Path

import pytest
import yaml

from coursegpt_assets.core.plan import PlanError, load_plan
from coursegpt_assets.defs.partitions import AGENT_PARTITIONS, AGENT_TO_PAIRS, PAIR_PARTITIONS, PAIRS_TO_AGENT

PLAN = Path(__file__).resolve().parent.parent / "training_plan.yaml"


def _write(tmp_path, mutate) -> Path:
    raw = yaml.safe_load(PLAN.read_text())
    mutate(raw)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_plan_has_the_seed_pairs_plus_tiny_for_every_agent():
    plan = load_plan(PLAN)
    assert plan.pair_keys == [
        "router__llama31-8b", "router__gemma3-27b", "router__qwen3-32b", "router__tiny-llama",
        "math__qwen3-32b", "math__gemma3-27b", "math__llama4-scout-17b", "math__tiny-llama",
        "code__llama31-8b", "code__tiny-llama",
    ]
    hp = plan.hyperparameters
    assert (hp.lora_rank, hp.epochs, hp.learning_rate_multiplier, hp.warmup_ratio) == (16, 3, 0.7, 0.1)
    assert set(hp.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert plan.base_models["llama31-8b"].vertex_id == "meta/llama3_1@llama-3.1-8b-instruct"


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, lambda r: r["hyperparameters"].update(lora_rnak=8))
    with pytest.raises(PlanError, match=r"hyperparameters\.lora_rnak: unknown key"):
        load_plan(path)


def test_bad_type_is_named_with_its_path(tmp_path):
    path = _write(tmp_path, lambda r: r["hyperparameters"].update(epochs="three"))
    with pytest.raises(PlanError, match=r"hyperparameters\.epochs"):
        load_plan(path)


def test_pair_with_unknown_base_model_is_rejected(tmp_path):
    path = _write(tmp_path, lambda r: r["pairs"]["router"].append("gpt-9"))
    with pytest.raises(PlanError, match="unknown base model 'gpt-9'"):
        load_plan(path)


def test_unknown_chat_family_is_rejected(tmp_path):
    path = _write(tmp_path, lambda r: r["base_models"]["qwen3-32b"].update(family="mistral"))
    with pytest.raises(PlanError, match=r"base_models\.qwen3-32b.*family 'mistral'"):
        load_plan(path)


def test_missing_plan_names_the_file(tmp_path):
    with pytest.raises(PlanError, match="plan.yaml: training plan not found"):
        load_plan(tmp_path / "plan.yaml")


def test_partitions_are_exactly_the_plan():
    plan = load_plan(PLAN)
    assert AGENT_PARTITIONS.get_partition_keys() == ["router", "math", "code"]
    assert PAIR_PARTITIONS.get_partition_keys() == plan.pair_keys
    # pair → agent and agent → pairs mappings cover every planned pair
    assert PAIRS_TO_AGENT.downstream_partition_keys_by_upstream_partition_key["math__tiny-llama"] == "math"
    assert set(AGENT_TO_PAIRS.downstream_partition_keys_by_upstream_partition_key["code"]) == {
        "code__llama31-8b", "code__tiny-llama"
    }

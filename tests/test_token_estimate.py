"""One token estimate (core/tokens.py) behind the tuning asset's length metadata, the blocking length and
cost checks and `coursegpt plan`: on non-ASCII rows, where characters and UTF-8 bytes differ, all three
report the same tokens and the same over-length rows, and the plan the cost of those tokens."""

from __future__ import annotations

import json

import dagster as dg

from coursegpt_assets.cli.status import plan_rows
from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.core.tokens import estimate_tokens, estimated_cost_usd
from coursegpt_assets.defs.data.assets import DATA_ASSETS
from coursegpt_assets.defs.tuning.assets import tuning_dataset
from coursegpt_assets.defs.tuning.checks import TUNING_DATA_CHECKS
from tests.fakes.tuning_store import valid_router_records

PAIR = "router__llama31-8b"  # a paid pair: 8,192-token context, priced by the cost guard
LONG_QUERY = "请把下面的证明分成若干步骤，并为每一步写出所需的计算。" * 450  # 12,150 characters, 36,450 bytes


def test_the_estimate_counts_utf8_bytes():
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("数学题") == 3  # 9 bytes; as characters it would be 1
    assert estimate_tokens("é" * 4) == 2
    assert estimate_tokens(b"abcde") == 2
    assert estimate_tokens("abcdef", bytes_per_token=3) == 2


def _cjk_source(tmp_path):
    records = [{**r, "user_query": "请先解释思路：" + r["user_query"],
                "route_rationale": "先用数学工具推导，再写代码验证。" + r["route_rationale"]}
               for r in valid_router_records()]
    for i in range(4):  # over the model's context by bytes, far inside it by characters
        records[i] = {**records[i], "id": f"{records[i]['id']}_long", "user_query": LONG_QUERY + str(i)}
    path = tmp_path / "router_cjk.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_non_ascii_rows_count_alike_in_the_asset_the_checks_and_the_plan(store, tmp_path):
    dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store},
                   run_config={"ops": {"raw_examples": {"config": {"source": str(_cjk_source(tmp_path))}}}})
    result = dg.materialize([tuning_dataset, *TUNING_DATA_CHECKS, *[a.to_source_asset() for a in DATA_ASSETS]],
                            partition_key=PAIR, resources={"store": store}, raise_on_error=False)

    rows = {s: store.read_jsonl(layout.tuning_records(PAIR, s)) for s in layout.TUNING_SPLITS}
    lengths = {s: [estimate_tokens(r["text_prompt"] + r["text_completion"]) for r in rs] for s, rs in rows.items()}
    context = default_plan().base_model_for(PAIR).max_length
    over = sum(n > context for ns in lengths.values() for n in ns)
    over_by_characters = sum(-(-len(r["text_prompt"] + r["text_completion"]) // 4) > context
                             for rs in rows.values() for r in rs)
    assert over >= 1 and over_by_characters == 0  # the case a single byte-based estimate exists for

    [event] = result.get_asset_materialization_events()
    asset = {k: v.value for k, v in event.materialization.metadata.items()}
    checks = {e.check_name: {k: v.value for k, v in e.metadata.items()} for e in result.get_asset_check_evaluations()}
    manifest = store.read_json(layout.tuning_manifest(PAIR))

    assert asset["estimated_train_tokens"] == manifest["token_estimate"]["train"]["total"] == sum(lengths["train"])
    assert checks["tuning_cost_within_budget"]["estimated_train_tokens"] == sum(lengths["train"])
    assert asset["rows_over_max_length"] == checks["tuning_data_trainable"]["rows_over_model_length"] == over
    assert checks["tuning_data_trainable"]["max_estimated_tokens"] == max(max(ns) for ns in lengths.values())

    plan = default_plan()
    cost = estimated_cost_usd(sum(lengths["train"]), plan.hyperparameters.epochs, plan.cost.price_per_million_tokens_usd)
    # COURSEGPT_ENV=local trains the pair here: the check prices nothing (tests/test_cost_guard.py prices a
    # Vertex pair); the plan shows what the same tokens would cost on Vertex AI
    assert checks["tuning_cost_within_budget"]["backend"] == "trl"
    assert checks["tuning_cost_within_budget"]["estimated_cost_usd"] == 0.0
    [row] = [r for r in plan_rows(store) if r[0] == PAIR]
    assert row[4] == str(sum(lengths["train"]))
    assert row[5] == (f"{cost:.2f} (from tuning data)" if cost >= 0.01 else "<0.01 (from tuning data)")

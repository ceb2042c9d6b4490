"""The cost guard prices paid jobs only: the blocking `tuning_cost_within_budget` check, `coursegpt plan` and
`coursegpt run --dry-run` on the same data. A pair trained locally passes with an estimate of its training
time however large its data; a pair tuned on Vertex AI (COURSEGPT_ENV=gcp and a Vertex model id) over the
budget is blocked. The plan's budget is lowered to $1 so that a few thousand real router rows are "big"."""

from __future__ import annotations

import dagster as dg
import pytest

from coursegpt_assets.cli.main import main
from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.core.tokens import estimate_tokens, estimated_cost_usd
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from coursegpt_assets.defs.tuning.assets import token_stats
from coursegpt_assets.defs.tuning.checks import TUNING_DATA_CHECKS
from tests.conftest import NAMED_SOURCES
from tests.fakes.tuning_store import plan_copy, router_rows, write_tuning_data

LOCAL_PAIR, VERTEX_PAIR = "router__tiny-llama", "router__llama31-8b"
BUDGET_USD = 1.0
COPIES = 20  # 78 real router rows × 20: about 0.9 M estimated tokens, $14-$23 at the Vertex rate


@dg.asset(name="tuning_dataset", partitions_def=PAIR_PARTITIONS)
def tuning_data_written() -> None:
    """Stands in for tuning_dataset: write_tuning_data has put the pair's files in the store already."""


@pytest.fixture(autouse=True)
def small_budget(tmp_path, monkeypatch):
    plan_copy(tmp_path / "training_plan.yaml", lambda raw: raw["cost"].update(budget_usd=BUDGET_USD),
              monkeypatch=monkeypatch)
    yield
    default_plan.cache_clear()


def big_data(store, pair: str) -> list[dict]:
    """COPIES × the router fixture's rows as the pair's tuning data, its manifest carrying the token estimate
    as tuning_dataset writes it (what `coursegpt plan` reads); returns the train rows."""
    base = default_plan().base_model_for(pair)
    rows = router_rows(base.family) * COPIES
    manifest = write_tuning_data(store, pair, rows=rows)
    splits = {"train": rows[:-8], "validation": rows[-8:]}
    manifest["token_estimate"] = {s: token_stats(split_rows, base.max_length) for s, split_rows in splits.items()}
    store.write_json(layout.tuning_manifest(pair), manifest)
    return splits["train"]


def cost_check(store, pair: str) -> tuple[bool, str, dict]:
    result = dg.materialize([tuning_data_written, *TUNING_DATA_CHECKS], partition_key=pair,
                            resources={"store": store}, raise_on_error=False)
    [e] = [e for e in result.get_asset_check_evaluations() if e.check_name == "tuning_cost_within_budget"]
    return e.passed, e.description, {k: v.value for k, v in e.metadata.items()}


def tokens(rows: list[dict]) -> list[int]:
    return [estimate_tokens(r["text_prompt"] + r["text_completion"]) for r in rows]


def test_a_big_local_dataset_passes_with_a_training_time_estimate(store):
    train = big_data(store, LOCAL_PAIR)
    plan = default_plan()
    all_tokens = sum(tokens(train))
    assert estimated_cost_usd(all_tokens, plan.smoke.epochs, plan.cost.price_per_million_tokens_usd) > BUDGET_USD

    passed, description, meta = cost_check(store, LOCAL_PAIR)
    assert passed, description
    # the smoke tier trains the first max_train_examples rows within max_length, smoke.epochs times
    local = sum([n for n in tokens(train) if n <= plan.smoke.max_length][: plan.smoke.max_train_examples])
    tps = plan.base_models["tiny-llama"].local_tokens_per_second
    assert meta["backend"] == "trl" and meta["estimated_cost_usd"] == 0.0
    assert meta["estimated_train_tokens"] == all_tokens and meta["local_train_tokens"] == local
    assert meta["estimated_local_training_s"] == pytest.approx(local * plan.smoke.epochs / tps)
    assert meta["throughput_source"] == "training_plan.yaml base_models.tiny-llama.local_tokens_per_second"
    assert "no cloud cost" in description and f"{tps:,.0f} tokens/s" in description


def test_a_measured_local_run_gives_the_throughput(store):
    big_data(store, LOCAL_PAIR)
    store.write_json(layout.adapter_latest(LOCAL_PAIR), {"version": "v1"})
    store.write_json(layout.adapter_summary(LOCAL_PAIR, "v1"), {"backend": "trl", "tokens_per_second": 5000.0})
    passed, description, meta = cost_check(store, LOCAL_PAIR)
    assert passed and meta["local_tokens_per_second"] == 5000.0
    assert meta["throughput_source"] == f"measured by {LOCAL_PAIR}'s training run v1"


def test_a_local_pair_without_a_throughput_still_passes_and_says_how_to_get_one(store):
    big_data(store, VERTEX_PAIR)  # the local environment trains even Llama 3.1 8B locally
    passed, description, meta = cost_check(store, VERTEX_PAIR)
    assert passed and meta["backend"] == "trl" and "estimated_local_training_s" not in meta
    assert "base_models.llama31-8b.local_tokens_per_second" in description


def test_a_vertex_pair_over_budget_is_blocked(gcs_store, monkeypatch):
    monkeypatch.setenv("COURSEGPT_ENV", "gcp")
    train = big_data(gcs_store, VERTEX_PAIR)
    plan = default_plan()
    passed, description, meta = cost_check(gcs_store, VERTEX_PAIR)
    cost = estimated_cost_usd(sum(tokens(train)), plan.hyperparameters.epochs, plan.cost.price_per_million_tokens_usd)
    assert not passed and meta["backend"] == "vertex"
    assert meta["estimated_cost_usd"] == cost > meta["budget_usd"] == BUDGET_USD
    assert f"OVER the ${BUDGET_USD:,.2f} budget" in description
    assert {s.name: s.blocking for c in TUNING_DATA_CHECKS for s in c.check_specs}["tuning_cost_within_budget"]

    big_data(gcs_store, LOCAL_PAIR)  # in gcp too, a pair without a Vertex model trains locally, unpriced
    assert cost_check(gcs_store, LOCAL_PAIR)[0]


def test_plan_and_dry_run_show_backend_and_cost_or_local_time(isolated_home, capsys):
    from resources.local_store import LocalStore

    store = LocalStore(root=str(isolated_home / "store"))
    big_data(store, LOCAL_PAIR)
    big_data(store, VERTEX_PAIR)
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if "__" in line.split(" ")[0]}
    assert " trl " in rows[LOCAL_PAIR] and "tok/s" in rows[LOCAL_PAIR] and "local (free)" in rows[LOCAL_PAIR]
    assert " trl " in rows[VERTEX_PAIR] and "unknown: set base_models.llama31-8b" in rows[VERTEX_PAIR]
    assert "blocks pairs tuned on Vertex AI only" in out

    assert main(["run", "--dry-run", "--agent", "router"]) == 0
    out = capsys.readouterr().out
    assert "nothing is run" in out and "coursegpt run: agents" not in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("router__")}
    assert set(rows) == {p for p in default_plan().pair_keys if p.startswith("router__")}
    assert "passes (no cloud cost)" in rows[LOCAL_PAIR] and "min local" in rows[LOCAL_PAIR]
    assert "1,669 tokens/s (training_plan.yaml base_models.tiny-llama" in rows[LOCAL_PAIR]
    assert "materialise dataset_splits (router) first" in rows["router__gemma3-27b"]
    assert "trains, evaluates" in rows[LOCAL_PAIR]  # nothing trained yet
    assert not (isolated_home / "dagster" / "history").exists()  # no run was recorded


def test_dry_run_in_gcp_shows_what_the_guard_would_block(gcs_store, monkeypatch, capsys):
    monkeypatch.setenv("COURSEGPT_ENV", "gcp")
    for name, value in NAMED_SOURCES.items():
        monkeypatch.setenv(name, value)
    big_data(gcs_store, VERTEX_PAIR)
    assert main(["run", "--dry-run", "--agent", "router", "--base-model", "llama31-8b"]) == 0
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith(VERTEX_PAIR)]
    assert " vertex " in row and "OVER budget" in row and f"BLOCKS: over the ${BUDGET_USD:,.2f} budget" in row

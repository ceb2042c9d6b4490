"""`hf://<id>[:<config>][@<revision>]` sources: read at the commit the revision names now, that commit
recorded in the raw and splits manifests and the metadata, and the card crediting the dataset and commit
actually read (not the plan's dataset when the records came from elsewhere)."""

from __future__ import annotations

import dagster as dg
import pytest
from huggingface_hub import ModelCard

from coursegpt_assets.cards.builder import build_card, inputs_from_plan
from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.data.sources import SourceError, hf_source, parse_hf_source, resolve_hf_revision
from coursegpt_assets.defs.data.assets import DATA_ASSETS
from tests.fakes.hub_server import FakeHub
from tests.fakes.publish_artifacts import DATASET_REVISION, splits_manifest, training_summary, tuning_manifest
from tests.fakes.tuning_store import valid_router_records
from tests.test_model_card import scored_router_report

DATASET = "Alovestocode/Router-agent-data"
COMMIT = "a" * 40


@pytest.mark.parametrize(("source", "parsed"), [
    ("hf://owner/name", ("owner/name", None, None)),
    ("hf://owner/name:cfg", ("owner/name", "cfg", None)),
    ("hf://owner/name@v1.0", ("owner/name", None, "v1.0")),
    ("hf://owner/name:cfg@" + COMMIT, ("owner/name", "cfg", COMMIT)),
])
def test_sources_parse_and_rebuild(source, parsed):
    assert parse_hf_source(source) == parsed
    assert hf_source(*parsed) == source


def test_a_bad_source_names_the_expected_form():
    with pytest.raises(SourceError, match=r"hf://<dataset id>\[:<config>\]\[@<revision>\]"):
        parse_hf_source("hf://owner/name@")


@pytest.fixture
def hub(monkeypatch):
    with FakeHub() as fake:
        fake.datasets[DATASET] = {"main": COMMIT, "v1": "b" * 40}
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield fake


def test_a_revision_resolves_to_the_commit_it_names_now(hub):
    assert resolve_hf_revision(f"hf://{DATASET}") == COMMIT
    assert resolve_hf_revision(f"hf://{DATASET}@v1") == "b" * 40
    with pytest.raises(SourceError, match="could not resolve revision nope"):
        resolve_hf_revision(f"hf://{DATASET}@nope")


def test_raw_examples_read_at_the_commit_and_record_it(hub, store, monkeypatch):
    import datasets

    records = valid_router_records()
    calls = []

    def load_dataset(path, name=None, **kwargs):  # the Hub's rows, as `datasets` streams them
        calls.append({"path": path, "name": name, **kwargs})
        return iter(records)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setenv("COURSEGPT_ROUTER_SOURCE", f"hf://{DATASET}")
    result = dg.materialize(DATA_ASSETS, partition_key="router", resources={"store": store})
    assert [(c["path"], c["revision"], c["streaming"]) for c in calls] == [(DATASET, COMMIT, True)]
    assert store.read_json(layout.raw_manifest("router"))["revision"] == COMMIT
    assert store.read_json(layout.splits_manifest("router"))["source_revision"] == COMMIT
    [raw] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["raw_examples"]]
    assert raw.materialization.metadata["source_revision"].value == COMMIT


def _card(splits: dict) -> str:
    pair = "router__llama31-8b"
    report, report_md = scored_router_report(pair)
    return build_card(inputs_from_plan(
        default_plan(), pair, repo_id=f"org/{pair}-peft", summary=training_summary(pair, "/models/base"),
        report=report, report_markdown=report_md, tuning_manifest=tuning_manifest(pair), splits_manifest=splits))


def test_the_card_credits_the_dataset_and_commit_read():
    text = _card(splits_manifest("router"))
    assert ModelCard(text).data.datasets == [DATASET]
    assert {r.dataset_type for r in ModelCard(text).data.eval_results} == {DATASET}  # the benchmark's source
    assert f"https://huggingface.co/datasets/{DATASET}/tree/{DATASET_REVISION}" in text
    assert f"at revision `{DATASET_REVISION}`" in text


def test_a_card_of_fixture_records_credits_no_hub_dataset():
    text = _card(splits_manifest("router", from_fixture=True))
    assert ModelCard(text).data.datasets is None
    # the model-index's benchmark is our own, held out of the fixture: no Hub dataset named there either
    assert {r.dataset_type for r in ModelCard(text).data.eval_results} == {"router"}
    # the absolute fixture path is scrubbed like every local path; its file name and the planned dataset stay
    assert "Source: `<local path>/router.jsonl` (the agent's planned dataset is `" + DATASET + "`)" in text

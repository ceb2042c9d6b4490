"""model_card → card_is_valid, not_a_smoke_model (blocking) → published_adapter, materialised with real resources.

Publishing tests use a real base model's pair with fake artifacts; the smoke pair is refused."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from huggingface_hub import ModelCard
from huggingface_hub import constants as hf_constants

from coursegpt_assets.core import layout
from coursegpt_assets.core.layout import card_manifest
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.defs.jobs import JOBS, PUBLISH_JOB
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from coursegpt_assets.defs.publishing.assets import (
    CARD_CHECK,
    MODEL_CARD_ASSETS,
    MODEL_CARD_CHECKS,
    SMOKE_CHECK,
    model_card,
    published_adapter,
)
from resources.hub import HfHub, LocalHub
from resources.local_store import LocalStore
from resources.storage import ArtifactStore
from tests.conftest import step_failure_text
from tests.fakes.hub_server import FakeHub
from tests.fakes.publish_artifacts import ADAPTER_VERSION, REPORT_VERSION, write_upstream

PAIR = "router__llama31-8b"
SMOKE_PAIR = "router__tiny-llama"
ORG = default_plan().hub_organization
REPO = f"{ORG}/router-llama31-8b-peft"
BASE_ID = default_plan().base_model_for(PAIR).hf_id
TOKEN = "hf_" + "Pn4Wc7Xt1Bv9Lk2Mq6Rz3Yd8Hs5Fj0GaUe"
UPSTREAM = [dg.AssetSpec("evaluation_report", partitions_def=PAIR_PARTITIONS),
            dg.AssetSpec("adapter", partitions_def=PAIR_PARTITIONS)]


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    s = LocalStore(root=str(tmp_path / "store"))
    write_upstream(s, PAIR, base_dir=str(tmp_path / "base" / "llama31-8b"))
    return s


def run(store, hub=None, selection=("model_card", "published_adapter"), pair=PAIR, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*UPSTREAM, *MODEL_CARD_ASSETS, *MODEL_CARD_CHECKS],
        partition_key=pair,
        resources={"store": store, "hub": hub or LocalHub(root=str(Path(store.root).parent / "hub"))},
        selection=list(selection),
        raise_on_error=False,
        **kwargs,
    )


def metadata(result, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_assets_carry_ownership_and_lineage():
    assert {k.to_user_string() for k in model_card.dependency_keys} == {"evaluation_report", "adapter"}
    assert {k.to_user_string() for k in published_adapter.dependency_keys} == {"model_card"}
    for asset in MODEL_CARD_ASSETS:
        key = asset.key
        assert asset.group_names_by_key[key] == "publishing"
        assert "huggingface" in asset.specs_by_key[key].kinds
        assert asset.owners_by_key[key] == ["team:ml-platform"]
        assert asset.code_versions_by_key[key] and asset.descriptions_by_key[key]
        assert asset.partitions_def == PAIR_PARTITIONS
    specs = [spec for check in MODEL_CARD_CHECKS for spec in check.check_specs]
    assert [s.name for s in specs] == [CARD_CHECK, SMOKE_CHECK]
    assert all(s.blocking and s.asset_key == model_card.key for s in specs)


def test_card_checked_and_published_to_the_local_hub(store, tmp_path):
    result = run(store)
    assert result.success, step_failure_text(result)
    evaluations = result.get_asset_check_evaluations()
    assert sorted(e.check_name for e in evaluations if e.passed) == [CARD_CHECK, SMOKE_CHECK]

    card = store.read_text(layout.card(PAIR))
    report = store.read_json(f"{layout.report_dir(PAIR, REPORT_VERSION)}/report.json")
    meta = metadata(result, "model_card")
    assert meta["adapter_version"] == ADAPTER_VERSION and meta["report_version"] == REPORT_VERSION
    assert meta["eval_results"] == len(report["headline"]) == len(ModelCard(card).data.eval_results)
    assert meta["card"] == store.uri(layout.card(PAIR)) and meta["repo_id"] == REPO
    assert meta["preview"].startswith("# router-llama31-8b-peft") and "smoke-test model" not in meta["preview"]
    assert meta["smoke"] is False
    assert store.read_json(card_manifest(PAIR))["adapter_version"] == ADAPTER_VERSION

    published = metadata(result, "published_adapter")
    dest = tmp_path / "hub" / REPO
    assert published["location"] == str(dest) and published["uploaded"] is True
    assert published["files"] == sorted(p.name for p in dest.iterdir() if not p.name.startswith("."))
    assert (dest / "README.md").read_text() == card
    assert json.loads((dest / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE_ID


def test_blocking_check_stops_publishing_in_the_same_run(store, tmp_path, monkeypatch):
    import coursegpt_assets.defs.publishing.assets as model_cards

    real_build = model_cards.build_card
    # a template edit that leaks a credential into the card body: the builder's scrubbing never sees it
    monkeypatch.setattr(model_cards, "build_card", lambda inputs: real_build(inputs) + f"\nContact: {TOKEN}\n")
    result = run(store)
    assert not result.success
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == CARD_CHECK]
    assert not evaluation.passed
    assert "token" in evaluation.metadata["problems"].value.lower()
    assert [e.asset_key.path for e in result.get_asset_materialization_events()] == [["model_card"]]
    assert not (tmp_path / "hub").exists()


def test_card_refuses_a_report_of_another_adapter_version(tmp_path):
    store = LocalStore(root=str(tmp_path / "store"))
    write_upstream(store, PAIR, report_adapter_version="20261101T000000Z-000000")
    result = run(store, selection=["model_card"])
    assert not result.success
    assert "evaluates 20261101T000000Z-000000" in step_failure_text(result)
    assert f"materialise evaluation_report for {PAIR}" in step_failure_text(result)
    assert not store.exists(layout.card(PAIR))


def test_missing_upstream_names_the_asset_to_materialise(tmp_path):
    result = run(LocalStore(root=str(tmp_path / "empty")), selection=["model_card"])
    assert not result.success
    assert f"materialise evaluation_report for partition {PAIR} first" in step_failure_text(result)


def test_publishing_refuses_a_card_edited_after_review(store):
    assert run(store, selection=["model_card"]).success
    store.write_text(layout.card(PAIR), store.read_text(layout.card(PAIR)) + "\nedited\n")
    result = run(store, selection=["published_adapter"])
    assert not result.success and "changed since model_card wrote it" in step_failure_text(result)


def test_publishing_with_hf_hub_needs_hf_token(store, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert run(store, selection=["model_card"]).success
    with pytest.raises(dg.DagsterInvalidConfigError, match='environment variable "HF_TOKEN" which is not set'):
        run(store, HfHub(token=dg.EnvVar("HF_TOKEN")), selection=["published_adapter"])


def test_dry_run_materialises_the_file_list_without_uploading(store):
    assert run(store, selection=["model_card"]).success
    with FakeHub(token=TOKEN) as fake:
        result = run(store, HfHub(endpoint=fake.endpoint, dry_run=True), selection=["published_adapter"])
        assert result.success, step_failure_text(result)
        assert fake.calls == []
    meta = metadata(result, "published_adapter")
    assert meta["uploaded"] is False and meta["dry_run"] is True
    assert "README.md" in meta["files"] and "adapter_model.safetensors" in meta["files"]


def test_hf_hub_publish_under_another_organisation_rewrites_the_card(store, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with FakeHub(token=TOKEN) as fake:
        hub = HfHub(token=dg.EnvVar("HF_TOKEN"), endpoint=fake.endpoint, organization="review-org", private=True)
        result = run(store, hub)
        assert result.success, step_failure_text(result)
        repo = fake.repos["review-org/router-llama31-8b-peft"]
        assert repo.private and fake.unexpected == []
    readme = repo.files["README.md"].decode()
    assert 'PeftModel.from_pretrained(base, "review-org/router-llama31-8b-peft")' in readme and ORG not in readme
    assert sorted(repo.files) == metadata(result, "published_adapter")["files"]
    assert TOKEN not in json.dumps(metadata(result, "published_adapter"))


# -- publish_job and smoke models -----------------------------------------------------------------------
@pytest.fixture
def smoke_store(tmp_path) -> ArtifactStore:
    s = LocalStore(root=str(tmp_path / "smoke-store"))
    write_upstream(s, SMOKE_PAIR, base_dir=str(tmp_path / "base" / "tiny-llama"))
    return s


def publish_job_run(store, hub, pair: str) -> dg.ExecuteInProcessResult:
    """publish_job as defs/jobs.py defines it, over these assets and resources."""
    defs = dg.Definitions(assets=[*UPSTREAM, *MODEL_CARD_ASSETS], asset_checks=MODEL_CARD_CHECKS,
                          jobs=[j for j in JOBS if j.name == PUBLISH_JOB], resources={"store": store, "hub": hub})
    with dg.instance_for_test() as instance:
        return defs.resolve_job_def(PUBLISH_JOB).execute_in_process(
            partition_key=pair, instance=instance, raise_on_error=False)


def test_publish_job_runs_the_card_checks_before_publishing_and_nothing_else():
    from coursegpt_assets.definitions import defs

    job = defs.resolve_job_def(PUBLISH_JOB)
    graph = job.asset_layer.asset_graph
    assert {k.to_user_string() for k in graph.executable_asset_keys} == {"published_adapter"}
    assert {k.name for k in graph.asset_check_keys} == {CARD_CHECK, SMOKE_CHECK}
    pipeline = defs.resolve_job_def("pair_pipeline_job").asset_layer.asset_graph
    assert "published_adapter" not in {k.to_user_string() for k in pipeline.executable_asset_keys}
    card_checks = {k.name for k in pipeline.asset_check_keys if k.asset_key == model_card.key}
    assert card_checks == {CARD_CHECK}  # no smoke check in ordinary runs


def test_publish_job_publishes_a_real_pair_from_its_reviewed_card(store, tmp_path):
    assert run(store, selection=["model_card"]).success
    result = publish_job_run(store, LocalHub(root=str(tmp_path / "hub")), PAIR)
    assert result.success, step_failure_text(result)
    assert sorted(e.check_name for e in result.get_asset_check_evaluations() if e.passed) == [CARD_CHECK, SMOKE_CHECK]
    assert [e.asset_key.path for e in result.get_asset_materialization_events()] == [["published_adapter"]]
    assert (tmp_path / "hub" / REPO / "README.md").read_text() == store.read_text(layout.card(PAIR))


def test_a_smoke_card_renders_with_a_warning_outside_publish_job(smoke_store):
    result = run(smoke_store, selection=["model_card"], pair=SMOKE_PAIR)
    assert result.success, step_failure_text(result)
    [smoke] = [e for e in result.get_asset_check_evaluations() if e.check_name == SMOKE_CHECK]
    assert not smoke.passed and smoke.severity == dg.AssetCheckSeverity.WARN
    assert "tiny-llama is a smoke-test model" in smoke.description
    assert metadata(result, "model_card")["smoke"] is True


def test_publish_job_refuses_a_smoke_pair_before_anything_is_uploaded(smoke_store, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    assert run(smoke_store, selection=["model_card"], pair=SMOKE_PAIR).success
    with FakeHub(token=TOKEN) as fake:
        result = publish_job_run(smoke_store, HfHub(token=TOKEN, endpoint=fake.endpoint), SMOKE_PAIR)
        assert not result.success
        assert fake.calls == [] and fake.repos == {}
    [smoke] = [e for e in result.get_asset_check_evaluations() if e.check_name == SMOKE_CHECK]
    assert not smoke.passed and smoke.severity == dg.AssetCheckSeverity.ERROR
    assert "trained as a smoke test" in smoke.description
    assert result.get_asset_materialization_events() == []
    assert "published_adapter" not in {e.step_key for e in result.all_events if e.is_step_start}


def test_published_adapter_alone_refuses_a_smoke_pair(smoke_store, tmp_path):
    assert run(smoke_store, selection=["model_card"], pair=SMOKE_PAIR).success
    result = run(smoke_store, selection=["published_adapter"], pair=SMOKE_PAIR)  # a UI materialisation of the asset alone
    assert not result.success
    assert "refusing to publish a smoke-test model" in step_failure_text(result)
    assert not (tmp_path / "hub").exists()

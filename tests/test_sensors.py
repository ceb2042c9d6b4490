"""new_adapter_sensor and vertex_job_sensor, ticked with build_sensor_context on a test instance.

The Vertex sensor talks to a real VertexTuning resource pointed at the loopback `tuningJobs` server.
"""

import json

import dagster as dg
import pytest

from coursegpt_assets.core import layout
from coursegpt_assets.core.layout import SUMMARY_FILE as SUMMARY
from coursegpt_assets.defs.adapters.assets import ADAPTER_ASSETS
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from coursegpt_assets.training.spec import VertexJob
from resources.storage import ArtifactStore
from resources.tuning import LocalTrainer, VertexTrainer
from resources.vertex_tuning import VertexTuning
from schedules.adapter_scan import ScanCursor, adapter_folders
from schedules.sensors import (
    ADAPTER_VERSION_TAG,
    SENSOR_CHECKS,
    VERTEX_CHECK,
    new_adapter_sensor,
    vertex_job_sensor,
)
from tests.conftest import assert_vertex_failure_reported
from tests.fakes.vertex_server import FakeVertexServer

ROUTER, MATH = "router__tiny-llama", "math__tiny-llama"


def _stand_in(name: str, dep: str) -> dg.AssetsDefinition:
    """An executable stand-in (the sensor's target must be materialisable) until the real asset is wired."""

    @dg.asset(name=name, partitions_def=PAIR_PARTITIONS, deps=[dep])
    def _asset() -> None:
        raise AssertionError(f"{name} stand-in: sensor tests only evaluate ticks")

    return _asset


STAND_INS = [_stand_in("evaluation_report", "adapter"), _stand_in("model_card", "evaluation_report")]


def write_adapter(store: ArtifactStore, pair: str, version: str, *, summary=True, fields: dict | None = None) -> None:
    """An adapter folder as the adapter asset writes it: weights and config first, the summary last."""
    folder = layout.adapter_dir(pair, version)
    store.write_json(f"{folder}/adapter_config.json", {"r": 16, "lora_alpha": 32})
    store.write_bytes(f"{folder}/adapter_model.safetensors", b"\0" * 64)
    if summary is True:
        agent, base_model = pair.split("__")
        store.write_json(f"{folder}/{SUMMARY}", {"pair": pair, "agent": agent, "base_model": base_model,
                                                 "version": version, "steps": 8, "final_loss": 1.25, **(fields or {})})
    elif summary is not None:
        store.write_text(f"{folder}/{SUMMARY}", summary)


def defs_with(store: ArtifactStore, trainer=None) -> dg.Definitions:
    return dg.Definitions(
        assets=[*ADAPTER_ASSETS, *STAND_INS],
        asset_checks=SENSOR_CHECKS,
        sensors=[new_adapter_sensor, vertex_job_sensor],
        resources={"store": store, "trainer": trainer or LocalTrainer()},
    )


def tick(sensor, instance, defs, cursor=None):
    """One evaluation as the daemon does it: the resources of `defs`, the instance, the saved cursor."""
    with dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs, cursor=cursor,
                                 resources=defs.resources) as context:
        return sensor.evaluate_tick(context)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


# -- new adapters -------------------------------------------------------------------------------------------
def test_new_adapters_yield_one_request_per_pair_then_nothing(store, instance):
    defs = defs_with(store)
    empty = tick(new_adapter_sensor, instance, defs)
    assert not empty.run_requests and "no new adapter versions" in empty.skip_message

    write_adapter(store, ROUTER, "v1")
    write_adapter(store, MATH, "v7")
    first = tick(new_adapter_sensor, instance, defs, empty.cursor)
    requests = sorted(first.run_requests, key=lambda r: r.partition_key)
    assert [(r.partition_key, r.run_key) for r in requests] == [(MATH, f"{MATH}:v7"), (ROUTER, f"{ROUTER}:v1")]
    assert all(set(r.asset_selection) == {dg.AssetKey("evaluation_report"), dg.AssetKey("model_card")}
               for r in requests)
    assert requests[1].tags[ADAPTER_VERSION_TAG] == "v1"
    events = {e.partition: e for e in first.asset_events}
    assert set(events) == {ROUTER, MATH}
    assert all(isinstance(e, dg.AssetMaterialization) and e.asset_key == dg.AssetKey("adapter")
               for e in events.values())
    assert events[ROUTER].metadata["version"].value == "v1"
    assert events[ROUTER].metadata["final_loss"].value == 1.25

    second = tick(new_adapter_sensor, instance, defs, first.cursor)
    assert not second.run_requests and not second.asset_events and second.skip_message

    write_adapter(store, ROUTER, "v2")
    third = tick(new_adapter_sensor, instance, defs, second.cursor)
    assert [r.run_key for r in third.run_requests] == [f"{ROUTER}:v2"]


def test_restart_with_the_saved_cursor_never_repeats_a_request(store, instance):
    write_adapter(store, ROUTER, "v1")
    first = tick(new_adapter_sensor, instance, defs_with(store))
    assert len(first.run_requests) == 1
    restarted = tick(new_adapter_sensor, instance, defs_with(store), cursor=first.cursor)
    assert not restarted.run_requests
    assert ScanCursor.parse(first.cursor).has(ROUTER, "v1")


@pytest.mark.parametrize("pair, version, kwargs, reason", [
    (ROUTER, "v3", {"summary": None}, "incomplete: no training_summary.json yet"),
    (ROUTER, "v4", {"summary": "{not json"}, "unreadable training_summary.json"),
    (ROUTER, "v5", {"fields": {"pair": MATH}}, f"names pair '{MATH}'"),
    (ROUTER, "v6", {"fields": {"version": "other"}}, "names version 'other'"),
    (ROUTER, "v8", {"fields": {"base_model": "qwen3-32b"}}, "names base model 'qwen3-32b'"),
    ("physics__tiny-llama", "v1", {}, "unknown pair 'physics__tiny-llama'"),
    (ROUTER, "v9", {"summary": "[1, 2]"}, "is not a JSON object"),
])
def test_malformed_folders_are_skipped_with_a_reason(store, instance, capfd, pair, version, kwargs, reason):
    write_adapter(store, MATH, "good")
    write_adapter(store, pair, version, **kwargs)
    result = tick(new_adapter_sensor, instance, defs_with(store))
    assert [r.partition_key for r in result.run_requests] == [MATH]  # the good one still goes through
    skipped = ScanCursor.parse(result.cursor).skipped
    assert reason in skipped[f"{pair}/{version}"]
    logged = capfd.readouterr().err
    assert f"WARNING - new_adapter_sensor: skipping adapters/{pair}/{version}" in logged and reason in logged

    again = tick(new_adapter_sensor, instance, defs_with(store), result.cursor)
    assert not again.run_requests and "skipping" not in capfd.readouterr().err  # each reason is logged once


def test_a_folder_that_finishes_uploading_is_picked_up(store, instance):
    write_adapter(store, ROUTER, "v1", summary=None)
    first = tick(new_adapter_sensor, instance, defs_with(store))
    assert not first.run_requests
    write_adapter(store, ROUTER, "v1")
    second = tick(new_adapter_sensor, instance, defs_with(store), first.cursor)
    assert [r.run_key for r in second.run_requests] == [f"{ROUTER}:v1"]
    assert ScanCursor.parse(second.cursor).skipped == {}


def test_several_new_versions_of_a_pair_evaluate_the_one_latest_json_names(store, instance):
    for version in ("a1", "b2", "c3"):
        write_adapter(store, ROUTER, version)
    store.write_json(layout.adapter_latest(ROUTER), {"version": "b2"})
    result = tick(new_adapter_sensor, instance, defs_with(store))
    assert [r.run_key for r in result.run_requests] == [f"{ROUTER}:b2"]
    assert [e.metadata["version"].value for e in result.asset_events] == ["b2"]
    assert ScanCursor.parse(result.cursor).seen[ROUTER] == {"a1", "b2", "c3"}


def test_versions_dagster_recorded_or_evaluated_are_not_reported_or_rerun(store, instance):
    write_adapter(store, ROUTER, "v1")
    write_adapter(store, MATH, "v1")
    instance.report_runless_asset_event(dg.AssetMaterialization("adapter", partition=ROUTER, metadata={"version": "v1"}))
    instance.report_runless_asset_event(
        dg.AssetMaterialization("evaluation_report", partition=MATH, metadata={"adapter_version": "v1"}))
    result = tick(new_adapter_sensor, instance, defs_with(store))
    assert [e.partition for e in result.asset_events] == [MATH]  # ROUTER's adapter was already recorded
    assert [r.partition_key for r in result.run_requests] == [ROUTER]  # MATH's adapter was already evaluated


def test_adapter_folders_reads_only_version_folders():
    complete = [f"adapters/{ROUTER}/v1/{name}" for name in (SUMMARY, "adapter_config.json",
                                                             "adapter_model.safetensors")]
    keys = [f"adapters/{ROUTER}/latest.json", *complete, f"adapters/{ROUTER}/v2/nested/{SUMMARY}",
            "adapters/README.md", "datasets/x/y/z"]
    assert adapter_folders(keys) == {(ROUTER, "v1"): True, (ROUTER, "v2"): False}


def test_a_folder_with_a_summary_but_no_weights_is_not_an_adapter():
    """Half copied in (`cp -r` has no file order) or broken: never reported nor evaluated."""
    keys = [f"adapters/{ROUTER}/v3/{SUMMARY}", f"adapters/{ROUTER}/v3/adapter_config.json"]
    assert adapter_folders(keys) == {(ROUTER, "v3"): False}


def test_a_bad_cursor_version_is_a_clear_error():
    with pytest.raises(ValueError, match="reset the cursor"):
        ScanCursor.parse(json.dumps({"v": 99}))


# -- Vertex AI jobs -----------------------------------------------------------------------------------------
VERTEX_PAIR, OTHER_PAIR = "router__llama31-8b", "router__qwen3-32b"


class GcpTrainer(VertexTrainer):
    """VertexTrainer with its dependency typed, so Dagster can nest the VertexTuning resource in it."""

    vertex: VertexTuning


@pytest.fixture
def vertex(monkeypatch):
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # never probe a metadata server
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    with FakeVertexServer(page_size=2) as server:
        yield server, VertexTuning(project="coursegpt-test", api_endpoint=server.endpoint, credentials="anonymous",
                                   poll_interval_seconds=0)


def submit(resource: VertexTuning, instance, pair: str, store: ArtifactStore) -> str:
    """Submit a job as the tuning_job asset does (its lease in `store`) and record its materialisation metadata."""
    job = VertexJob(source_model="meta/llama3_1@llama-3.1-8b-instruct", train_sha256="t", validation_sha256="v",
                    epochs=3, learning_rate_multiplier=0.7, adapter_size=16)
    info = resource.submit_or_find(
        pair=pair, job=job, train_uri=f"gs://b/tuning/{pair}/train.jsonl",
        validation_uri=f"gs://b/tuning/{pair}/validation.jsonl", output_uri=f"gs://b/adapters/{pair}/v1/vertex",
        display_name=f"coursegpt-{pair}", store=store,
    )
    instance.report_runless_asset_event(dg.AssetMaterialization("tuning_job", partition=pair, metadata=info.metadata()))
    return info.resource_name


def _gets(server: FakeVertexServer) -> int:
    return sum(1 for method, path, _ in server.requests if method == "GET" and "/tuningJobs/" in path)


def test_vertex_success_requests_the_adapter_once(store, instance, vertex):
    server, resource = vertex
    defs = defs_with(store, GcpTrainer(vertex=resource))
    name = submit(resource, instance, VERTEX_PAIR, store)

    running = tick(vertex_job_sensor, instance, defs)
    assert not running.run_requests and not running.asset_events
    server.succeed(name)
    done = tick(vertex_job_sensor, instance, defs, running.cursor)
    assert [(r.run_key, r.partition_key, list(r.asset_selection)) for r in done.run_requests] == [
        (name, VERTEX_PAIR, [dg.AssetKey("adapter")])]
    observation = done.asset_events[0]
    assert isinstance(observation, dg.AssetObservation) and observation.partition == VERTEX_PAIR
    assert observation.metadata["state"].value == "JOB_STATE_SUCCEEDED"

    polled = _gets(server)
    later = tick(vertex_job_sensor, instance, defs, done.cursor)
    assert not later.run_requests and not later.asset_events
    assert _gets(server) == polled  # a finished job is not polled again


def test_vertex_failure_reports_vertex_error_without_a_run(store, instance, vertex, capfd):
    server, resource = vertex
    defs = defs_with(store, GcpTrainer(vertex=resource))
    name = submit(resource, instance, OTHER_PAIR, store)
    message = "Dataset gs://b/tuning/router__qwen3-32b/train.jsonl line 3: 'messages' field is missing."
    server.fail(name, message)
    result = tick(vertex_job_sensor, instance, defs)
    assert not result.run_requests
    assert_vertex_failure_reported(result, partition=OTHER_PAIR, message=message, job_name=name,
                                   stderr=capfd.readouterr().err)
    assert not tick(vertex_job_sensor, instance, defs, result.cursor).asset_events


def test_vertex_sensor_survives_an_unknown_job_and_skips_local_training(store, instance, vertex, capfd):
    server, resource = vertex
    good = submit(resource, instance, VERTEX_PAIR, store)
    missing = "projects/coursegpt-test/locations/us-central1/tuningJobs/404404"
    instance.report_runless_asset_event(dg.AssetMaterialization(
        "tuning_job", partition=OTHER_PAIR, metadata={"resource_name": missing, "state": "JOB_STATE_RUNNING"}))
    instance.report_runless_asset_event(dg.AssetMaterialization("tuning_job", partition=ROUTER,
                                                                metadata={"backend": "trl", "steps": 8}))
    server.succeed(good)
    result = tick(vertex_job_sensor, instance, defs_with(store, GcpTrainer(vertex=resource)))
    assert [r.partition_key for r in result.run_requests] == [VERTEX_PAIR]
    logged = capfd.readouterr().err
    assert "could not read Vertex job" in logged and missing in logged

    local = tick(vertex_job_sensor, instance, defs_with(store))
    assert not local.run_requests and "LocalTrainer" in local.skip_message


def test_vertex_check_reads_the_job_the_latest_tuning_job_recorded(store, instance, vertex):
    server, resource = vertex
    name = submit(resource, instance, VERTEX_PAIR, store)
    server.fail(name, "quota exceeded")
    recorded = instance.fetch_materializations(dg.AssetKey("tuning_job"), limit=1).records[0]

    @dg.asset(name="tuning_job", partitions_def=PAIR_PARTITIONS)
    def resubmitted_tuning_job():  # stands in for a re-materialisation that follows the same job
        return dg.MaterializeResult(metadata=dict(recorded.asset_materialization.metadata))

    result = dg.materialize(
        [resubmitted_tuning_job, *SENSOR_CHECKS], partition_key=VERTEX_PAIR, instance=instance,
        resources={"store": store, "trainer": GcpTrainer(vertex=resource)},
    )
    evaluation = result.get_asset_check_evaluations()[0]
    assert evaluation.check_name == VERTEX_CHECK and evaluation.partition == VERTEX_PAIR
    assert not evaluation.passed and "quota exceeded" in evaluation.description

    local = dg.materialize([resubmitted_tuning_job, *SENSOR_CHECKS], partition_key=VERTEX_PAIR,
                           resources={"store": store, "trainer": LocalTrainer()})
    assert local.get_asset_check_evaluations()[0].passed


def test_of_several_new_versions_the_most_recently_finished_is_evaluated(store):
    from schedules.adapter_scan import scan

    for version, finished in (("aaaa", "2026-12-01T10:00:00+00:00"), ("ffff", "2026-11-30T10:00:00+00:00"),
                              ("cccc", "2026-12-01T11:00:00+00:00")):
        write_adapter(store, ROUTER, version, fields={"finished_at": finished})
    result = scan(store.list_keys(layout.adapters_root()), ScanCursor(), known_pairs=[ROUTER],
                  read_json=store.read_json)
    [new] = result.new
    assert new.version == "cccc" and "most recently finished" in new.choice  # not "ffff", last by name

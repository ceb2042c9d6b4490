"""new_adapter_sensor and vertex_job_sensor, ticked with build_sensor_context on a test instance.

The adapter tests materialise stand-ins with the real keys and check spec (`adapter` with its blocking
`adapter_matches_plan`, which writes the version folder into the store as the pipeline does, then
`evaluation_report` and `model_card`) on a real instance, and tick the sensor between (and during) runs.
The Vertex sensor talks to a real VertexTuning resource pointed at the loopback `tuningJobs` server.
"""

import json
import warnings

import dagster as dg
import pytest

from coursegpt_assets.core import layout
from coursegpt_assets.core.layout import SUMMARY_FILE as SUMMARY
from coursegpt_assets.core.names import TRIGGER_TAG
from coursegpt_assets.defs.adapters.assets import ADAPTER_ASSETS, ADAPTER_CHECK
from coursegpt_assets.defs.adapters.assets import adapter as real_adapter
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from coursegpt_assets.training.spec import VertexJob
from resources.storage import ArtifactStore
from resources.tuning import LocalTrainer, VertexTrainer
from resources.vertex_tuning import VertexTuning
from schedules.sensors import (
    ADAPTER_VERSION_TAG,
    SENSOR_CHECKS,
    VERTEX_CHECK,
    AdapterCursor,
    new_adapter_sensor,
    vertex_job_sensor,
)
from tests.conftest import assert_vertex_failure_reported
from tests.fakes.vertex_server import FakeVertexServer

ROUTER, MATH = "router__tiny-llama", "math__tiny-llama"
EVALUATION_KEYS = {dg.AssetKey("evaluation_report"), dg.AssetKey("model_card")}

#: asset name -> a callable the stand-in runs inside its step, while its run is in progress
DURING: dict = {"evaluation_report": None, ADAPTER_CHECK: None}


def _during(name: str) -> None:
    if DURING[name]:
        DURING[name]()


def write_adapter(store: ArtifactStore, pair: str, version: str) -> None:
    """An adapter folder as tuning_job writes it: weights and config first, the summary last."""
    folder = layout.adapter_dir(pair, version)
    store.write_json(f"{folder}/adapter_config.json", {"r": 16, "lora_alpha": 32})
    store.write_bytes(f"{folder}/adapter_model.safetensors", b"\0" * 64)
    agent, base_model = pair.split("__")
    store.write_json(f"{folder}/{SUMMARY}", {"pair": pair, "agent": agent, "base_model": base_model,
                                             "version": version, "steps": 8, "final_loss": 1.25})


class AdapterRun(dg.Config):
    version: str = "v1"
    passed: bool = True


with warnings.catch_warnings():  # partitioned checks are "preview" in 1.13, as in schedules/sensors.py
    warnings.filterwarnings("ignore", message="Specifying a partitions_def", category=dg.PreviewWarning)
    ADAPTER_SPEC = dg.AssetCheckSpec(ADAPTER_CHECK, asset="adapter", blocking=True, partitions_def=PAIR_PARTITIONS)


@dg.asset(name="adapter", partitions_def=PAIR_PARTITIONS, check_specs=[ADAPTER_SPEC])
def adapter_stand_in(context: dg.AssetExecutionContext, config: AdapterRun, store: ArtifactStore):
    """The folder is in the store before the check runs, as with the real asset; the check decides."""
    write_adapter(store, context.partition_key, config.version)
    return dg.MaterializeResult(metadata={"version": config.version},
                                check_results=[dg.AssetCheckResult(check_name=ADAPTER_CHECK, passed=config.passed)])


@dg.asset(name="adapter", partitions_def=PAIR_PARTITIONS)
def adapter_checked_later(config: AdapterRun):
    """An adapter whose blocking check is a separate step of the same run (so it is reported after)."""
    return dg.MaterializeResult(metadata={"version": config.version})


with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Specifying a partitions_def", category=dg.PreviewWarning)

    @dg.asset_check(asset="adapter", name=ADAPTER_CHECK, blocking=True, partitions_def=PAIR_PARTITIONS)
    def separate_adapter_check() -> dg.AssetCheckResult:
        _during(ADAPTER_CHECK)
        return dg.AssetCheckResult(passed=True)


@dg.asset(name="evaluation_report", partitions_def=PAIR_PARTITIONS, deps=["adapter"])
def report_stand_in(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Records the version it evaluated, from the sensor's tag or, in a pipeline run, the adapter's."""
    _during("evaluation_report")
    version = context.run.tags.get(ADAPTER_VERSION_TAG)
    if version is None:
        [record] = context.instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("adapter"), asset_partitions=[context.partition_key]), limit=1).records
        version = record.asset_materialization.metadata["version"].value
    return dg.MaterializeResult(metadata={"adapter_version": version})


@dg.asset(name="model_card", partitions_def=PAIR_PARTITIONS, deps=[report_stand_in])
def card_stand_in() -> None:
    return None


EVALUATION = [report_stand_in, card_stand_in]
CHECKED = [adapter_stand_in, *EVALUATION]


def defs_with(store: ArtifactStore, trainer=None) -> dg.Definitions:
    return dg.Definitions(
        assets=[*ADAPTER_ASSETS, *EVALUATION],
        asset_checks=SENSOR_CHECKS,
        sensors=[new_adapter_sensor, vertex_job_sensor],
        resources={"store": store, "trainer": trainer or LocalTrainer()},
    )


def checked_defs(store: ArtifactStore) -> dg.Definitions:
    return dg.Definitions(assets=CHECKED, sensors=[new_adapter_sensor], resources={"store": store})


def tick(sensor, instance, defs, cursor=None):
    """One evaluation as the daemon does it: the resources of `defs`, the instance, the saved cursor."""
    with dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs, cursor=cursor,
                                 resources=defs.resources) as context:
        return sensor.evaluate_tick(context)


def materialize_adapter(store, instance, pair, version="v1", *, passed=True, with_evaluation=False, tags=None):
    """One run of `adapter` alone (as vertex_job_sensor requests it) or, `with_evaluation`, of adapter +
    evaluation_report + model_card (the local pipeline)."""
    return dg.materialize(
        CHECKED, selection=None if with_evaluation else ["adapter"], partition_key=pair, instance=instance,
        resources={"store": store}, tags=tags, raise_on_error=False,
        run_config={"ops": {"adapter": {"config": {"version": version, "passed": passed}}}},
    )


def execute(request: dg.RunRequest, store, instance):
    """Run what the sensor requested, as the daemon would launch it."""
    result = dg.materialize(CHECKED, selection=list(request.asset_selection), partition_key=request.partition_key,
                            tags=request.tags, instance=instance, resources={"store": store})
    assert result.success
    return result


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


# -- checked adapters -----------------------------------------------------------------------------------------
def test_the_stand_in_declares_the_real_adapters_blocking_check():
    [spec] = real_adapter.check_specs
    assert (spec.name, spec.blocking) == (ADAPTER_SPEC.name, ADAPTER_SPEC.blocking) == (ADAPTER_CHECK, True)


def test_a_folder_copied_into_the_store_is_not_evaluated(store, instance):
    """Summary, config, weights and latest.json, but no adapter materialisation: nothing to evaluate."""
    defs = checked_defs(store)
    start = tick(new_adapter_sensor, instance, defs)
    write_adapter(store, ROUTER, "v1")
    store.write_json(layout.adapter_latest(ROUTER), {"version": "v1"})
    for cursor in (None, start.cursor):
        result = tick(new_adapter_sensor, instance, defs, cursor)
        assert not result.run_requests and not result.asset_events
        assert result.skip_message == "no new adapter materialisations"


def test_a_failed_adapter_check_means_no_report_and_no_card(store, instance, capfd):
    defs = checked_defs(store)
    start = tick(new_adapter_sensor, instance, defs)
    run = materialize_adapter(store, instance, ROUTER, "v2", passed=False, tags={TRIGGER_TAG: "vertex_job_sensor"})
    assert not run.success and [e.passed for e in run.get_asset_check_evaluations()] == [False]
    assert store.exists(layout.adapter_summary(ROUTER, "v2"))  # the folder is there; the check said no

    result = tick(new_adapter_sensor, instance, defs, start.cursor)
    assert not result.run_requests and "1 adapter materialisation(s) read; none to evaluate" in result.skip_message
    assert f"{ROUTER}: adapter v2" in (logged := capfd.readouterr().err) and f"{ADAPTER_CHECK} failed" in logged
    assert not tick(new_adapter_sensor, instance, defs).run_requests  # nor from the start


def test_a_checked_adapter_from_a_tuning_only_run_is_evaluated_once(store, instance):
    """The Vertex case: vertex_job_sensor's run materialises `adapter` only; the sensor requests the rest."""
    defs = checked_defs(store)
    start = tick(new_adapter_sensor, instance, defs)
    assert materialize_adapter(store, instance, ROUTER, "v1", tags={TRIGGER_TAG: "vertex_job_sensor"}).success

    first = tick(new_adapter_sensor, instance, defs, start.cursor)
    [request] = first.run_requests
    assert (request.partition_key, request.run_key) == (ROUTER, f"{ROUTER}:v1")
    assert set(request.asset_selection) == EVALUATION_KEYS
    assert request.tags[ADAPTER_VERSION_TAG] == "v1" and request.tags[TRIGGER_TAG] == "new_adapter_sensor"
    assert request.tags["coursegpt/agent"] == "router" and request.tags["coursegpt/base_model"] == ROUTER.split("__")[1]
    assert not first.asset_events

    again = tick(new_adapter_sensor, instance, defs, first.cursor)  # the next tick, or a restart with its cursor
    assert not again.run_requests and again.skip_message == "no new adapter materialisations"
    replayed = tick(new_adapter_sensor, instance, defs, start.cursor)  # an older cursor: the same run_key,
    assert [r.run_key for r in replayed.run_requests] == [request.run_key]  # which the daemon launches once

    report = execute(request, store, instance).asset_materializations_for_node("evaluation_report")
    assert report[0].metadata["adapter_version"].value == "v1"
    assert not tick(new_adapter_sensor, instance, defs).run_requests  # a reset cursor: already evaluated


def test_the_local_pipeline_run_is_not_evaluated_a_second_time(store, instance, monkeypatch):
    """adapter + evaluation_report + model_card in one run: neither a tick while its own report is still
    running (the race with a paid endpoint) nor one after the run requests another evaluation."""
    defs = checked_defs(store)
    start = tick(new_adapter_sensor, instance, defs)
    during = []
    monkeypatch.setitem(DURING, "evaluation_report",
                        lambda: during.append(tick(new_adapter_sensor, instance, defs, start.cursor)))
    assert materialize_adapter(store, instance, ROUTER, "v1", with_evaluation=True).success
    [mid_run] = during
    assert not mid_run.run_requests and "none to evaluate" in mid_run.skip_message
    assert not tick(new_adapter_sensor, instance, defs, start.cursor).run_requests
    assert not tick(new_adapter_sensor, instance, defs, mid_run.cursor).run_requests


def test_every_pair_checked_between_two_ticks_gets_its_request(store, instance):
    defs = checked_defs(store)
    start = tick(new_adapter_sensor, instance, defs)
    materialize_adapter(store, instance, ROUTER, "v1")
    materialize_adapter(store, instance, MATH, "v7")
    result = tick(new_adapter_sensor, instance, defs, start.cursor)
    assert sorted((r.partition_key, r.tags[ADAPTER_VERSION_TAG]) for r in result.run_requests) == [
        (MATH, "v7"), (ROUTER, "v1")]


def test_of_several_versions_of_a_pair_the_newest_checked_one_is_evaluated(store, instance, capfd):
    defs = checked_defs(store)
    start = tick(new_adapter_sensor, instance, defs)
    materialize_adapter(store, instance, ROUTER, "v1")
    materialize_adapter(store, instance, ROUTER, "v2")
    materialize_adapter(store, instance, MATH, "a1")
    materialize_adapter(store, instance, MATH, "b2", passed=False)  # latest.json still names a1
    result = tick(new_adapter_sensor, instance, defs, start.cursor)
    assert sorted((r.partition_key, r.tags[ADAPTER_VERSION_TAG]) for r in result.run_requests) == [
        (MATH, "a1"), (ROUTER, "v2")]
    assert f"{ROUTER}: adapter v1 superseded by v2" in capfd.readouterr().err


def test_an_adapter_materialisation_reported_outside_a_run_is_not_evaluated(store, instance, capfd):
    """No run, so no blocking check: `dagster asset report-materialization` does not make an adapter checked."""
    defs = checked_defs(store)
    start = tick(new_adapter_sensor, instance, defs)
    write_adapter(store, ROUTER, "v1")
    instance.report_runless_asset_event(dg.AssetMaterialization("adapter", partition=ROUTER, metadata={"version": "v1"}))
    result = tick(new_adapter_sensor, instance, defs, start.cursor)
    assert not result.run_requests
    assert "WARNING - new_adapter_sensor: not evaluated" in (logged := capfd.readouterr().err)
    assert "reported outside a run" in logged


def test_a_materialisation_whose_checks_are_not_reported_yet_waits_in_the_cursor(store, instance, monkeypatch):
    """The check is a later step of the same run: a tick in between keeps the record, the next one requests it."""
    defs = dg.Definitions(assets=[adapter_checked_later, *EVALUATION], asset_checks=[separate_adapter_check],
                          sensors=[new_adapter_sensor])
    start = tick(new_adapter_sensor, instance, defs)
    during = []
    monkeypatch.setitem(DURING, ADAPTER_CHECK, lambda: during.append(tick(new_adapter_sensor, instance, defs,
                                                                          start.cursor)))
    run = dg.materialize([adapter_checked_later, separate_adapter_check], partition_key=ROUTER, instance=instance,
                         run_config={"ops": {"adapter": {"config": {"version": "v3"}}}})
    assert run.success
    [waiting] = during
    assert not waiting.run_requests and AdapterCursor.parse(waiting.cursor).pending
    done = tick(new_adapter_sensor, instance, defs, waiting.cursor)
    assert [r.run_key for r in done.run_requests] == [f"{ROUTER}:v3"]
    assert AdapterCursor.parse(done.cursor).pending == ()
    assert not tick(new_adapter_sensor, instance, defs, done.cursor).run_requests


def test_a_cursor_the_sensor_did_not_write_restarts_from_the_first_materialisation(store, instance, capfd):
    """The folder-scanning sensor's cursor (v1) is not this one's: logged, then read from the start."""
    defs = checked_defs(store)
    materialize_adapter(store, instance, ROUTER, "v1")
    old = json.dumps({"v": 1, "seen": {ROUTER: ["v0"]}, "skipped": {}})
    result = tick(new_adapter_sensor, instance, defs, old)
    assert [r.run_key for r in result.run_requests] == [f"{ROUTER}:v1"]
    assert "ignoring the saved cursor: cursor version 1 is not 2" in capfd.readouterr().err
    for bad in ("{not json", "[1, 2]"):
        with pytest.raises(ValueError):
            AdapterCursor.parse(bad)
    assert AdapterCursor.parse(AdapterCursor(after=41, pending=(40, 38)).dump()) == AdapterCursor(41, (38, 40))


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

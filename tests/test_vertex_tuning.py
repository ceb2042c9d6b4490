"""VertexTuning against the real aiplatform SDK, talking REST to a loopback `tuningJobs` server, with the
tuning data on the GCS emulator. Covers submit, find-instead-of-resubmit after a crash, one job for two
processes racing to submit it (the lease), failure reporting with Vertex's own text, label sanitising and
configuration errors."""

from __future__ import annotations

import dataclasses
import multiprocessing
import re
import socket

import dagster as dg
import pytest

from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.training.spec import VertexJob, vertex_settings
from resources.gcs_store import GcsStore
from resources.store_lease import LEASE_PREFIX
from resources.vertex_jobs import (
    LABEL_VALUE,
    TuningJobInfo,
    VertexTuningError,
    job_labels,
    label_filter,
    label_value,
)
from resources.vertex_tuning import VertexTuning
from tests.fakes.gcs_emulator import honour_generation_match
from tests.fakes.vertex_server import FakeVertexServer

BUCKET = "coursegpt-vertex-test"
PAIR = "router__llama31-8b"


class Recorder:
    """Stands in for context.log and keeps what was logged."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def info(self, msg):
        self.lines.append(("info", msg))

    def warning(self, msg):
        self.lines.append(("warning", msg))

    def text(self, level: str) -> str:
        return "\n".join(m for lvl, m in self.lines if lvl == level)


@pytest.fixture(scope="module")
def gcs_emulator():
    from gcp_storage_emulator.server import create_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    honour_generation_match()  # as real GCS does: the submission lease's exclusive create needs it
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def env(monkeypatch, gcs_emulator):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # never probe a metadata server
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")


@pytest.fixture
def vertex_server():
    with FakeVertexServer(page_size=2) as server:
        yield server


def resource(server: FakeVertexServer, **overrides) -> VertexTuning:
    fields = dict(project="coursegpt-test", api_endpoint=server.endpoint, credentials="anonymous",
                  poll_interval_seconds=0, lease_poll_seconds=0.05)
    return VertexTuning(**{**fields, **overrides})


def staged_request(pair: str = PAIR, data_version: str = "v1") -> dict:
    """Tuning data for `pair` (its rows name `data_version`) on the emulator, and the submit_or_find arguments
    the tuning_job asset builds: the job from the plan and the files' digests, the output under its key."""
    plan = default_plan()
    model = pair.split("__")[1]
    store = GcsStore(root=f"gs://{BUCKET}/forge")
    rows = [{"prompt": f"question {i} ({data_version})", "completion": f"answer {i}"} for i in range(3)]
    train_uri, _, train_sha = store.write_jsonl(layout.tuning_records(pair, "train"), rows)
    validation_uri, _, validation_sha = store.write_jsonl(layout.tuning_records(pair, "validation"), rows[:1])
    job = VertexJob(train_sha256=train_sha, validation_sha256=validation_sha,
                    **vertex_settings(plan.base_models[model].vertex_id, plan.hyperparameters.model_dump()))
    return dict(pair=pair, job=job, train_uri=train_uri, validation_uri=validation_uri,
                output_uri=store.uri(f"{layout.adapter_dir(pair, job.key)}/{layout.VERTEX_EXPORT}"),
                display_name=f"coursegpt-{pair}-{job.key}", store=store)


def blob_exists(uri: str) -> bool:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket, _, name = uri[len("gs://"):].partition("/")
    return storage.Client(project="t", credentials=AnonymousCredentials()).bucket(bucket).blob(name).exists()


# -- labels ------------------------------------------------------------------------------------------------
def test_job_labels_are_the_pair_and_exactly_what_vertex_receives():
    job = VertexJob(source_model="meta/llama3_1@llama-3.1-8b-instruct", train_sha256="a" * 64,
                    validation_sha256="b" * 64, epochs=3, learning_rate_multiplier=0.7, adapter_size=16)
    labels = job_labels("router__llama31-8b", job)
    assert labels == {"coursegpt-pair": "router__llama31-8b", "coursegpt-job": job.key}  # valid values stay readable
    assert all(LABEL_VALUE.match(v) for v in labels.values())
    for change in ({"source_model": "google/gemma3@gemma-3-27b-it"}, {"train_sha256": "c" * 64},
                   {"validation_sha256": "c" * 64}, {"epochs": 4}, {"learning_rate_multiplier": 0.5},
                   {"adapter_size": 8}, {"tuning_mode": "FULL"}):
        assert job_labels("router__llama31-8b", dataclasses.replace(job, **change)) != labels, change
    assert label_value("V2.0/Big Model") != label_value("v2-0-big-model")
    assert label_value("V2.0/Big Model").startswith("v2-0-big-model-")
    assert LABEL_VALUE.match(label_value("Ünïcode " * 20))
    assert label_filter({"b": "2", "a": "1"}) == 'labels.a="1" AND labels.b="2"'


# -- submit / find -----------------------------------------------------------------------------------------
def test_submit_creates_one_peft_job_with_the_requested_spec(env, vertex_server):
    from google.cloud.aiplatform_v1beta1.types import tuning_job as tj

    request = staged_request()
    log = Recorder()
    info = resource(vertex_server).submit_or_find(**request, log=log)

    assert vertex_server.create_calls == 1
    assert info.created and info.state == "JOB_STATE_PENDING"
    assert re.fullmatch(r"projects/coursegpt-test/locations/us-central1/tuningJobs/\d+", info.resource_name)
    assert info.console_url == ("https://console.cloud.google.com/vertex-ai/generative/language/locations/"
                                f"us-central1/tuning/tuningJob/{info.job_id}?project=coursegpt-test")
    job = request["job"]
    assert info.output_uri == request["output_uri"] and info.base_model == job.source_model
    body = vertex_server.created_bodies[0]
    spec, hyper = body["supervisedTuningSpec"], body["supervisedTuningSpec"]["hyperParameters"]
    assert spec["tuningMode"] == tj.SupervisedTuningSpec.TuningMode.TUNING_MODE_PEFT_ADAPTER.value
    assert hyper["adapterSize"] == tj.SupervisedHyperParameters.AdapterSize.ADAPTER_SIZE_SIXTEEN.value
    assert int(hyper["epochCount"]) == job.epochs
    assert hyper["learningRateMultiplier"] == pytest.approx(job.learning_rate_multiplier)
    assert body["baseModel"] == job.source_model and body["outputUri"] == request["output_uri"]
    assert body["labels"].items() >= job_labels(PAIR, job).items()
    # the URIs Vertex was given are real objects on (emulated) GCS
    assert blob_exists(spec["trainingDatasetUri"]) and blob_exists(spec["validationDatasetUri"])
    assert info.resource_name in log.text("info")


def test_second_call_follows_the_job_instead_of_paying_twice(env, vertex_server):
    request = staged_request()
    first = resource(vertex_server).submit_or_find(**request)
    vertex_server.set_state(first.resource_name, "JOB_STATE_RUNNING")
    log = Recorder()
    again = resource(vertex_server).submit_or_find(**request, log=log)  # a fresh resource, as in a new run
    assert vertex_server.create_calls == 1
    assert (again.resource_name, again.created, again.state) == (first.resource_name, False, "JOB_STATE_RUNNING")
    assert "not submitting another" in log.text("info")


class Crash(Exception):
    pass


class CrashAfterSubmit(Recorder):
    def info(self, msg):
        if "submitted" in msg:
            raise Crash("worker died after the job was created")
        super().info(msg)


@pytest.mark.parametrize("crash", ["response_lost", "process_died"])
def test_crash_after_submit_then_retry_creates_exactly_one_job(env, vertex_server, crash):
    request = staged_request()
    if crash == "response_lost":
        vertex_server.lose_next_create_responses = 1
        with pytest.raises(VertexTuningError, match="next attempt finds it by its labels"):
            resource(vertex_server).submit_or_find(**request)
    else:
        with pytest.raises(Crash):
            resource(vertex_server).submit_or_find(**request, log=CrashAfterSubmit())
    assert vertex_server.create_calls == 1 and len(vertex_server.jobs()) == 1

    retry = resource(vertex_server).submit_or_find(**request)
    assert not retry.created and retry.resource_name == vertex_server.jobs()[0]["name"]
    assert vertex_server.create_calls == 1


def test_other_pairs_and_data_versions_get_their_own_jobs(env, vertex_server):
    a = resource(vertex_server).submit_or_find(**staged_request())
    b = resource(vertex_server).submit_or_find(**staged_request(data_version="v2"))
    c = resource(vertex_server).submit_or_find(**staged_request(pair="math__qwen3-32b"))
    assert vertex_server.create_calls == 3 and len({a.resource_name, b.resource_name, c.resource_name}) == 3


def test_failed_job_reports_vertex_error_and_does_not_block_a_new_attempt(env, vertex_server):
    request = staged_request()
    first = resource(vertex_server).submit_or_find(**request)
    message = f"Dataset {request['train_uri']} line 3: 'messages' field is missing."
    vertex_server.fail(first.resource_name, message)

    info = resource(vertex_server).get_job(first.resource_name)
    assert info.state == "JOB_STATE_FAILED" and info.is_terminal and not info.succeeded
    assert info.error == message
    with pytest.raises(VertexTuningError) as failure:
        info.raise_for_failure()
    assert message in str(failure.value) and info.console_url in str(failure.value)

    log = Recorder()
    second = resource(vertex_server).submit_or_find(**request, log=log)
    assert second.created and second.resource_name != first.resource_name
    assert vertex_server.create_calls == 2
    assert message in log.text("warning") and first.resource_name in log.text("warning")


def test_succeeded_job_exposes_model_and_export_and_is_not_resubmitted(env, vertex_server):
    request = staged_request()
    first = resource(vertex_server).submit_or_find(**request)
    vertex_server.succeed(first.resource_name, files={"adapter_config.json": b'{"r": 16}'})

    info = resource(vertex_server).get_job(first.resource_name)
    info.raise_for_failure()
    assert info.succeeded and info.error is None
    assert info.tuned_model.endswith(f"/models/{info.job_id}@1") and info.endpoint.endswith(info.job_id)
    assert blob_exists(f"{info.output_uri}/adapter_config.json")
    assert resource(vertex_server).submit_or_find(**request).resource_name == first.resource_name
    assert vertex_server.create_calls == 1
    meta = info.metadata()
    assert meta["state"] == "JOB_STATE_SUCCEEDED" and meta["console_url"].url == info.console_url


def test_a_job_with_the_same_labels_writing_elsewhere_is_not_followed(env, vertex_server):
    """The same job for another store (its output_uri) is not this store's adapter: it gets its own job."""
    request = staged_request()
    resource(vertex_server).submit_or_find(**request)
    log = Recorder()
    elsewhere = request["output_uri"].replace("/forge/", "/other-store/")
    other = resource(vertex_server).submit_or_find(**{**request, "output_uri": elsewhere}, log=log)
    assert other.created and other.output_uri == elsewhere and vertex_server.create_calls == 2
    assert "ignoring it" in log.text("warning")


# -- concurrent submissions: the lease ---------------------------------------------------------------------
def _submit_in_a_process(endpoint: str, request: dict, barrier, results) -> None:
    """One of two racing submitters (a fresh process, as a second run worker would be)."""
    store = GcsStore(root=request.pop("store_root"))
    barrier.wait()
    info = resource_for_endpoint(endpoint).submit_or_find(**request, store=store)
    results.put((info.resource_name, info.created))


def resource_for_endpoint(endpoint: str) -> VertexTuning:
    return VertexTuning(project="coursegpt-test", api_endpoint=endpoint, credentials="anonymous",
                        poll_interval_seconds=0, lease_poll_seconds=0.05)


def test_two_processes_racing_to_submit_one_job_create_it_once(env, vertex_server):
    request = staged_request()
    store = request.pop("store")
    lease = f"{LEASE_PREFIX}/vertex-tuning/{PAIR}/{request['job'].key}"
    earlier = len(store.list_keys(lease))  # the module's emulator keeps earlier tests' submissions
    vertex_server.create_delay_s = 1.0  # both have listed no job before the first create completes
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    args = (vertex_server.endpoint, {**request, "store_root": store.root}, barrier, results)
    workers = [ctx.Process(target=_submit_in_a_process, args=args) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    assert [w.exitcode for w in workers] == [0, 0]
    outcomes = [results.get(timeout=5) for _ in workers]

    assert vertex_server.create_calls == 1 and len(vertex_server.jobs()) == 1
    name = vertex_server.jobs()[0]["name"]
    assert sorted(outcomes, key=lambda o: o[1]) == [(name, False), (name, True)]
    log = [store.read_json(k) for k in store.list_keys(lease)[earlier:]]
    assert [e["state"] for e in log] == ["held", "released"] and log[-1]["created"] == name


def test_a_crashed_submitters_lease_expires_and_the_next_run_submits_once(env, vertex_server):
    from resources.store_lease import StoreLease

    request = staged_request()
    job = request["job"]
    crashed = StoreLease(request["store"], f"vertex-tuning/{PAIR}/{job.key}", timeout_s=0.5)
    assert crashed.acquire()  # ...and its process died before creating the job or releasing the lease

    log = Recorder()
    info = resource(vertex_server, lease_timeout_seconds=0.5).submit_or_find(**request, log=log)
    assert info.created and vertex_server.create_calls == 1
    assert "another run is submitting this Vertex job" in log.text("info")
    again = resource(vertex_server).submit_or_find(**request)
    assert again.resource_name == info.resource_name and vertex_server.create_calls == 1


# -- listing -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("filter_mode", ["honour", "ignore", "reject"])
def test_list_jobs_returns_only_matching_labels_across_pages(env, filter_mode):
    with FakeVertexServer(page_size=1, filter_mode="honour") as server:
        wanted = resource(server).submit_or_find(**staged_request())
        resource(server).submit_or_find(**staged_request(data_version="v2"))
        resource(server).submit_or_find(**staged_request(pair="code__llama31-8b"))
        server.filter_mode = filter_mode
        server.requests.clear()
        log = Recorder()
        found = resource(server).list_jobs(job_labels(PAIR, staged_request()["job"]), log=log)
        everything = resource(server).list_jobs()

    assert [i.resource_name for i in found] == [wanted.resource_name]
    assert len(everything) == 3
    assert [i.create_time for i in everything] == sorted((i.create_time for i in everything), reverse=True)
    lists = [q for method, path, q in server.requests if method == "GET" and path.endswith("/tuningJobs")]
    assert 'labels.coursegpt-pair="router__llama31-8b"' in lists[0]["filter"]
    if filter_mode == "reject":
        assert "filtering locally" in log.text("warning")
        assert any("filter" not in q for q in lists)


def test_wait_polls_until_the_job_ends(env, vertex_server):
    info = resource(vertex_server).submit_or_find(**staged_request())
    vertex_server.script(info.resource_name, [("JOB_STATE_RUNNING", None), ("JOB_STATE_RUNNING", None),
                                              ("JOB_STATE_FAILED", "Quota exceeded for a100 GPUs.")])
    log = Recorder()
    final = resource(vertex_server).wait(info.resource_name, log=log)
    assert final.state == "JOB_STATE_FAILED" and final.error == "Quota exceeded for a100 GPUs."
    assert [m.split(": ")[1] for m in log.text("info").splitlines()] == ["JOB_STATE_RUNNING", "JOB_STATE_FAILED"]


# -- configuration and request errors ----------------------------------------------------------------------
def test_missing_project_names_the_variable_and_the_field(env, vertex_server, monkeypatch):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    with pytest.raises(VertexTuningError, match=r"VertexTuning\.project.*GOOGLE_CLOUD_PROJECT"):
        resource(vertex_server, project=None).list_jobs()
    assert vertex_server.requests == []
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    assert resource(vertex_server, project=None).list_jobs() == []
    assert vertex_server.requests[-1][1] == "/v1beta1/projects/from-env/locations/us-central1/tuningJobs"


def test_unknown_job_and_malformed_name_are_clear_errors(env, vertex_server):
    missing = "projects/coursegpt-test/locations/us-central1/tuningJobs/123"
    with pytest.raises(VertexTuningError, match=f"{missing} not found"):
        resource(vertex_server).get_job(missing)
    with pytest.raises(VertexTuningError, match="is not a tuning job name"):
        resource(vertex_server).get_job("tuningJobs/123")


@pytest.mark.parametrize(("change", "message"), [
    ({"train_uri": "/tmp/train.jsonl"}, "train_uri=.*gs://"),
    ({"job": {"adapter_size": 12}}, "adapter_size=12"),
    ({"job": {"source_model": ""}}, "vertex_id"),
    ({"job": {"tuning_mode": "LORA"}}, "tuning_mode='LORA'"),
    ({"job": {"epochs": 0}}, "both must be positive"),
    ({"display_name": ""}, "1-128 characters"),
])
def test_bad_requests_fail_before_any_call(env, vertex_server, change, message):
    request = staged_request()
    if "job" in change:
        change = {"job": dataclasses.replace(request["job"], **change["job"])}
    with pytest.raises(VertexTuningError, match=message):
        resource(vertex_server).submit_or_find(**{**request, **change})
    assert vertex_server.requests == []


def test_an_invalid_label_filter_fails_before_any_call(env, vertex_server):
    with pytest.raises(VertexTuningError, match="label_value"):
        resource(vertex_server).list_jobs({"coursegpt-pair": "Router/Llama"})
    assert vertex_server.requests == []


def test_info_is_a_plain_record():
    info = TuningJobInfo(resource_name="projects/p/locations/l/tuningJobs/9", state="JOB_STATE_RUNNING",
                         console_url="u", created=False, error=None, output_uri="gs://b/o")
    assert info.job_id == "9" and not info.is_terminal
    with pytest.raises(VertexTuningError, match="JOB_STATE_RUNNING"):
        info.raise_for_failure()


def test_resource_inside_a_materialisation_records_job_metadata(env, vertex_server):
    """The shape the tuning_job asset takes: submit-or-find, return metadata, never wait."""
    request = staged_request()

    @dg.asset
    def tuning_job(context, vertex: VertexTuning) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=vertex.submit_or_find(**request, log=context.log).metadata())

    for _ in range(2):  # a re-materialisation follows the same job
        result = dg.materialize([tuning_job], resources={"vertex": resource(vertex_server)})
        assert result.success
    meta = result.asset_materializations_for_node("tuning_job")[0].metadata
    assert meta["created"].value is False and meta["state"].value == "JOB_STATE_PENDING"
    assert meta["resource_name"].value == vertex_server.jobs()[0]["name"]
    assert vertex_server.create_calls == 1


def test_the_vertex_trainer_labels_jobs_as_the_sensor_and_the_lookup_expect():
    from resources.tuning import VertexTrainer

    trainer = VertexTrainer(vertex=VertexTuning(project="p"))
    job = VertexJob(source_model="m", train_sha256="t", validation_sha256="v", epochs=3,
                    learning_rate_multiplier=0.7, adapter_size=16)
    labels = trainer.job_labels("router__llama31-8b", job)
    assert labels == job_labels("router__llama31-8b", job)
    assert labels != trainer.job_labels("router__llama31-8b", dataclasses.replace(job, train_sha256="t2"))

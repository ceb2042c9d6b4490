"""VertexTuning against the real aiplatform SDK, talking REST to a loopback `tuningJobs` server, with the
tuning data on the GCS emulator. Covers submit, find-instead-of-resubmit after a crash, failure reporting
with Vertex's own text, label sanitising and configuration errors."""

from __future__ import annotations

import hashlib
import re
import socket

import dagster as dg
import pytest

from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from resources.gcs_store import GcsStore
from resources.vertex_tuning import (
    LABEL_VALUE,
    TuningJobInfo,
    VertexTuning,
    VertexTuningError,
    job_labels,
    label_filter,
    label_value,
)
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
                  poll_interval_seconds=0)
    return VertexTuning(**{**fields, **overrides})


def staged_request(pair: str = PAIR, data_version: str = "v1") -> dict:
    """Tuning data for `pair` on the emulator, and the submit_or_find arguments the tuning_job asset builds."""
    plan = default_plan()
    agent, model = pair.split("__")
    hp = plan.hyperparameters
    store = GcsStore(root=f"gs://{BUCKET}/forge")
    rows = [{"prompt": f"question {i}", "completion": f"answer {i}"} for i in range(3)]
    train_uri, _, _ = store.write_jsonl(layout.tuning_records(pair, "train"), rows)
    validation_uri, _, _ = store.write_jsonl(layout.tuning_records(pair, "validation"), rows[:1])
    source_model = plan.base_models[model].vertex_id
    hyperparameters = {"source_model": source_model, "adapter_size": hp.lora_rank, "epochs": hp.epochs,
                       "learning_rate_multiplier": hp.learning_rate_multiplier}
    return dict(pair=pair, source_model=source_model, train_uri=train_uri, validation_uri=validation_uri,
                output_uri=store.uri(f"vertex/{pair}/{data_version}"), adapter_size=hp.lora_rank, epochs=hp.epochs,
                learning_rate_multiplier=hp.learning_rate_multiplier, display_name=f"coursegpt-{pair}",
                labels=job_labels(pair, data_version, hyperparameters))


def blob_exists(uri: str) -> bool:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket, _, name = uri[len("gs://"):].partition("/")
    return storage.Client(project="t", credentials=AnonymousCredentials()).bucket(bucket).blob(name).exists()


# -- labels ------------------------------------------------------------------------------------------------
def test_job_labels_are_valid_vertex_labels_and_keep_inputs_apart():
    sha = hashlib.sha256(b"data").hexdigest()  # 64 characters: one more than Vertex allows
    hp = {"epochs": 3, "adapter_size": 16, "learning_rate_multiplier": 0.7}
    labels = job_labels("router__llama31-8b", sha, hp)
    assert all(LABEL_VALUE.match(v) for v in labels.values())
    assert labels["coursegpt-pair"] == "router__llama31-8b"  # valid values stay readable
    assert labels["coursegpt-data"] != job_labels("router__llama31-8b", sha[:-1] + "0", hp)["coursegpt-data"]
    assert label_value("V2.0/Big Model") != label_value("v2-0-big-model")
    assert label_value("V2.0/Big Model").startswith("v2-0-big-model-")
    assert LABEL_VALUE.match(label_value("Ünïcode " * 20))
    # the hash follows the values, not the order of the keys
    assert job_labels("p", "v", dict(reversed(hp.items())))["coursegpt-hparams"] == labels["coursegpt-hparams"]
    assert job_labels("p", "v", {**hp, "epochs": 4})["coursegpt-hparams"] != labels["coursegpt-hparams"]
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
    assert info.output_uri == request["output_uri"] and info.base_model == request["source_model"]
    body = vertex_server.created_bodies[0]
    spec, hyper = body["supervisedTuningSpec"], body["supervisedTuningSpec"]["hyperParameters"]
    assert spec["tuningMode"] == tj.SupervisedTuningSpec.TuningMode.TUNING_MODE_PEFT_ADAPTER.value
    assert hyper["adapterSize"] == tj.SupervisedHyperParameters.AdapterSize.ADAPTER_SIZE_SIXTEEN.value
    assert int(hyper["epochCount"]) == request["epochs"]
    assert hyper["learningRateMultiplier"] == pytest.approx(request["learning_rate_multiplier"])
    assert body["baseModel"] == request["source_model"] and body["outputUri"] == request["output_uri"]
    assert body["labels"].items() >= request["labels"].items()
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


def test_same_labels_but_other_model_is_not_followed(env, vertex_server):
    request = staged_request()
    resource(vertex_server).submit_or_find(**request)
    log = Recorder()
    other = resource(vertex_server).submit_or_find(**{**request, "source_model": "google/gemma3@gemma-3-27b-it"},
                                                   log=log)
    assert other.created and vertex_server.create_calls == 2
    assert "ignoring it" in log.text("warning")


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
        found = resource(server).list_jobs(staged_request()["labels"], log=log)
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
    ({"adapter_size": 12}, "adapter_size=12"),
    ({"source_model": None}, "vertex_id"),
    ({"labels": {"coursegpt-pair": "Router/Llama"}}, "label_value"),
    ({"labels": {}}, "labels are required"),
])
def test_bad_requests_fail_before_any_call(env, vertex_server, change, message):
    with pytest.raises(VertexTuningError, match=message):
        resource(vertex_server).submit_or_find(**{**staged_request(), **change})
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
    hp = {"epochs": 3, "learning_rate_multiplier": 0.7, "lora_rank": 16}
    labels = trainer.job_labels("router__llama31-8b", "data-v1", hp)
    assert labels == job_labels("router__llama31-8b", "data-v1", hp)
    assert labels != trainer.job_labels("router__llama31-8b", "data-v2", hp)

"""The Vertex AI path of the adapter pipeline, end to end with the real assets, resources and sensor.

COURSEGPT_ENV=gcp wiring: the REAL `tuning_job` asset submits through `VertexTrainer` → `VertexTuning`
(the google-cloud-aiplatform SDK over REST) to the loopback `tuningJobs` server, with the tuning data on the
GCS emulator; `vertex_job_sensor` polls the job on the same Dagster instance; the REAL `adapter` asset copies
the exported PEFT adapter (a real tiny LoRA trained in-process, standing in for what Vertex writes under
`output_uri`) into `adapters/<pair>/<version>/`, validates it and points `latest.json` at it.
No stand-in replaces any of those pieces; only the Vertex service and GCS are fakes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pytest

from coursegpt_assets.core import layout
from coursegpt_assets.core.layout import JOB_RECORD, VERTEX_EXPORT
from coursegpt_assets.core.layout import SUMMARY_FILE as SUMMARY
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.defs.adapters.assets import ADAPTER_ASSETS, ADAPTER_CHECK, tuning_job
from coursegpt_assets.training.spec import BACKEND_LOCAL, BACKEND_VERTEX, adapter_request
from resources.tuning import VertexTrainer
from resources.vertex_jobs import job_labels
from resources.vertex_tuning import VertexTuning
from schedules.sensors import SENSOR_CHECKS, VERTEX_CHECK, vertex_job_sensor
from tests.conftest import assert_vertex_failure_reported, step_failure_text
from tests.fakes.tuning_store import plan_copy, write_tuning_data
from tests.fakes.vertex_server import FakeVertexServer

PAIR = "router__llama31-8b"  # a pair whose base model has a Vertex model id
PROJECT, LOCATION = "coursegpt-pipeline", "europe-west4"
# Where a Vertex PEFT export puts the adapter below output_uri (the layout is Vertex's; find_export searches).
EXPORT_FOLDER = "postprocess/node-0/checkpoints/final"
# Settings `sft.train` never receives: they shape local (TRL) training only.
LOCAL_ONLY = {"batch_size": 8, "learning_rate": 1e-4, "logging_steps": 5, "gradient_accumulation_steps": 2,
              "lora_dropout": 0.1, "max_length": 1024, "lora_alpha": 64, "warmup_ratio": 0.0, "seed": 7,
              "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture
def vertex_server(gcs_emulator):
    """The fake tuningJobs service; `succeed(..., files=...)` writes to the emulator gcs_emulator points at."""
    with FakeVertexServer(page_size=2) as server:
        yield server


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(autouse=True)
def named_small_source(tmp_path, monkeypatch):
    """A user's own (small) router file and a plan whose paid-job floor admits it: the paid-data guard
    refuses the shipped fixture and splits under cost.min_train_rows (tests/test_paid_data_guard.py)."""
    source = tmp_path / "my_router_traces.jsonl"
    source.write_bytes((FIXTURES_DIR / "router.jsonl").read_bytes())
    monkeypatch.setenv("COURSEGPT_ROUTER_SOURCE", str(source))
    plan_copy(tmp_path / "plan-floor.yaml", lambda raw: raw["cost"].update(min_train_rows=8), monkeypatch=monkeypatch)
    yield source
    default_plan.cache_clear()


@pytest.fixture
def plan_with(tmp_path, monkeypatch):
    """`plan_with(**hyperparameters)`: COURSEGPT_PLAN points at a copy of the current plan with those changed."""
    def change(**hyperparameters):
        path = tmp_path / f"plan-{len(list(tmp_path.glob('plan-*.yaml')))}.yaml"
        plan_copy(path, lambda raw: raw["hyperparameters"].update(hyperparameters), base=tmp_path / "plan-floor.yaml",
                  monkeypatch=monkeypatch)

    yield change
    default_plan.cache_clear()


@pytest.fixture(scope="module")
def exported_adapter(tmp_path_factory) -> dict[str, bytes]:
    """A real PEFT LoRA (the plan's rank and target modules) on the local tiny Llama, as Vertex exports one:
    its config names whatever base Vertex tuned, which `adapter` replaces with the plan's HF id."""
    from coursegpt_assets.training.tiny_llama import build_tiny_llama
    from tests.fakes.tiny_adapter import train_tiny_lora

    base = build_tiny_llama(tmp_path_factory.mktemp("models"))
    out = tmp_path_factory.mktemp("vertex_export")
    train_tiny_lora(str(base), out, agent="router", steps=1)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "gs://vertex-model-garden/llama3_1/llama-3.1-8b-instruct"
    (out / "adapter_config.json").write_text(json.dumps(config))
    return {name: (out / name).read_bytes() for name in ("adapter_config.json", "adapter_model.safetensors")}


def make_trainer(server: FakeVertexServer) -> VertexTrainer:
    """The gcp trainer exactly as resources_for builds it, pointed at the fakes."""
    return VertexTrainer(vertex=VertexTuning(project=PROJECT, location=LOCATION, api_endpoint=server.endpoint,
                                             credentials="anonymous", poll_interval_seconds=0))


def resources(store, server) -> dict:
    return {"store": store, "trainer": make_trainer(server)}


def materialise_tuning_job(store, server, instance, **kwargs) -> dg.ExecuteInJobResult:
    return dg.materialize([tuning_job, *SENSOR_CHECKS], partition_key=PAIR, instance=instance,
                          resources=resources(store, server), **kwargs)


def tick(store, server, instance, cursor=None):
    defs = dg.Definitions(assets=ADAPTER_ASSETS, asset_checks=SENSOR_CHECKS, sensors=[vertex_job_sensor],
                          resources=resources(store, server))
    with dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs, cursor=cursor,
                                 resources=defs.resources) as context:
        return vertex_job_sensor.evaluate_tick(context)


def job_meta(result: dg.ExecuteInJobResult) -> dict:
    meta = result.asset_materializations_for_node("tuning_job")[0].metadata
    return {k: getattr(v, "value", v) for k, v in meta.items()}


def expected_request(manifest: dict):
    return adapter_request(default_plan(), PAIR, manifest, BACKEND_VERTEX)


# -- 1 + 2: submit through the real asset, then follow the same job ---------------------------------------
def submit_job(store, server, instance):
    """Tuning data for PAIR, then a successful tuning_job run: (the adapter request, the created job's name)."""
    req = expected_request(write_tuning_data(store, PAIR))
    assert materialise_tuning_job(store, server, instance).success
    return req, server.jobs()[0]["name"]


def test_tuning_job_submits_one_peft_job_with_the_plans_spec(gcs_emulator, gcs_store, vertex_server, instance):
    from google.cloud.aiplatform_v1beta1.types import tuning_job as tj

    manifest = write_tuning_data(gcs_store, PAIR)
    req = expected_request(manifest)
    hp = req.hyperparameters

    result = materialise_tuning_job(gcs_store, vertex_server, instance)
    assert result.success
    assert vertex_server.create_calls == 1
    body = vertex_server.created_bodies[0]
    spec, hyper = body["supervisedTuningSpec"], body["supervisedTuningSpec"]["hyperParameters"]
    assert body["baseModel"] == default_plan().base_models["llama31-8b"].vertex_id == req.vertex_model_id
    train_key, validation_key = layout.tuning_records(PAIR, "train"), layout.tuning_records(PAIR, "validation")
    assert spec["trainingDatasetUri"] == gcs_store.uri(train_key)
    assert spec["validationDatasetUri"] == gcs_store.uri(validation_key)
    assert spec["trainingDatasetUri"].startswith(f"gs://{gcs_emulator.bucket}/")
    objects = gcs_emulator.object_names()
    assert {o for o in objects if o.endswith((train_key, validation_key))}, objects  # real objects Vertex reads
    assert spec["tuningMode"] == tj.SupervisedTuningSpec.TuningMode.TUNING_MODE_PEFT_ADAPTER.value
    assert hyper["adapterSize"] == tj.SupervisedHyperParameters.AdapterSize.ADAPTER_SIZE_SIXTEEN.value
    assert hp["lora_rank"] == 16
    assert int(hyper["epochCount"]) == hp["epochs"]
    assert hyper["learningRateMultiplier"] == pytest.approx(hp["learning_rate_multiplier"])
    adir = layout.adapter_dir(PAIR, req.version)
    assert body["outputUri"] == gcs_store.uri(f"{adir}/{VERTEX_EXPORT}")
    assert body["outputUri"].startswith(gcs_store.root.rstrip("/") + "/")
    labels = body["labels"]
    assert labels.items() >= job_labels(PAIR, req.vertex_job).items()
    assert labels["coursegpt-pair"] == PAIR and labels["coursegpt-job"] == req.version == req.vertex_job.key
    assert (req.vertex_job.train_sha256, req.vertex_job.validation_sha256) == (manifest["sha256"]["train"],
                                                                               manifest["sha256"]["validation"])
    record = gcs_store.read_json(f"{adir}/{JOB_RECORD}")
    assert record["vertex_job"] == asdict(req.vertex_job)
    assert record["hyperparameters"] == {"source_model": req.vertex_model_id, "tuning_mode": "PEFT_ADAPTER",
                                         "epochs": hp["epochs"], "adapter_size": hp["lora_rank"],
                                         "learning_rate_multiplier": hp["learning_rate_multiplier"]}

    name = vertex_server.jobs()[0]["name"]
    assert name.startswith(f"projects/{PROJECT}/locations/{LOCATION}/tuningJobs/")
    meta = job_meta(result)
    assert meta["resource_name"] == name and meta["state"] == "JOB_STATE_PENDING" and meta["created"] is True
    assert meta["version"] == req.version and meta["backend"] == BACKEND_VERTEX and meta["reused"] is False
    assert name.rsplit("/", 1)[1] in meta["console_url"]
    assert (record["resource_name"], record["state"]) == (name, "JOB_STATE_PENDING")
    check = result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in check] == [(VERTEX_CHECK, True)]

    # 2. a re-materialisation (a retried run) follows the job instead of paying for a second one
    vertex_server.set_state(name, "JOB_STATE_RUNNING")
    again = materialise_tuning_job(gcs_store, vertex_server, instance)
    assert again.success and vertex_server.create_calls == 1 and len(vertex_server.jobs()) == 1
    meta = job_meta(again)
    assert (meta["resource_name"], meta["state"], meta["created"]) == (name, "JOB_STATE_RUNNING", False)


def test_lost_create_response_then_retry_creates_exactly_one_job(gcs_store, vertex_server, instance):
    manifest = write_tuning_data(gcs_store, PAIR)
    adir = layout.adapter_dir(PAIR, expected_request(manifest).version)
    vertex_server.lose_next_create_responses = 1  # Vertex stores the job, the client sees a 503

    crashed = materialise_tuning_job(gcs_store, vertex_server, instance, raise_on_error=False)
    assert not crashed.success
    assert "next attempt finds it by its labels" in step_failure_text(crashed)
    assert vertex_server.create_calls == 1 and len(vertex_server.jobs()) == 1
    assert not gcs_store.exists(f"{adir}/{JOB_RECORD}")

    retry = materialise_tuning_job(gcs_store, vertex_server, instance)
    assert retry.success and vertex_server.create_calls == 1
    meta = job_meta(retry)
    assert meta["resource_name"] == vertex_server.jobs()[0]["name"] and meta["created"] is False
    assert gcs_store.read_json(f"{adir}/{JOB_RECORD}")["resource_name"] == meta["resource_name"]


# -- the job's identity: what Vertex receives, nothing else ------------------------------------------------
def test_a_vertex_version_ignores_local_only_settings_and_a_local_version_does_not(plan_with):
    manifest = {"data_version": "d", "sha256": {"train": "a" * 64, "validation": "b" * 64}}
    vertex, local = (adapter_request(default_plan(), PAIR, manifest, b) for b in (BACKEND_VERTEX, BACKEND_LOCAL))
    for name, value in LOCAL_ONLY.items():
        plan_with(**{name: value})
        assert adapter_request(default_plan(), PAIR, manifest, BACKEND_VERTEX).version == vertex.version, name
        assert adapter_request(default_plan(), PAIR, manifest, BACKEND_LOCAL).version != local.version, name
    for name, value in {"epochs": 4, "learning_rate_multiplier": 0.5, "lora_rank": 8}.items():
        plan_with(**{name: value})
        assert adapter_request(default_plan(), PAIR, manifest, BACKEND_VERTEX).version != vertex.version, name
    plan_with()
    for split in ("train", "validation"):
        other = {**manifest, "sha256": {**manifest["sha256"], split: "c" * 64}}
        assert adapter_request(default_plan(), PAIR, other, BACKEND_VERTEX).version != vertex.version, split


def test_local_only_changes_follow_the_job_and_more_epochs_submit_another(gcs_store, vertex_server, instance,
                                                                          plan_with):
    req, name = submit_job(gcs_store, vertex_server, instance)
    vertex_server.set_state(name, "JOB_STATE_RUNNING")

    plan_with(**LOCAL_ONLY)  # every setting Vertex never receives, changed at once
    same = materialise_tuning_job(gcs_store, vertex_server, instance)
    assert same.success and vertex_server.create_calls == 1
    meta = job_meta(same)
    assert (meta["resource_name"], meta["created"], meta["version"]) == (name, False, req.version)

    plan_with(**LOCAL_ONLY, epochs=4)
    more = materialise_tuning_job(gcs_store, vertex_server, instance)
    assert more.success and vertex_server.create_calls == 2
    assert int(vertex_server.created_bodies[1]["supervisedTuningSpec"]["hyperParameters"]["epochCount"]) == 4
    assert job_meta(more)["created"] is True and job_meta(more)["version"] != req.version


# -- 3: success → sensor → real adapter asset -------------------------------------------------------------
def test_succeeded_job_is_collected_by_the_sensor_requested_adapter_run(gcs_store, vertex_server, instance,
                                                                       exported_adapter):
    req, name = submit_job(gcs_store, vertex_server, instance)

    pending = tick(gcs_store, vertex_server, instance)
    assert not pending.run_requests and not pending.asset_events

    vertex_server.succeed(name, files={
        **{f"{EXPORT_FOLDER}/{n}": data for n, data in exported_adapter.items()},
        "postprocess/node-0/checkpoints/1/adapter_config.json": b"{}",  # an incomplete intermediate folder
        "tuning_metrics.json": b'{"loss": 0.5}',
    })
    done = tick(gcs_store, vertex_server, instance, pending.cursor)
    assert [(r.run_key, r.partition_key, list(r.asset_selection)) for r in done.run_requests] == [
        (name, PAIR, [dg.AssetKey("adapter")])]
    observed = [e for e in done.asset_events if isinstance(e, dg.AssetObservation)]
    assert observed and observed[0].metadata["state"].value == "JOB_STATE_SUCCEEDED"

    # what that run request launches: the real adapter asset (and its blocking check) with the same trainer
    result = dg.materialize(ADAPTER_ASSETS, selection=[dg.AssetKey("adapter")], partition_key=PAIR,
                            instance=instance, resources=resources(gcs_store, vertex_server))
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert [(e.check_name, e.passed) for e in evaluations] == [(ADAPTER_CHECK, True)], evaluations[0].description

    adir = layout.adapter_dir(PAIR, req.version)
    names = {Path(k).name for k in gcs_store.list_keys(adir) if Path(k).parent.as_posix() == adir}
    assert {"adapter_config.json", "adapter_model.safetensors", "chat_template.jinja", SUMMARY, JOB_RECORD} <= names
    assert gcs_store.read_bytes(f"{adir}/adapter_model.safetensors") == exported_adapter["adapter_model.safetensors"]
    config = gcs_store.read_json(f"{adir}/adapter_config.json")
    assert config["base_model_name_or_path"] == req.base_model_id and config["r"] == 16
    summary = gcs_store.read_json(f"{adir}/{SUMMARY}")
    assert summary["resource_name"] == name and summary["version"] == req.version and summary["backend"] == "vertex"
    assert summary["export_uri"] == gcs_store.uri(f"{adir}/{VERTEX_EXPORT}/{EXPORT_FOLDER}")
    assert gcs_store.read_json(layout.adapter_latest(PAIR)) == {"version": req.version}
    meta = result.asset_materializations_for_node("adapter")[0].metadata
    assert meta["version"].value == req.version and meta["lora_tensors"].value > 0

    later = tick(gcs_store, vertex_server, instance, done.cursor)
    assert not later.run_requests  # one adapter run per job


# -- 4: a failed job -----------------------------------------------------------------------------------------
def test_failed_job_is_reported_with_vertex_error_and_no_adapter_is_requested(gcs_store, vertex_server, instance,
                                                                              capfd):
    req, name = submit_job(gcs_store, vertex_server, instance)
    message = f"Dataset {gcs_store.uri(layout.tuning_records(PAIR, 'train'))} line 3: 'messages' field is missing."
    vertex_server.fail(name, message)

    result = tick(gcs_store, vertex_server, instance)
    assert not result.run_requests
    assert_vertex_failure_reported(result, partition=PAIR, message=message, job_name=name,
                                   stderr=capfd.readouterr().err)
    observed = [e for e in result.asset_events if isinstance(e, dg.AssetObservation)]
    assert observed and observed[0].metadata["error"].value == message
    assert not tick(gcs_store, vertex_server, instance, result.cursor).run_requests

    # an adapter run launched by hand fails with Vertex's own text and leaves latest.json alone
    manual = dg.materialize(ADAPTER_ASSETS, selection=[dg.AssetKey("adapter")], partition_key=PAIR,
                            instance=instance, resources=resources(gcs_store, vertex_server), raise_on_error=False)
    assert not manual.success and message in step_failure_text(manual)
    assert not gcs_store.exists(layout.adapter_latest(PAIR))
    assert not gcs_store.exists(f"{layout.adapter_dir(PAIR, req.version)}/{SUMMARY}")


# -- 5: the endpoint the job reported serves the evaluation, asked in the format Vertex tuned on ---------------
def collect_adapter(store, server, instance, exported_adapter, **succeed):
    """Submit, let the fake job succeed (with its endpoint unless succeed says otherwise), run adapter."""
    req, name = submit_job(store, server, instance)
    server.succeed(name, files={f"{EXPORT_FOLDER}/{n}": data for n, data in exported_adapter.items()}, **succeed)
    result = dg.materialize(ADAPTER_ASSETS, selection=[dg.AssetKey("adapter")], partition_key=PAIR,
                            instance=instance, resources=resources(store, server))
    assert result.success
    return req, name, result


def evaluate_on_vertex(store, inference, instance, **kwargs) -> dg.ExecuteInJobResult:
    from coursegpt_assets.defs.evaluation.report import REPORT_KEY, evaluation_report
    from coursegpt_assets.defs.partitions import AGENT_PARTITIONS, PAIR_PARTITIONS

    upstream = [dg.AssetSpec("adapter", partitions_def=PAIR_PARTITIONS),
                dg.AssetSpec("benchmark", partitions_def=AGENT_PARTITIONS)]
    return dg.materialize([*upstream, evaluation_report], partition_key=PAIR, selection=[REPORT_KEY],
                          resources={"store": store, "inference": inference}, instance=instance, **kwargs)


@pytest.fixture
def no_metadata_server(monkeypatch):
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # never probe a GCE metadata server
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)


def test_evaluation_asks_the_endpoint_the_job_reported_in_the_prompt_format_vertex_tuned_on(
        gcs_store, vertex_server, instance, exported_adapter, no_metadata_server):
    from coursegpt_assets.agents import get_agent
    from coursegpt_assets.agents.base import tuning_row
    from resources.vertex_endpoint import VertexEndpoint
    from tests.fakes.evaluation_store import router_benchmark, write_benchmark
    from tests.fakes.tuning_store import valid_router_records
    from tests.fakes.vertex_predict_server import FakeVertexPredictServer
    from tests.test_evaluation import newest_report

    req, name, collected = collect_adapter(gcs_store, vertex_server, instance, exported_adapter)
    job_id = name.rsplit("/", 1)[1]
    endpoint = f"projects/{PROJECT}/locations/{LOCATION}/endpoints/{job_id}"
    summary = gcs_store.read_json(layout.adapter_summary(PAIR, req.version))
    assert summary["endpoint"] == endpoint == vertex_server.job(name)["tunedModel"]["endpoint"]
    assert summary["tuned_model"] == f"projects/{PROJECT}/locations/{LOCATION}/models/{job_id}@1"
    meta = collected.asset_materializations_for_node("adapter")[0].metadata
    assert meta["endpoint"].value == endpoint and meta["resource_name"].value == name
    agent = get_agent("router")
    assert summary["vertex_prompt_format"] == agent.vertex_prompt_format
    assert summary["vertex_data_stats"]["tuning_step_count"] == summary["steps"] == 24
    assert summary["wall_time_s"] is not None and summary["wall_time_s"] >= 0

    rows = router_benchmark()
    write_benchmark(gcs_store, rows)
    eot = "<|eot_id|>"
    by_query = {r["user_query"].strip(): r["completion"] for r in rows}
    predict = lambda prompt: next(f"{c}{eot}more" for q, c in by_query.items() if q in prompt)  # noqa: E731
    with FakeVertexPredictServer(predict) as predict_server:
        predict_server.add_endpoint(job_id, project=PROJECT, location=LOCATION)
        # the gcp wiring (resources_for) with no endpoints mapping and no project: all from the summary
        inference = VertexEndpoint(location="us-central1", api_endpoint=predict_server.endpoint,
                                   credentials="anonymous")
        result = evaluate_on_vertex(gcs_store, inference, instance)
        assert result.success
        calls = {(r["method"], r["path"]) for r in predict_server.requests}
        assert calls == {("GET", f"/v1/{endpoint}"), ("POST", f"/v1/{endpoint}:predict")}
        instances = [i for body in predict_server.predict_bodies for i in body["instances"]]

    report = newest_report(gcs_store, PAIR)
    assert report["adapter_proof"]["endpoint"] == endpoint and report["inference"]["backend"] == "vertex-endpoint"
    assert report["headline"]["route_plan_exact"] == 1.0
    # what the endpoint received for each row is, byte for byte, the tuning row's `prompt` of that record
    records = {r["id"]: r for r in valid_router_records()}
    fam = default_plan().base_models["llama31-8b"].family
    assert len(instances) == len(rows)
    for row, sent in zip(rows, instances, strict=True):
        tuned = tuning_row(agent, records[row["id"]], fam)
        assert sent["prompt"].encode("utf-8") == tuned["prompt"].encode("utf-8")
        assert sent["prompt"] != tuned["text_prompt"]  # not the chat template the local trainer uses
    train = {r["id"]: r["prompt"] for r in gcs_store.read_jsonl(layout.tuning_records(PAIR, "train"))}
    assert all(train[r["id"]] == i["prompt"] for r, i in zip(rows, instances, strict=True) if r["id"] in train)


def test_no_reported_endpoint_and_none_configured_says_what_to_set(gcs_store, vertex_server, instance,
                                                                   exported_adapter, no_metadata_server):
    from resources.vertex_endpoint import VertexEndpoint
    from tests.fakes.evaluation_store import router_benchmark, write_benchmark

    req, name, _ = collect_adapter(gcs_store, vertex_server, instance, exported_adapter, deploy=False)
    summary = gcs_store.read_json(layout.adapter_summary(PAIR, req.version))
    assert summary["endpoint"] is None and summary["tuned_model"]
    write_benchmark(gcs_store, router_benchmark())
    result = evaluate_on_vertex(gcs_store, VertexEndpoint(credentials="anonymous"), instance, raise_on_error=False)
    assert not result.success
    text = step_failure_text(result)
    assert f"training_summary.json records none ({name} reported no tunedModel.endpoint)" in text
    assert f"Deploy {summary['tuned_model']} to an endpoint" in text
    assert f"set VertexEndpoint.endpoints={{'{PAIR}': '<endpoint id" in text

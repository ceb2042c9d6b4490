"""VertexEndpoint (the `inference` resource's Vertex AI backend) against the real aiplatform SDK, talking REST
to a loopback `endpoints` server: evaluation_report scored from endpoint predictions, the exact prompt and
decoding sent, cutting at the end of turn, the deployed-model proof, local fallback and configuration errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from coursegpt_assets.agents import get_agent
from coursegpt_assets.core import layout
from coursegpt_assets.core.chat_templates import render_template
from resources.inference import GenerationRequest, InferenceError
from resources.vertex_endpoint import VertexEndpoint
from tests.fakes.evaluation_store import BENCHMARK_ROWS, router_benchmark
from tests.fakes.vertex_predict_server import FakeVertexPredictServer
from tests.test_evaluation import evaluate, newest_report

PAIR = "router__tiny-llama"  # no Vertex model: generated locally unless an endpoint is configured
VERTEX_PAIR = "router__llama31-8b"  # tuned on Vertex AI
ENDPOINT_ID = "4455667788"
END_OF_TURN = "<|end|>"


@pytest.fixture(autouse=True)
def no_metadata_server(monkeypatch):
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # never probe a GCE metadata server
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)


def gold_predictor(rows: list[dict], prompts: list[str]):
    """The benchmark row's gold completion (found by its user query inside the prompt), then the end-of-turn
    token and text a server that ignores stop sequences would keep generating."""
    by_query = {r["user_query"].strip(): r["completion"] for r in rows}

    def predict(prompt: str) -> str:
        prompts.append(prompt)
        gold = next(c for q, c in by_query.items() if q in prompt)
        return f"{gold}{END_OF_TURN}<|user|>and another question"

    return predict


def vertex(server: FakeVertexPredictServer, **overrides) -> VertexEndpoint:
    fields = dict(endpoints={PAIR: ENDPOINT_ID}, project="p", location="us-central1", api_endpoint=server.endpoint,
                  credentials="anonymous", instances_per_request=4)
    return VertexEndpoint(**{**fields, **overrides})


def request_for(pair: str, adapter_dir: Path, **overrides) -> GenerationRequest:
    from coursegpt_assets.core.plan import default_plan

    base = default_plan().base_models[pair.split("__")[1]]
    fields = dict(pair=pair, base_model=pair.split("__")[1], base_model_id=base.hf_id, vertex_model_id=base.vertex_id,
                  adapter_dir=adapter_dir, adapter_version="v1", conversations=[], max_new_tokens=64,
                  end_of_turn=END_OF_TURN)
    return GenerationRequest(**{**fields, **overrides})


# -- evaluation_report through a Vertex endpoint -----------------------------------------------------------------
def test_report_from_a_vertex_endpoint_scores_gold_answers_and_records_the_deployed_model(evaluated_store):
    store, adapter_version = evaluated_store
    rows = router_benchmark()
    prompts: list[str] = []
    with FakeVertexPredictServer(gold_predictor(rows, prompts)) as server:
        name = server.add_endpoint(ENDPOINT_ID, deployed_model_id="1122", model_id="3344", model_version_id="2")
        result = evaluate(store, vertex(server), config={"max_examples": BENCHMARK_ROWS})  # every row
        assert result.success
        report = newest_report(store)
        # SDK traffic: one GetEndpoint (the lazy Endpoint resource), then Predict in chunks of 4 instances
        calls = [(r["method"], r["path"]) for r in server.requests]
        assert calls == [("GET", f"/v1/{name}")] + [("POST", f"/v1/{name}:predict")] * 2
        bodies = server.predict_bodies

    assert report["inference"]["backend"] == "vertex-endpoint" and report["inference"]["samples"] == BENCHMARK_ROWS
    proof = report["adapter_proof"]
    assert proof["kind"] == "vertex_endpoint" and proof["endpoint"] == name
    assert proof["deployed_models"] == [{"deployed_model_id": "1122", "model": "projects/p/locations/us-central1/"
                                         "models/3344", "model_version_id": "2"}]
    assert len(proof["adapter_sha256"]) == 64 and proof["adapter_sha256"] == report["adapter_sha256"]
    assert report["headline"]["json_valid"] == 1.0 and report["headline"]["route_plan_exact"] == 1.0

    # completions are cut at the end-of-turn token the server ran past
    predictions = store.read_jsonl(f"{layout.report_dir(PAIR, report['report_version'])}/predictions.jsonl")
    assert [p["id"] for p in predictions] == [r["id"] for r in rows]
    assert {p["finish_reason"] for p in predictions} == {"stop"}
    assert all(END_OF_TURN not in p["completion"] and "another question" not in p["completion"]
               for p in predictions)

    # what was sent: the conversation rendered with the adapter's stored template, greedy, max_new_tokens
    instances = [i for body in bodies for i in body["instances"]]
    assert [len(body["instances"]) for body in bodies] == [4, 2] and set(bodies[0]) == {"instances"}
    template = store.read_text(f"{layout.adapter_dir(PAIR, adapter_version)}/chat_template.jinja")
    agent = get_agent("router")
    expected = [render_template(template, agent.benchmark_messages(r), bos_token="", add_generation_prompt=True)
                for r in rows]
    assert [i["prompt"] for i in instances] == expected == prompts
    max_new = report["inference"]["max_new_tokens"]
    for instance in instances:  # numbers travel as protobuf Values: 64 arrives as 64.0
        assert instance["max_tokens"] == max_new and instance["temperature"] == 0
        assert instance["top_p"] == 1 and instance["raw_response"] is True


def test_unknown_endpoint_fails_saying_not_found(evaluated_store):
    store, _ = evaluated_store
    with FakeVertexPredictServer(lambda prompt: "unused") as server:
        server.add_endpoint("1")  # another endpoint exists; ours does not
        with pytest.raises(InferenceError, match=r"Vertex endpoint projects/p/locations/us-central1/endpoints/"
                                                 rf"{ENDPOINT_ID} not found"):
            evaluate(store, vertex(server))
        assert server.predict_bodies == []  # the GetEndpoint 404 stops it before any predict
        assert not store.exists(layout.report_latest(PAIR))


# -- routing and configuration (no generation, no model download) ------------------------------------------
def test_pair_without_endpoint_or_vertex_model_is_generated_locally(tmp_path):
    settings = VertexEndpoint(project="p").settings(request_for(PAIR, tmp_path))
    assert settings["backend"] == "transformers+peft" and settings["base_model_id"] == "local/tiny-llama"


def test_endpoint_named_by_id_or_full_resource_name(tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    by_id = VertexEndpoint(endpoints={PAIR: "77"}, location="europe-west4").settings(request_for(PAIR, tmp_path))
    assert by_id["backend"] == "vertex-endpoint"
    assert by_id["endpoint"] == "projects/env-project/locations/europe-west4/endpoints/77"
    full = "projects/other/locations/us-east1/endpoints/88"
    from_summary = VertexEndpoint().settings(request_for(VERTEX_PAIR, tmp_path, summary={"endpoint": full}))
    assert from_summary["endpoint"] == full  # the tuning summary's endpoint serves a Vertex-tuned pair


def test_vertex_tuned_pair_without_endpoint_names_the_setting(tmp_path):
    request = request_for(VERTEX_PAIR, tmp_path)
    assert request.vertex_model_id
    resource = VertexEndpoint(project="p", endpoints={PAIR: ENDPOINT_ID})  # configured for another pair only
    for call in (resource.settings, resource._check_configured):
        with pytest.raises(InferenceError, match=r"VertexEndpoint\.endpoints=\{'router__llama31-8b'"):
            call(request)


def test_missing_project_names_google_cloud_project(tmp_path):
    with pytest.raises(InferenceError, match="GOOGLE_CLOUD_PROJECT"):
        VertexEndpoint()._project()
    with pytest.raises(InferenceError, match="set VertexEndpoint.project or GOOGLE_CLOUD_PROJECT"):
        VertexEndpoint(endpoints={PAIR: ENDPOINT_ID}).settings(request_for(PAIR, tmp_path))


def test_a_vertex_tuned_adapter_is_asked_in_its_recorded_prompt_format(tmp_path):
    from coursegpt_assets.agents.base import tuning_row
    from tests.fakes.tuning_store import valid_router_records

    agent = get_agent("router")
    records = valid_router_records()[:3]
    conversations = [agent.benchmark_messages(r) for r in records]
    full = "projects/p/locations/europe-west4/endpoints/5"
    tuned = {"backend": "vertex", "endpoint": full, "vertex_prompt_format": agent.vertex_prompt_format}
    request = request_for(VERTEX_PAIR, tmp_path, conversations=conversations, summary=tuned)
    assert request.trained_prompts() == [tuning_row(agent, r, "llama3")["prompt"] for r in records]
    settings = VertexEndpoint().settings(request)
    assert settings["prompt_format"] == agent.vertex_prompt_format and "template" not in settings

    # an adapter collected before formats were recorded: the error names the field and the no-cost fix
    old = request_for(VERTEX_PAIR, tmp_path, conversations=conversations, summary={"backend": "vertex",
                                                                                     "endpoint": full})
    with pytest.raises(InferenceError, match=r"records no vertex_prompt_format .*re-materialise adapter .*nothing "
                                             r"is tuned or paid again"):
        VertexEndpoint().settings(old)

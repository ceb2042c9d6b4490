"""Resilient remote inference: retries with bounded, jittered backoff that honour Retry-After (pure schedule,
classification, the loop with an injected sleep), finished predictions kept in the store, and evaluation_report
against real loopback servers that fail a share of requests (503, 429 + Retry-After, timeouts) or crash mid-run
(a server process SIGKILLed after N answers): the report completes, or a second run generates only the rest."""

from __future__ import annotations

import shutil
import socket
import ssl
import urllib.error
from email.utils import formatdate

import dagster as dg
import pytest

from coursegpt_assets.core import layout
from coursegpt_assets.core.progress import parse_progress
from resources.http_retry import (
    HTTPStatusError,
    RetriesExhausted,
    RetryPolicy,
    Transient,
    call_with_retries,
    request_json,
    retry_after_seconds,
    retry_delay,
    transient_http_error,
)
from resources.local_store import LocalStore
from resources.openai_compatible import OpenAICompatibleServer
from resources.prediction_log import PredictionLog, answer_all
from resources.vertex_endpoint import VertexEndpoint
from tests.conftest import step_failure_text
from tests.fakes.evaluation_store import (
    BENCHMARK_ROWS,
    HELD_OUT_ROWS,
    PAIR,
    router_benchmark,
    valid_router_records,
    write_benchmark,
    write_held_out,
)
from tests.fakes.faulty_server import (
    Faults,
    FaultyOpenAIServer,
    FaultyVertexPredictServer,
    answer_by_query,
    spawn,
)
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.tiny_adapter import write_tiny_adapter
from tests.fakes.vertex_predict_server import FakeVertexPredictServer
from tests.test_evaluation import evaluate, newest_report

EVERY_ROW = {"max_examples": BENCHMARK_ROWS}  # the smoke tier answers a subset per source otherwise
ENDPOINT_ID = "4455667788"


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory, models_home):
    """The router benchmark and a tiny trained adapter, built once for the module (training is the slow part)."""
    root = tmp_path_factory.mktemp("trained") / "store"
    store = LocalStore(root=str(root))
    write_benchmark(store, router_benchmark())
    write_held_out(store, valid_router_records()[BENCHMARK_ROWS:BENCHMARK_ROWS + HELD_OUT_ROWS])
    write_tiny_adapter(store, PAIR, models_home=models_home, steps=3)
    return root


@pytest.fixture
def evaluated_store(trained_root, tmp_path):
    """A fresh copy of the trained store per test (tests/fakes/evaluation_store.py trains one per test)."""
    shutil.copytree(trained_root, tmp_path / "store")
    store = LocalStore(root=str(tmp_path / "store"))
    return store, store.read_json(layout.adapter_latest(PAIR))["version"]


def gold() -> dict[str, str]:
    return {r["user_query"].strip(): r["completion"] for r in router_benchmark()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_logs(instance, result) -> list[str]:
    return [e.user_message for e in instance.all_logs(result.run_id)]


# -- the backoff schedule and Retry-After ------------------------------------------------------------------
def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling():
    policy = RetryPolicy(max_attempts=8, base_delay_s=0.5, max_delay_s=3.0)
    top = [retry_delay(n, policy, None, rand=lambda: 1.0) for n in range(1, 7)]
    assert top == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]  # the ceiling doubles, then stays at max_delay_s
    assert [retry_delay(n, policy, None, rand=lambda: 0.0) for n in range(1, 7)] == [0.0] * 6
    assert retry_delay(3, policy, None, rand=lambda: 0.25) == pytest.approx(0.5)  # uniform under the ceiling


def test_retry_after_is_a_floor_for_the_wait():
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=30.0)
    assert retry_delay(1, policy, 7.0, rand=lambda: 0.5) == 7.0
    assert retry_delay(6, policy, 1.0, rand=lambda: 1.0) == 16.0  # a longer backoff wins over a short Retry-After


def test_retry_after_in_seconds_or_as_an_http_date():
    now = 1_800_000_000.0
    assert retry_after_seconds("3", now) == 3.0 and retry_after_seconds(" 0 ", now) == 0.0
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now) == pytest.approx(30.0)
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now) == 0.0  # a date already past: now
    assert retry_after_seconds(None, now) is None and retry_after_seconds("soon", now) is None


def test_only_408_429_5xx_timeouts_and_dropped_connections_are_transient():
    def status(code, retry_after=None):
        return transient_http_error(HTTPStatusError("u", code, "R", "", retry_after), now=lambda: 0.0)

    assert all(status(c) is not None for c in (408, 429, 500, 502, 503, 504))
    assert all(status(c) is None for c in (400, 401, 403, 404, 409, 422))
    assert status(429, "12").retry_after_s == 12.0
    assert transient_http_error(TimeoutError("timed out")).reason == "timeout"
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    assert transient_http_error(refused).reason == "server not reachable"
    assert transient_http_error(urllib.error.URLError(ssl.SSLCertVerificationError("bad cert"))) is None
    assert transient_http_error(ValueError("not JSON")) is None


# -- the retry loop (sleep and random source injected) ---------------------------------------------------------
class Script:
    """attempt_fn failing with the given exceptions in turn, then returning "ok"."""

    def __init__(self, *errors):
        self.errors, self.calls = list(errors), 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def classify(error):
    return Transient(str(error), retry_after_s=getattr(error, "retry_after", None)) if isinstance(
        error, ConnectionError) else None


def test_transient_failures_are_retried_with_the_scheduled_waits():
    sleeps, seen = [], []
    attempt = Script(ConnectionError("a"), ConnectionError("b"))
    got = call_with_retries(attempt, target="http://x/v1/completions", policy=RetryPolicy(base_delay_s=1.0),
                            transient=classify, sleep=sleeps.append, rand=lambda: 0.5,
                            on_retry=lambda target, n, delay, why: seen.append((n, delay, why.reason)))
    assert got == "ok" and attempt.calls == 3
    assert sleeps == [0.5, 1.0] and seen == [(1, 0.5, "a"), (2, 1.0, "b")]


def test_a_permanent_error_is_not_retried():
    sleeps = []
    attempt = Script(KeyError("400-like"))
    with pytest.raises(KeyError):
        call_with_retries(attempt, target="t", policy=RetryPolicy(), transient=classify, sleep=sleeps.append)
    assert attempt.calls == 1 and sleeps == []


def test_exhausted_retries_name_the_target_the_reason_and_the_attempts():
    sleeps = []
    attempt = Script(*[ConnectionError("HTTP 503 Service Unavailable")] * 9)
    with pytest.raises(RetriesExhausted, match=r"^http://x/v1/completions: HTTP 503 Service Unavailable "
                                               r"\(gave up after 4 attempts\)$") as caught:
        call_with_retries(attempt, target="http://x/v1/completions", policy=RetryPolicy(max_attempts=4),
                          transient=classify, sleep=sleeps.append)
    assert attempt.calls == 4 and len(sleeps) == 3 and caught.value.attempts == 4
    assert all(s <= RetryPolicy().max_delay_s for s in sleeps)


def test_a_retry_after_beyond_the_max_delay_gives_up_at_once():
    error = ConnectionError("HTTP 429 Too Many Requests")
    error.retry_after = 3600.0
    sleeps = []
    with pytest.raises(RetriesExhausted, match=r"asked to retry after 3600 s, more than max_retry_delay_s=60"):
        call_with_retries(Script(error), target="t", policy=RetryPolicy(max_delay_s=60), transient=classify,
                          sleep=sleeps.append)
    assert sleeps == []


def test_request_json_honours_retry_after_from_a_real_server():
    """Over real HTTP: 503, then 429 with Retry-After: 7, then an answer; the waits are recorded, not slept."""
    sleeps = []
    faults = Faults(["503", "429:7"])
    with FaultyOpenAIServer([PAIR], lambda model, prompt: "fine", faults=faults) as server:
        body = request_json(f"{server.base_url}/completions", {"model": PAIR, "prompt": "p"}, headers={},
                            timeout_s=5, policy=RetryPolicy(max_delay_s=10), sleep=sleeps.append)
        assert body["choices"][0]["text"] == "fine"
        assert faults.arrived == 3 and len(sleeps) == 2 and sleeps[1] >= 7.0 and sleeps[0] <= 0.5

        with pytest.raises(HTTPStatusError, match="HTTP 404"):  # an unknown model: not retried
            request_json(f"{server.base_url}/completions", {"model": "other", "prompt": "p"}, headers={},
                         timeout_s=5, policy=RetryPolicy(), sleep=sleeps.append)
        assert faults.arrived == 4 and len(sleeps) == 2


# -- the prediction log -------------------------------------------------------------------------------------
def test_kept_predictions_survive_a_failed_run_and_only_the_rest_is_asked(store):
    key = layout.prediction_log(PAIR, "v1")
    requests = [{"prompt": f"q{i}"} for i in range(5)]
    asked = []

    def send(batch):
        asked.extend(r["prompt"] for r in batch)
        if "q3" in [r["prompt"] for r in batch]:
            raise ConnectionError("server gone")
        return [[f"answer {r['prompt']}"] for r in batch]

    with pytest.raises(ConnectionError), PredictionLog(store, key, total=5, flush_every_s=3600) as first:
        answer_all(requests, send, log=first, batch_size=2)
    assert asked == ["q0", "q1", "q2", "q3"]  # the batch [q2, q3] failed; [q4] never started
    assert [r["value"] for r in store.read_jsonl(key)] == [["answer q0"], ["answer q1"]]  # flushed on failure

    def healthy(batch):
        asked.extend(r["prompt"] for r in batch)
        return [[f"new {r['prompt']}"] for r in batch]

    asked.clear()
    with PredictionLog(store, key, total=5) as second:
        got = answer_all(requests, healthy, log=second, batch_size=2)
    assert asked == ["q2", "q3", "q4"] and second.resumed == 2 and second.generated == 3
    assert got == [["answer q0"], ["answer q1"], ["new q2"], ["new q3"], ["new q4"]]

    changed = PredictionLog(store, key, total=5)
    assert changed.get({"prompt": "q0", "max_tokens": 9}) is None  # another request is never answered from it


def test_a_damaged_prediction_log_names_its_line_and_the_fix(store):
    key = layout.prediction_log(PAIR, "v1")
    store.write_jsonl(key, [{"key": "a", "t": 1.0, "value": ["x"]}, {"key": "b", "value": "not a list"}])
    with pytest.raises(ValueError, match=r"finished_predictions\.jsonl line 2: not a finished-prediction entry .*"
                                         r"delete the file"):
        PredictionLog(store, key, total=2)
    store.write_text(key, '{"key": "a", "t": 1.0, "value": ["x"]}\n\n{"key": "b", "t": 2')  # cut short
    with pytest.raises(ValueError, match=r"line 3: not a finished-prediction entry \(invalid JSON"):
        PredictionLog(store, key, total=2)


# -- evaluation_report through failing servers -------------------------------------------------------------
def test_report_completes_through_503s_429s_and_timeouts_and_logs_the_retries(evaluated_store):
    store, _ = evaluated_store
    faults = Faults(["503", "429:1", "hang:4", "503", "429-date:1"])
    with FaultyOpenAIServer([PAIR], lambda model, prompt: answer_by_query(gold())(prompt), faults=faults) as server, \
            dg.instance_for_test() as instance:
        inference = OpenAICompatibleServer(base_url=server.base_url, timeout_s=1.5, max_retry_delay_s=3)
        result = evaluate(store, inference, instance, config=EVERY_ROW)
        logs = run_logs(instance, result)
    assert result.success
    report = newest_report(store)
    assert report["inference"]["samples"] == BENCHMARK_ROWS and report["headline"]["json_valid"] == 1.0
    predictions = store.read_jsonl(f"{layout.report_dir(PAIR, report['report_version'])}/predictions.jsonl")
    assert [p["id"] for p in predictions] == [r["id"] for r in router_benchmark()]
    assert faults.sent == {"503": 2, "429": 1, "429-date": 1}
    # every answerable request beyond one per row was a retry (the held-out perplexity's echo requests aside)
    retries = faults.arrived - BENCHMARK_ROWS - len([r for r in server.requests if r["body"].get("echo")])
    assert retries >= 5
    summary = next(line for line in logs if parse_progress(line) and parse_progress(line).unit == "predictions")
    assert parse_progress(summary).done == parse_progress(summary).total == BENCHMARK_ROWS
    assert parse_progress(summary).fields["retries"] == retries
    assert "HTTP 503 Service Unavailable: 2" in summary and "HTTP 429 Too Many Requests: 2" in summary
    assert "timeout: " in summary
    assert sum("retrying in" in line for line in logs) == retries
    assert not store.exists(layout.prediction_log(PAIR, report["report_version"]))  # the report holds them now


def generated(server) -> list[dict]:
    """The adapter's generation requests the server saw (not the held-out perplexity's echo requests)."""
    return [r for r in server.requests if r["body"].get("model") == PAIR and not r["body"].get("echo")]


def test_a_server_killed_mid_run_fails_the_report_and_the_next_run_asks_only_the_rest(evaluated_store, tmp_path):
    store, _ = evaluated_store
    port = free_port()
    spec = {"kind": "openai", "port": port, "models": [PAIR], "answers": gold(), "die_after": 2}

    def inference():
        return OpenAICompatibleServer(base_url=f"http://127.0.0.1:{port}/v1", max_attempts=3, max_retry_delay_s=0.2)

    with spawn(spec, tmp_path) as (proc, _), dg.instance_for_test() as instance:
        failed = evaluate(store, inference(), instance, config=EVERY_ROW, raise_on_error=False)
        logs = run_logs(instance, failed)
        assert proc.wait(timeout=30) == -9  # the server process was SIGKILLed mid-run
    assert not failed.success
    text = step_failure_text(failed)
    assert f"127.0.0.1:{port}/v1/completions: server not reachable" in text and "after 3 attempts" in text
    assert not store.exists(layout.report_latest(PAIR))
    [key] = [k for k in store.list_keys("reports") if k.endswith("finished_predictions.jsonl")]
    kept_rows = store.read_jsonl(key)
    kept = len(kept_rows)
    assert 2 <= kept < BENCHMARK_ROWS
    assert any(f"{kept} finished predictions are kept in" in line and "resumes" in line for line in logs)

    server = FakeOpenAIServer([PAIR], lambda model, prompt: answer_by_query(gold())(prompt))
    server.port = port  # the same URL: the same report version
    with server:
        changed = evaluate(store, inference(), config={"max_new_tokens": 7, **EVERY_ROW})  # another setting: nothing reused
        assert changed.success and len(generated(server)) == BENCHMARK_ROWS
        server.requests.clear()
        with dg.instance_for_test() as instance:
            resumed = evaluate(store, inference(), instance, config=EVERY_ROW)
            logs = run_logs(instance, resumed)
        assert resumed.success and len(generated(server)) == BENCHMARK_ROWS - kept
        report = newest_report(store)
        assert report["inference"]["samples"] == BENCHMARK_ROWS and report["headline"]["route_plan_exact"] == 1.0
        assert any(f"{kept} finished predictions kept from an earlier run" in line for line in logs)
        assert not store.exists(key)  # the report holds them now

        store.write_jsonl(key, kept_rows)  # as if another run had failed again; `force` asks for every row
        server.requests.clear()
        assert evaluate(store, inference(), config={"force": True, **EVERY_ROW}).success
        assert len(generated(server)) == BENCHMARK_ROWS


# -- the same through a Vertex AI endpoint (the real SDK over REST) --------------------------------------------
@pytest.fixture
def no_metadata_server(monkeypatch):
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")


def vertex(api_endpoint: str, **overrides) -> VertexEndpoint:
    fields = dict(endpoints={PAIR: ENDPOINT_ID}, project="p", location="us-central1", api_endpoint=api_endpoint,
                  credentials="anonymous", instances_per_request=2)
    return VertexEndpoint(**{**fields, **overrides})


def test_vertex_prediction_retries_503_429_and_timeouts(evaluated_store, no_metadata_server):
    store, _ = evaluated_store
    faults = Faults(["503", "429:1", "hang:4"])
    with FaultyVertexPredictServer(answer_by_query(gold()), faults=faults) as server, \
            dg.instance_for_test() as instance:
        server.add_endpoint(ENDPOINT_ID)
        result = evaluate(store, vertex(server.endpoint, timeout_s=1.5, max_retry_delay_s=3), instance, config=EVERY_ROW)
        logs = run_logs(instance, result)
    assert result.success
    report = newest_report(store)
    assert report["inference"]["backend"] == "vertex-endpoint" and report["headline"]["json_valid"] == 1.0
    assert report["inference"]["samples"] == BENCHMARK_ROWS
    assert faults.sent == {"503": 1, "429": 1}
    retries = faults.arrived - BENCHMARK_ROWS // 2  # three predict calls of two instances, plus the retries
    summary = next(line for line in logs if parse_progress(line) and parse_progress(line).unit == "predictions")
    assert retries >= 3 and parse_progress(summary).fields["retries"] == retries
    assert "HTTP 503 ServiceUnavailable: 1" in summary and "HTTP 429 TooManyRequests: 1" in summary
    assert "timeout: " in summary


def test_vertex_endpoint_killed_mid_run_resumes_with_the_missing_instances(evaluated_store, no_metadata_server,
                                                                           tmp_path):
    store, _ = evaluated_store
    spec = {"kind": "vertex", "endpoint_id": ENDPOINT_ID, "answers": gold(), "die_after": 1}
    with spawn(spec, tmp_path) as (proc, port):
        failed = evaluate(store, vertex(f"http://127.0.0.1:{port}", max_attempts=2, max_retry_delay_s=0.2),
                          config=EVERY_ROW, raise_on_error=False)
        assert proc.wait(timeout=30) == -9
    assert not failed.success
    text = step_failure_text(failed)
    assert f"prediction on projects/p/locations/us-central1/endpoints/{ENDPOINT_ID} failed" in text
    assert "server not reachable" in text and "after 2 attempts" in text
    [key] = [k for k in store.list_keys("reports") if k.endswith("finished_predictions.jsonl")]
    assert len(store.read_jsonl(key)) == 2  # one predict call of two instances finished before the crash

    with FakeVertexPredictServer(answer_by_query(gold())) as server:  # another host: the endpoint is the same
        server.add_endpoint(ENDPOINT_ID)
        resumed = evaluate(store, vertex(server.endpoint), config=EVERY_ROW)
        instances = [i for body in server.predict_bodies for i in body["instances"]]
    assert resumed.success and len(instances) == BENCHMARK_ROWS - 2
    report = newest_report(store)
    assert report["inference"]["samples"] == BENCHMARK_ROWS and report["headline"]["route_plan_exact"] == 1.0
    assert report["adapter_proof"]["deployed_models"][0]["deployed_model_id"] == "1234567890"

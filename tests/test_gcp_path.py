"""The cloud path as a user runs it: environment variables, `coursegpt run`, then a real `dagster-daemon`.

Nothing in the project is patched or configured in code. The processes get what a user exports
(COURSEGPT_ENV=gcp, a gs:// store and sources, the Vertex API endpoint, credentials, project, plan,
HF_TOKEN) and talk to stand-ins over the network: the GCS emulator, one loopback host serving Vertex AI's
`tuningJobs` and `endpoints` REST APIs, and a loopback Hugging Face Hub that hears nothing until the user
publishes.

One test follows the README's "The cloud path, step by step" command by command: the data stage and
`coursegpt run --dry-run` submit nothing; `coursegpt run` submits one Vertex job; the same command again,
under a plan with changed local-only settings, finds it (a second pair in that run submits its own). The
fake jobs succeed with real PEFT exports under their outputUri and the tuned models deployed. A real
`dagster-daemon run`, on the instance `coursegpt home` names, materialises `adapter` (vertex_job_sensor),
evaluates it on the endpoint the job reported and writes the report and the card to the bucket
(new_adapter_sensor). The second pair's export has half the plan's LoRA rank: its blocking check fails,
and it gets no report and no card. Nothing is published until `coursegpt run --publish`. A cheaper test
shows an unset source refused when `coursegpt run` loads the definitions.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from huggingface_hub import ModelCard

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.base import tuning_row
from coursegpt_assets.core import layout
from coursegpt_assets.core.names import ADAPTER_VERSION_TAG, TRIGGER_TAG
from coursegpt_assets.core.plan import default_plan
from schedules.config import DEFAULT_PATH as AUTOMATION_YAML
from tests.conftest import NAMED_SOURCES, PROJECT_ROOT
from tests.fakes.hub_server import FakeHub
from tests.fakes.router_traces import router_traces
from tests.fakes.tuning_store import plan_copy
from tests.fakes.vertex_service import FakeVertexService

GOOD, BAD = "router__llama31-8b", "router__gemma3-27b"  # two router pairs tuned on Vertex AI
PROJECT = "coursegpt-cloud"
TRACES = 640  # 85 % train: over cost.min_train_rows (500), as a paid job needs
EXPORT_FOLDER = "postprocess/node-0/checkpoints/final"  # where a Vertex PEFT export puts the adapter
LOCAL_ONLY = {"batch_size": 8, "learning_rate": 1.0e-4, "gradient_accumulation_steps": 2, "logging_steps": 5}
DAEMON_DEADLINE_S = 480  # about 100 s on 2 busy cores; the rest is slack for a busier machine
HF_TOKEN = "hf_cloud_path_test_token"


def gcp_env(**values: str) -> dict[str, str]:
    """This process's environment without any project or cloud setting, plus `values`."""
    own = ("COURSEGPT_", "GOOGLE_", "HF_", "STORAGE_EMULATOR_HOST", "DAGSTER_HOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    env.update(PYTHONPATH=str(PROJECT_ROOT), NO_GCE_CHECK="True", GCE_METADATA_HOST="127.0.0.1:9",
               GCE_METADATA_IP="127.0.0.1:9", DAGSTER_DISABLE_TELEMETRY="1", **values)
    return env


def coursegpt(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coursegpt_assets.cli.main", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def assert_ran(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def printed_row(out: str, first_cell: str) -> dict[str, str]:
    """One row of a table coursegpt printed (header, dashes, rows), as {column header: cell}."""
    lines = out.splitlines()
    dashes = next(i for i, line in enumerate(lines) if line.startswith("---"))
    starts = [m.start() for m in re.finditer(r"-+", lines[dashes])]
    spans = list(zip(starts, [*starts[1:], None], strict=True))
    [row] = [line for line in lines[dashes + 1:] if line.startswith(first_cell + " ")]
    return {lines[dashes - 1][a:b].strip(): row[a:b].strip() for a, b in spans}


def creates_by_model(vertex: FakeVertexService) -> dict[str, int]:
    counts: dict[str, int] = {}
    for body in vertex.tuning.created_bodies:
        counts[body["baseModel"]] = counts.get(body["baseModel"], 0) + 1
    return counts


def export_files(tmp_path: Path, *, rank: int | None = None) -> dict[str, bytes]:
    """A real PEFT LoRA on the local tiny Llama as Vertex exports one (config + weights); `rank` other than
    the plan's makes an export the blocking adapter_matches_plan check must refuse."""
    from coursegpt_assets.training.tiny_llama import build_tiny_llama
    from tests.fakes.tiny_adapter import train_tiny_lora

    base = build_tiny_llama(tmp_path / "models")  # cached: the second export reuses it
    out = tmp_path / f"export-r{rank or 'plan'}"
    train_tiny_lora(str(base), out, agent="router", steps=1, rank=rank)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "gs://vertex-model-garden/tuned-base"  # adapter replaces it with the plan's
    (out / "adapter_config.json").write_text(json.dumps(config))
    return {f"{EXPORT_FOLDER}/{n}": (out / n).read_bytes() for n in ("adapter_config.json", "adapter_model.safetensors")}


def gold_answer(records: list[dict]):
    """The endpoint's model: for a prompt, the tuned completion of the trace whose query it asks."""
    agent, fam = get_agent("router"), default_plan().base_models["llama31-8b"].family
    answers = {r["user_query"]: tuning_row(agent, r, fam)["completion"] for r in records}

    def predict(prompt: str) -> str:
        found = [answer for query, answer in answers.items() if query in prompt]
        return (found[0] if len(found) == 1 else "no single trace matches this prompt") + "<|eot_id|>"

    return predict


class Daemon:
    """`dagster-daemon run -w workspace.yaml` from the project root, in its own process group."""

    def __init__(self, env: dict, log_path: Path):
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                                     cwd=PROJECT_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def log_tail(self, chars: int | None = 6000) -> str:
        text = self.log_path.read_text(errors="replace")
        return text[-chars:] if chars else text

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def adapter_record(instance: dg.DagsterInstance, pair: str):
    records = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("adapter"), asset_partitions=[pair]), limit=1).records
    return records[0] if records else None


def both_pairs_handled(instance: dg.DagsterInstance, store, daemon_log: str) -> bool:
    """GOOD's card is in the store, new_adapter_sensor has said it will not evaluate BAD (its daemon log
    line), and no run is queued or in progress."""
    refused = [line for line in daemon_log.splitlines() if f"not evaluated: {BAD}: adapter " in line]
    if not store.exists(layout.card(GOOD)) or not any("adapter_matches_plan failed" in line for line in refused):
        return False
    return all(run.is_finished for run in instance.get_runs())


def wait_for_daemon(daemon: Daemon, home: Path, store) -> None:
    deadline = time.monotonic() + DAEMON_DEADLINE_S
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            if daemon.proc.poll() is not None:
                pytest.fail(f"dagster-daemon exited with {daemon.proc.returncode}:\n{daemon.log_tail()}")
            if both_pairs_handled(instance, store, daemon.log_tail(None)):
                return
            time.sleep(2)
        runs = [(r.job_name, r.tags.get("dagster/partition"), r.status.value) for r in instance.get_runs()]
    pytest.fail(f"after {DAEMON_DEADLINE_S} s the daemon had not evaluated {GOOD} and judged {BAD}; runs: {runs}; "
                f"card in store: {store.exists(layout.card(GOOD))}\ndaemon log:\n{daemon.log_tail()}")


@pytest.fixture
def cloud(gcs_emulator, gcs_store, tmp_path):
    """The stand-ins running, a user's router traces in the bucket, and the environment a user exports."""
    traces = router_traces(TRACES)
    gcs_emulator.client().bucket(gcs_emulator.bucket).blob("sources/router.jsonl").upload_from_string(
        "".join(json.dumps(r) + "\n" for r in traces))
    automation = yaml.safe_load(AUTOMATION_YAML.read_text())
    for sensor in ("new_adapter_sensor", "vertex_job_sensor"):
        automation[sensor]["minimum_interval_seconds"] = 5  # the daemon ticks them every 5 s, not every minute
    (tmp_path / "automation.yaml").write_text(yaml.safe_dump(automation))
    home = tmp_path / "coursegpt-home"
    with FakeVertexService(gold_answer(traces)) as vertex, FakeHub(token=HF_TOKEN) as hub:
        env = gcp_env(
            COURSEGPT_ENV="gcp", COURSEGPT_STORE=f"gs://{gcs_emulator.bucket}/forge",
            STORAGE_EMULATOR_HOST=gcs_emulator.host, GOOGLE_CLOUD_PROJECT=PROJECT,
            COURSEGPT_VERTEX_API_ENDPOINT=vertex.endpoint, COURSEGPT_GCP_CREDENTIALS="anonymous",
            COURSEGPT_ROUTER_SOURCE=f"gs://{gcs_emulator.bucket}/sources/router.jsonl",
            COURSEGPT_MATH_SOURCE=NAMED_SOURCES["COURSEGPT_MATH_SOURCE"],
            COURSEGPT_CODE_SOURCE=NAMED_SOURCES["COURSEGPT_CODE_SOURCE"],
            COURSEGPT_AUTOMATION=str(tmp_path / "automation.yaml"),
            COURSEGPT_HOME=str(home), HF_TOKEN=HF_TOKEN, HF_ENDPOINT=hub.endpoint,
        )
        yield {"env": env, "vertex": vertex, "hub": hub, "store": gcs_store}


@pytest.mark.slow
def test_the_cloud_path_under_a_real_daemon(cloud, tmp_path):
    env, vertex, hub, store = cloud["env"], cloud["vertex"], cloud["hub"], cloud["store"]
    llama = default_plan().base_models["llama31-8b"].vertex_id
    gemma = default_plan().base_models["gemma3-27b"].vertex_id

    # 1. read the data (free), then see what the paid job would cost: nothing is submitted
    assert_ran(coursegpt(env, "run", "--agent", "router", "--assets", "raw_examples,clean_examples,dataset_splits"))
    dry = assert_ran(coursegpt(env, "run", "--dry-run", "--agent", "router", "--base-model", "llama31-8b"))
    row = printed_row(dry, GOOD)
    assert row["backend"] == "vertex" and row["estimate"].startswith("$") and row["cost guard"] == "passes", dry
    assert vertex.tuning.create_calls == 0

    # 2. the user's command: one paid job, and the run is a success that says what the sensors do next
    out = assert_ran(coursegpt(env, "run", "--agent", "router", "--base-model", "llama31-8b"))
    assert f"handed to the sensors (not a failure): {GOOD}" in out
    assert creates_by_model(vertex) == {llama: 1}
    spec = vertex.tuning.created_bodies[0]["supervisedTuningSpec"]
    assert spec["trainingDatasetUri"] == store.uri(layout.tuning_records(GOOD, "train"))

    # 3. the same command again, after a change to settings Vertex never receives and with a second pair:
    #    the data stage runs again, the first pair's job is found, and only the second pair submits one
    plan = plan_copy(tmp_path / "edited_plan.yaml", lambda raw: raw["hyperparameters"].update(LOCAL_ONLY))
    env["COURSEGPT_PLAN"] = str(plan)
    out = assert_ran(coursegpt(env, "run", "--agent", "router", "--base-model", "llama31-8b",
                               "--base-model", "gemma3-27b"))
    assert f"handed to the sensors (not a failure): {', '.join(sorted([GOOD, BAD]))}" in out, out
    assert creates_by_model(vertex) == {llama: 1, gemma: 1}
    jobs = {job["baseModel"]: job["name"] for job in vertex.tuning.jobs()}

    # 4. both jobs succeed with an export in their outputUri and the tuned model deployed; gemma's export
    #    has half the plan's LoRA rank
    good_export = export_files(tmp_path)
    endpoint = vertex.succeed(jobs[llama], files=good_export)
    vertex.succeed(jobs[gemma], files=export_files(tmp_path, rank=default_plan().hyperparameters.lora_rank // 2))

    # 5. the daemon, on the instance `coursegpt home` names, does the rest
    dagster_home = assert_ran(coursegpt(env, "home")).strip()
    daemon = Daemon({**env, "DAGSTER_HOME": dagster_home}, tmp_path / "dagster-daemon.log")
    try:
        wait_for_daemon(daemon, Path(dagster_home), store)
    finally:
        daemon.stop()
    with dg.DagsterInstance.from_config(dagster_home) as instance:
        runs = instance.get_runs()
        good_version = adapter_record(instance, GOOD).asset_materialization.metadata["version"].value
        published = instance.fetch_materializations(dg.AssetKey("published_adapter"), limit=1).records
    daemon_runs = {(r.tags.get("dagster/partition"), r.tags[TRIGGER_TAG], r.tags.get(ADAPTER_VERSION_TAG),
                    r.status.value, tuple(sorted(k.to_user_string() for k in r.asset_selection or ())))
                   for r in runs if TRIGGER_TAG in r.tags}
    assert daemon_runs == {
        (GOOD, "vertex_job_sensor", None, "SUCCESS", ("adapter",)),
        (BAD, "vertex_job_sensor", None, "FAILURE", ("adapter",)),
        (GOOD, "new_adapter_sensor", good_version, "SUCCESS", ("evaluation_report", "model_card")),
    }, daemon_runs

    # the report: the version the daemon collected, scored on what the endpoint the job reported answered
    summary = store.read_json(layout.adapter_summary(GOOD, good_version))
    assert summary["endpoint"] == endpoint and summary["resource_name"] == jobs[llama]
    report = store.read_json(layout.report_file(GOOD, store.read_json(layout.report_latest(GOOD))["version"]))
    assert report["adapter_version"] == good_version
    assert report["inference"]["backend"] == "vertex-endpoint" and report["adapter_proof"]["endpoint"] == endpoint
    instances = [i for b in vertex.prediction.predict_bodies for i in b["instances"]]
    assert len(instances) == len(store.read_jsonl(layout.benchmark_records("router")))
    assert {r["path"] for r in vertex.prediction.requests} <= {f"/v1/{endpoint}", f"/v1/{endpoint}:predict"}
    assert report["headline"]["route_plan_exact"] == 1.0  # the endpoint answered every prompt with its gold plan

    # the card, in the bucket: the Vertex job that trained this version, and no Hub dataset it was not read from
    card = store.read_text(layout.card(GOOD))
    assert jobs[llama] in card and good_version in card
    metadata = ModelCard(card).data
    assert metadata.datasets is None and {r.dataset_type for r in metadata.eval_results} == {"router"}

    # the export with the wrong rank: its check failed, so no report and no card; nothing else was submitted
    assert not store.list_keys(f"reports/{BAD}/") and not store.exists(layout.card(BAD))
    assert vertex.tuning.create_calls == 2

    # nothing published, although HF_TOKEN is set
    assert not published and not any(r.job_name == "publish_job" for r in runs)
    assert hub.calls == []

    # 6. publishing is the user's explicit step: the reviewed card and the collected adapter, in one commit
    assert_ran(coursegpt(env, "run", "--publish", "--agent", "router", "--base-model", "llama31-8b",
                         "--assets", "published_adapter"))
    [repo] = hub.repos.values()
    assert len(repo.commits) == 1 and repo.files["README.md"].decode() == card
    assert repo.files["adapter_model.safetensors"] == good_export[f"{EXPORT_FOLDER}/adapter_model.safetensors"]


def test_an_unset_source_stops_coursegpt_run_at_load(gcs_emulator, tmp_path):
    """A user who named the router's data only: the run refuses to load, naming the other variables."""
    env = gcp_env(COURSEGPT_ENV="gcp", COURSEGPT_STORE=f"gs://{gcs_emulator.bucket}/forge",
                  STORAGE_EMULATOR_HOST=gcs_emulator.host, GOOGLE_CLOUD_PROJECT=PROJECT,
                  COURSEGPT_ROUTER_SOURCE=f"gs://{gcs_emulator.bucket}/sources/router.jsonl",
                  COURSEGPT_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(tmp_path / "home" / "dagster"))
    proc = coursegpt(env, "run", "--agent", "router", "--base-model", "llama31-8b")
    err = proc.stderr.strip()
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert err == ("coursegpt: error: COURSEGPT_ENV=gcp needs every agent's source named: set COURSEGPT_MATH_SOURCE, "
                   "COURSEGPT_CODE_SOURCE (a gs://, hf:// or local path; the shipped fixtures are for the local default)")
    assert not gcs_emulator.object_names("forge/")  # nothing ran

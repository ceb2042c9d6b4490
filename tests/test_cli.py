"""`coursegpt plan`, `coursegpt status` and `coursegpt run` as an engineer types them."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import dagster as dg
import pytest

from coursegpt_assets.cli.main import main
from coursegpt_assets.cli.runner import _runnable
from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.core.tokens import estimated_cost_usd as estimated_cost
from resources.local_store import LocalStore
from resources.storage import ArtifactStore
from tests.conftest import NAMED_SOURCES, PROJECT_ROOT

AGENTS = ["router", "math", "code"]
ALL_ASSETS = {"raw_examples", "clean_examples", "dataset_splits", "benchmark", "tuning_dataset", "tuning_job",
              "adapter", "evaluation_report", "model_card", "leaderboard", "published_adapter"}
TINY = [f"{a}__tiny-llama" for a in AGENTS]


@pytest.fixture
def home_store(isolated_home) -> ArtifactStore:
    return LocalStore(root=str(isolated_home / "store"))


def table(out: str) -> dict[str, str]:
    """Rows of a printed table keyed by their first cell."""
    return {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}


def test_plan_lists_every_pair_and_estimates_cost_from_the_train_split(home_store, capsys):
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    plan = default_plan()
    assert f"LoRA r={plan.hyperparameters.lora_rank} alpha={plan.hyperparameters.lora_alpha}" in out
    assert f"epochs={plan.hyperparameters.epochs}" in out and "warm-up=0.1" in out
    rows = table(out.split("\n\n")[0])
    assert set(rows) == set(plan.pair_keys)
    assert "local (free)" in rows["router__tiny-llama"]
    assert "materialise dataset_splits (router) first" in rows["router__llama31-8b"]

    lines = [b'{"id": "%d", "text": "%s"}' % (i, b"x" * 4000) for i in range(500)]
    home_store.write_lines(layout.split_records("router", "train", "v1"), lines)
    home_store.write_json(layout.splits_manifest("router"), {"agent": "router", "version": "v1"})
    assert main(["plan"]) == 0
    rows = table(capsys.readouterr().out)
    tokens = sum(-(-len(line) // 4) for line in lines)  # ceil(bytes / 4) per line
    cost = estimated_cost(tokens, plan.hyperparameters.epochs, plan.cost.price_per_million_tokens_usd)
    assert cost >= 0.01
    assert f" {tokens} " in rows["router__gemma3-27b"]
    assert f"{cost:.2f} (from router train split)" in rows["router__gemma3-27b"]
    assert "materialise dataset_splits (math) first" in rows["math__qwen3-32b"]


def test_status_says_what_is_stale(home_store, capsys):
    assert main(["status"]) == 0
    rows = table(capsys.readouterr().out)
    assert "not materialised" in rows["router__tiny-llama"]

    pair = "router__tiny-llama"
    home_store.write_json(layout.tuning_manifest(pair), {"data_version": "data-new"})
    home_store.write_json(layout.adapter_latest(pair), {"version": "adapter-1"})
    home_store.write_json(f"{layout.adapter_dir(pair, 'adapter-1')}/training_summary.json",
                          {"data_version": "data-old"})
    assert main(["status"]) == 0
    row = table(capsys.readouterr().out)[pair]
    assert "data-new" in row and "adapter-1" in row
    assert "adapter (tuning data changed)" in row and "report missing" in row


def test_status_names_an_adapter_its_check_did_not_pass(home_store, capsys):
    from coursegpt_assets.training.spec import adapter_request

    pair = "router__tiny-llama"
    manifest = {"data_version": "d1"}
    home_store.write_json(layout.tuning_manifest(pair), manifest)
    wanted = adapter_request(default_plan(), pair, manifest, "trl").version
    home_store.write_json(layout.adapter_summary(pair, wanted), {"data_version": "d1"})  # trained, never validated
    assert main(["status"]) == 0
    row = table(capsys.readouterr().out)[pair]
    assert f"adapter {wanted[:12]} not validated" in row
    home_store.write_json(layout.adapter_latest(pair), {"version": wanted})  # the adapter asset passed it
    assert main(["status"]) == 0
    assert "not validated" not in table(capsys.readouterr().out)[pair]


def test_run_rejects_names_not_in_the_plan(capsys):
    assert main(["run", "--agent", "poetry"]) == 2
    assert "not in training_plan.yaml: poetry" in capsys.readouterr().err
    assert main(["run", "--assets", "raw_examples,nonsense"]) == 2
    assert "unknown assets ['nonsense']" in capsys.readouterr().err


def test_a_failed_partition_stops_only_what_depends_on_it():
    assert _runnable("agent", AGENTS, TINY, set()) == AGENTS
    assert _runnable("pair", AGENTS, TINY, {"math"}) == ["router__tiny-llama", "code__tiny-llama"]
    assert _runnable("agent", AGENTS, TINY, {"math", "router__tiny-llama"}) == ["code"]
    assert _runnable("agent", ["router"], [], set()) == ["router"]  # no pairs selected: summaries still run


def cli(home, *args, **env):
    full_env = {**os.environ, "COURSEGPT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), **env}
    return subprocess.run([sys.executable, "-m", "coursegpt_assets.cli.main", *args], cwd=PROJECT_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600)


def test_run_prints_a_line_per_step_and_a_final_table(isolated_home):
    proc = cli(isolated_home, "run", "--agent", "router", "--assets", "raw_examples,clean_examples")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert any("✓ raw_examples" in s and "router" in s for s in steps)
    assert any("✓ clean_examples " in s and "router" in s for s in steps)
    final = proc.stdout.split("\n\n")[-1]
    assert "row_count=" in final and "clean_examples" in final
    assert (isolated_home / "store" / "datasets" / "router").is_dir()
    assert "STEP_WORKER_STARTED" not in proc.stderr  # the instance config written on first use drops them


def test_partitions_run_side_by_side_each_in_its_own_process(isolated_home):
    """Runs sharing one process can deadlock in Dagster's logging set-up once dagster.yaml has settings
    (ours has python_logs); each run must be its own process, as Dagster's run workers are."""
    import dagster as dg

    proc = cli(isolated_home, "run", "--agent", "router", "--agent", "math", "--assets", "raw_examples",
               "--parallel", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(isolated_home / "dagster")) as instance:
        runs = instance.get_runs()
        assert sorted(r.tags["dagster/partition"] for r in runs) == ["math", "router"]
        run_pids = {next(iter(instance.all_logs(r.run_id, of_type=dg.DagsterEventType.RUN_START))).dagster_event.pid
                    for r in runs}
    assert len(run_pids) == 2


def test_home_writes_the_instance_config_once_and_keeps_the_users(isolated_home, capsys, monkeypatch):
    import yaml

    from coursegpt_assets.cli import local_instance

    config = isolated_home / "dagster" / "dagster.yaml"
    config.parent.mkdir(parents=True)
    config.touch()  # what earlier versions left: empty, so it is filled in
    monkeypatch.setattr(local_instance, "cuda_gpu_present", lambda: False)  # a CPU machine: no pool limit
    assert main(["home"]) == 0
    assert capsys.readouterr().out.strip() == str(isolated_home / "dagster")
    assert yaml.safe_load(config.read_text()) == {"python_logs": {"python_log_level": "INFO"}}
    config.unlink()
    monkeypatch.setattr(local_instance, "cuda_gpu_present", lambda: True)  # a GPU machine: one gpu slot
    assert main(["home"]) == 0
    assert yaml.safe_load(config.read_text()) == {"python_logs": {"python_log_level": "INFO"},
                                                  "concurrency": {"pools": {"default_limit": 1}}}
    config.write_text("telemetry:\n  enabled: false\n")  # the user's own: never rewritten
    assert main(["home"]) == 0
    assert config.read_text() == "telemetry:\n  enabled: false\n"


def test_run_with_a_broken_source_fails_naming_the_file(isolated_home, tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    proc = cli(isolated_home, "run", "--agent", "router", "--assets", "raw_examples",
               COURSEGPT_ROUTER_SOURCE=str(missing))
    assert proc.returncode == 1
    assert "✗ raw_examples" in proc.stdout and "nowhere.jsonl" in proc.stdout


def test_a_configuration_error_is_one_line_not_a_traceback(isolated_home, monkeypatch, capsys):
    monkeypatch.setenv("COURSEGPT_ENV", "gcp")
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("coursegpt: error: COURSEGPT_ENV=gcp needs COURSEGPT_STORE=gs://") and "Traceback" not in err


def test_status_flags_changed_hyperparameters_and_a_new_benchmark(home_store, capsys):
    from coursegpt_assets.training.spec import effective_hyperparameters

    pair = "router__tiny-llama"
    trained = {**effective_hyperparameters(default_plan(), pair), "learning_rate": 1.0}
    home_store.write_json(layout.tuning_manifest(pair), {"data_version": "d1"})
    home_store.write_json(layout.adapter_latest(pair), {"version": "a1"})
    home_store.write_json(f"{layout.adapter_dir(pair, 'a1')}/training_summary.json",
                          {"data_version": "d1", "hyperparameters": trained})
    home_store.write_json(layout.report_latest(pair), {"version": "r1"})
    home_store.write_json(f"{layout.report_dir(pair, 'r1')}/report.json",
                          {"adapter_version": "a1", "benchmark_version": "b1"})
    home_store.write_json(layout.benchmark_manifest("router"), {"version": "b2"})
    assert main(["status"]) == 0
    row = table(capsys.readouterr().out)[pair]
    assert "adapter (hyperparameters changed)" in row and "report (new benchmark)" in row
    assert "tuning data changed" not in row


def test_a_vertex_pair_run_stops_at_its_tuning_job(monkeypatch):
    from coursegpt_assets.cli import runner

    stage = ["tuning_dataset", "tuning_job", "adapter", "evaluation_report", "model_card"]
    lines = []
    assert runner._assets_for("router__llama31-8b", "pair", stage, lines.append) == stage  # local: all of it
    monkeypatch.setenv("COURSEGPT_ENV", "gcp")
    monkeypatch.setenv("COURSEGPT_STORE", "gs://bucket/forge")
    assert runner._assets_for("router__llama31-8b", "pair", stage, lines.append) == stage[:2]
    assert "the sensors materialise adapter, evaluation_report, model_card when the job succeeds" in lines[-1]
    assert runner._assets_for("router__tiny-llama", "pair", stage, lines.append) == stage  # trained locally
    assert runner._assets_for("router", "agent", ["raw_examples"], lines.append) == ["raw_examples"]


# -- the gpu pool -------------------------------------------------------------------------------------------
GPU_PARTITIONS = dg.StaticPartitionsDefinition(["first", "second"])


@dg.asset(pool="gpu", partitions_def=GPU_PARTITIONS)
def holds_the_gpu() -> None:
    """Stands in for local training: long enough that two runs started together would overlap."""
    time.sleep(3)


def gpu_job():
    """Reconstructed in each run and step process."""
    return dg.Definitions(assets=[holds_the_gpu], jobs=[dg.define_asset_job(
        "gpu_job", selection=[holds_the_gpu], partitions_def=GPU_PARTITIONS)]).resolve_job_def("gpu_job")


def _run_gpu_job(instance_ref, partition: str) -> bool:
    # step processes import `tests.test_cli` again: from the project root, which only pytest's own path holds
    job = dg.build_reconstructable_job("tests.test_cli", "gpu_job", reconstructor_working_directory=str(PROJECT_ROOT))
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        return dg.execute_job(job, instance=instance, tags={"dagster/partition": partition}).success


def test_the_gpu_pool_keeps_the_steps_of_two_runs_apart(isolated_home):
    """Two pair runs started as `coursegpt run` starts a stage's partitions (one process each, the
    multiprocess executor inside, no more at once than the gpu pool has slots), under the dagster.yaml
    coursegpt writes on a GPU machine: their gpu steps never overlap (without the limit they do)."""
    from coursegpt_assets.cli import runner
    from coursegpt_assets.cli.local_instance import ensure_dagster_yaml, ensure_gpu_pool

    home = ensure_dagster_yaml(isolated_home / "dagster", gpu=True).parent
    with dg.DagsterInstance.from_config(str(home)) as instance:
        ensure_gpu_pool(instance)  # as run_pipeline does before it starts a stage's runs
        workers = runner.stage_workers(instance, 2, 2, "pair")
        assert workers == 1 and runner.stage_workers(instance, 2, 2, "agent") == 2  # data stages stay parallel
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_gpu_job, instance.get_ref(), p) for p in GPU_PARTITIONS.get_partition_keys()]
            assert [f.result(timeout=300) for f in futures] == [True, True]
        spans = []
        for run in instance.get_runs():
            times = {e.dagster_event.event_type: e.timestamp for e in instance.all_logs(run.run_id)
                     if e.dagster_event and e.dagster_event.step_key == "holds_the_gpu"}
            spans.append((times[dg.DagsterEventType.STEP_START], times[dg.DagsterEventType.STEP_SUCCESS]))
        [limit] = [p for p in instance.event_log_storage.get_pool_limits() if p.name == "gpu"]
    assert limit.limit == 1
    (first_start, first_end), (second_start, second_end) = sorted(spans)
    assert first_end - first_start >= 3 and second_start >= first_end, spans


class _InlineRuns:
    """Stands in for the runner's process pool: records each run instead of starting a process."""

    def __init__(self, calls):
        self.calls = calls

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, instance_ref, job_name, key, **kwargs):
        from concurrent.futures import Future

        self.calls.append((job_name, key, kwargs["assets"], kwargs["checks"]))
        future = Future()
        future.set_result(True)
        return future


def test_a_vertex_pair_handed_to_the_sensor_is_a_success_and_says_what_comes_next(isolated_home, monkeypatch):
    from coursegpt_assets.cli import runner

    calls, lines = [], []
    monkeypatch.setattr(runner, "_run_processes", lambda workers: _InlineRuns(calls))
    monkeypatch.setenv("COURSEGPT_ENV", "gcp")
    monkeypatch.setenv("COURSEGPT_STORE", "gs://bucket/forge")
    for name, value in NAMED_SOURCES.items():  # gcp definitions load only with every source named
        monkeypatch.setenv(name, value)
    with dg.instance_for_test() as instance:
        ok, _ = runner.run_pipeline(instance=instance, agents=["router"], pairs=["router__llama31-8b"], assets=None,
                                    defined_assets=ALL_ASSETS, max_parallel=2, emit=lines.append, publish=True)
    assert ok
    assert [(job, key, assets) for job, key, assets, _ in calls] == [
        ("agent_data_job", "router", ["raw_examples", "clean_examples", "dataset_splits", "benchmark"]),
        ("pair_pipeline_job", "router__llama31-8b", ["tuning_dataset", "tuning_job"]),
        ("leaderboard_job", "router", ["leaderboard"]),
    ]  # no publish_job run: the pair's card comes from the sensors later
    text = "\n".join(lines)
    assert "handed to the sensors (not a failure): router__llama31-8b" in text
    assert "vertex_job_sensor polls each Vertex AI tuning job" in text and "--assets leaderboard" in text
    assert "its Vertex job has not finished" in text


def test_runs_carry_their_jobs_checks_only_and_publishing_skips_smoke_pairs(isolated_home, monkeypatch):
    from coursegpt_assets.cli import runner

    calls, lines = [], []
    monkeypatch.setattr(runner, "_run_processes", lambda workers: _InlineRuns(calls))
    with dg.instance_for_test() as instance:
        ok, _ = runner.run_pipeline(instance=instance, agents=["router"], pairs=["router__tiny-llama", "router__llama31-8b"],
                                    assets={"model_card", "published_adapter"}, defined_assets=ALL_ASSETS,
                                    max_parallel=2, emit=lines.append, publish=True)
    assert ok
    by_job = {(job, key): (assets, checks) for job, key, assets, checks in calls}
    assets, checks = by_job[("pair_pipeline_job", "router__tiny-llama")]
    assert assets == ["model_card"] and checks == [("model_card", "card_is_valid")]  # no smoke check
    assets, checks = by_job[("publish_job", "router__llama31-8b")]
    assert assets == ["published_adapter"]
    assert checks == [("model_card", "card_is_valid"), ("model_card", "not_a_smoke_model")]
    assert ("publish_job", "router__tiny-llama") not in by_job
    assert any("router__tiny-llama: a smoke-test model; not published" in line for line in lines)


def test_publishing_is_opt_in_on_the_command_line(capsys):
    assert main(["run", "--assets", "published_adapter"]) == 2
    assert "publishing is opt-in: add --publish" in capsys.readouterr().err


def test_version_names_the_distribution_and_dagster(capsys):
    from importlib.metadata import version

    from coursegpt_assets.cli.main import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"coursegpt-forge {version('coursegpt-forge')} (dagster {version('dagster')})"


@pytest.mark.parametrize(("status", "work"), [
    ({"adapter": "-", "report": "-", "stale": "not materialised"}, "trains, evaluates"),
    ({"adapter": "abc", "report": "def", "stale": "adapter (tuning data changed), adapter (hyperparameters changed)"},
     "retrains (tuning data changed; hyperparameters changed), evaluates"),
    ({"adapter": "abc", "report": "-", "stale": "report missing"}, "adapter abc current (reused), evaluates"),
    ({"adapter": "abc", "report": "def", "stale": "report (new benchmark)"}, "adapter abc current (reused), evaluates"),
    ({"adapter": "abc", "report": "def", "stale": "-"}, "adapter abc current (reused), report current (skipped)"),
])
def test_dry_run_says_what_a_run_would_do_and_what_is_current(status, work):
    from coursegpt_assets.cli.status import planned_work

    assert planned_work({"pair": "p", "data": "x", **status}) == work

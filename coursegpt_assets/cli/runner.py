"""Runs the pipeline stage by stage on the persistent instance, printing one line per finished step.

Partitions of a stage run side by side, one run per process, as Dagster's own run workers do (each
run's steps then execute in child processes through the multiprocess executor). Progress is read from
the instance's event log while they run (`cli.progress`).

Publishing is opt-in: `publish=True` (`coursegpt run --publish`) adds publish_job after the other stages,
for the pairs of this invocation that are neither smoke-test models nor handed to the Vertex sensor.

Steps in the `gpu` pool (local training, local generation) wait for a slot of the instance's pool limit
(`concurrency: pools: default_limit` in DAGSTER_HOME/dagster.yaml: 1 as coursegpt writes it on a machine
with a CUDA GPU, none on a CPU-only one): Dagster's multiprocess executor claims the slot in the
instance's event log storage, so two runs of this command, or a run of it and one from the UI, never
train on the GPU at the same time. That claim is not atomic on the default sqlite storage, so within one
invocation a pair stage also starts no more runs at once than the pool has slots (`stage_workers`).

Runs are not started in threads of one process: when `dagster.yaml` holds any setting, Dagster applies
`logging.config.dictConfig` each time a run starts, which takes the logging module's lock and then every
handler's lock, while another run's thread holds a handler's lock and waits for the module lock. Two
runs in one process could then deadlock.
"""

from __future__ import annotations

import functools
import multiprocessing
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import dagster as dg

from coursegpt_assets.agents import get_agent
from coursegpt_assets.cli.local_instance import ensure_gpu_pool, gpu_slots
from coursegpt_assets.cli.progress import INVOCATION_TAG, ProgressPrinter, StepLine
from coursegpt_assets.core.names import split_pair
from coursegpt_assets.defs.jobs import PUBLISH, STAGES, selection_for
from coursegpt_assets.defs.partitions import partition_tags

#: the runner's own summary numbers (held-out perplexity: base, then adapter); each agent adds its headline
#: metrics (see `headline_keys`)
STEP_KEYS = ("dagster/row_count", "final_loss", "wall_time_s", "best_score", "perplexity_base", "perplexity_adapter")


def headline_keys(agents: list[str]) -> tuple[str, ...]:
    """The metadata keys a finished step's summary shows: the runner's own and the agents' headline metrics."""
    return tuple(dict.fromkeys([*STEP_KEYS, *(m for name in agents for m in get_agent(name).headline_metrics)]))


def _headline(metadata: dict, keys: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for key in keys:
        value = metadata.get(key)
        raw = getattr(value, "value", value)
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            out[key.removeprefix("dagster/")] = raw
    return out


def run_pipeline(
    *,
    instance: dg.DagsterInstance,
    agents: list[str],
    pairs: list[str],
    assets: set[str] | None,
    defined_assets: set[str],
    max_parallel: int,
    emit: Callable[[str], None] = print,
    publish: bool = False,
) -> tuple[bool, list[StepLine]]:
    """Execute each stage for its partitions; a failed partition stops only what depends on it.
    A pair handed to the Vertex sensor is a success: what the sensors do next is printed at the end."""
    invocation = uuid.uuid4().hex[:12]
    ensure_gpu_pool(instance)  # before two partitions' runs race to create it
    printer = ProgressPrinter(instance, invocation, emit, functools.partial(_headline, keys=headline_keys(agents)))
    printer.run_in_background()
    ok = True
    failed: set[str] = set()  # partitions whose run failed; what depends on them is not started
    handed_off: set[str] = set()  # Vertex pairs whose run ended at tuning_job
    try:
        for job_name, stage_assets, level, _ in (*STAGES, PUBLISH) if publish else STAGES:
            selected = [a for a in stage_assets if a in defined_assets and (assets is None or a in assets)]
            if not selected:
                continue
            keys = _runnable(level, agents, pairs, failed)
            if job_name == PUBLISH[0]:
                keys = _publishable(keys, handed_off, emit)
            if not keys:
                continue
            checks = _checks_for(job_name, stage_assets)
            runs = {key: _assets_for(key, level, selected, emit) for key in keys}
            if level == "pair" and VERTEX_HANDOFF in selected:
                handed_off.update(key for key in keys if vertex_pair(key))
            with _run_processes(stage_workers(instance, max_parallel, len(keys), level)) as pool:
                futures = [pool.submit(_execute, instance.get_ref(), job_name, key, assets=runs[key],
                                       checks=[c for c in checks if c[0] in runs[key] or c[0] not in stage_assets],
                                       invocation=invocation)
                           for key in keys]
                results = [future.result() for future in futures]
            failed.update(key for key, success in zip(keys, results, strict=True) if not success)
            ok = ok and all(results)
    finally:
        printer.stop()
    for line in _handoff_notes(sorted(handed_off - failed)):
        emit(line)
    return ok, printer.lines


#: a Vertex AI tuning job runs for hours: the run ends at tuning_job and vertex_job_sensor takes over
VERTEX_HANDOFF = "tuning_job"


def stage_workers(instance: dg.DagsterInstance, max_parallel: int, partitions: int, level: str) -> int:
    """Runs started side by side for one stage. Pair stages hold the GPU steps, so they start no more runs
    than the gpu pool has slots: Dagster's slot claim is not atomic on the default sqlite storage (its
    SELECT ... FOR UPDATE is a no-op there), and two runs starting together could both take the last slot."""
    workers = max(1, min(max_parallel, partitions))
    slots = gpu_slots(instance) if level == "pair" else None
    return min(workers, slots) if slots else workers


def vertex_pair(pair: str) -> bool:
    """Whether this pair is tuned on Vertex AI here (gcp environment and a Vertex model id)."""
    from coursegpt_assets.core import settings
    from coursegpt_assets.core.plan import default_plan
    from coursegpt_assets.training.spec import BACKEND_VERTEX, backend_for

    return backend_for(default_plan().base_model_for(pair), gcp=settings.current().is_gcp) == BACKEND_VERTEX


def _assets_for(key: str, level: str, selected: list[str], emit: Callable[[str], None]) -> list[str]:
    """The stage's assets for one partition: a Vertex pair stops at its tuning job (no worker waits hours)."""
    if level != "pair" or VERTEX_HANDOFF not in selected or not vertex_pair(key):
        return selected
    kept = selected[: selected.index(VERTEX_HANDOFF) + 1]
    if len(kept) < len(selected):
        emit(f"            {key}: tuned on Vertex AI; this run ends at {VERTEX_HANDOFF} and the sensors "
             f"materialise {', '.join(selected[len(kept):])} when the job succeeds")
    return kept


def _handoff_notes(pairs: list[str]) -> list[str]:
    """What happens to the pairs handed to the sensors, and how to see it."""
    if not pairs:
        return []
    agents = sorted({split_pair(p)[0] for p in pairs})
    notes = [f"handed to the sensors (not a failure): {', '.join(pairs)}",
             "  vertex_job_sensor polls each Vertex AI tuning job and materialises `adapter` when it succeeds;",
             "  new_adapter_sensor then runs evaluation_report and model_card for that adapter.",
             "  The sensors run in the Dagster daemon (`make dev`, or the cluster's daemon). Afterwards",
             f"  `coursegpt run {' '.join(f'--agent {a}' for a in agents)} --assets leaderboard` adds them to the "
             "leaderboard, and `--publish` publishes them."]
    return notes


def _publishable(pairs: list[str], handed_off: set[str], emit: Callable[[str], None]) -> list[str]:
    """The pairs publish_job runs for: not a smoke-test model (refused: random weights) and not waiting for Vertex."""
    from coursegpt_assets.core.plan import default_plan

    plan = default_plan()
    kept = []
    for pair in pairs:
        if plan.is_smoke(pair):
            emit(f"            {pair}: a smoke-test model; not published (publish_job's not_a_smoke_model check "
                 "refuses it)")
        elif pair in handed_off:
            emit(f"            {pair}: its Vertex job has not finished; publish it once model_card is materialised")
        else:
            kept.append(pair)
    return kept


def _checks_for(job_name: str, stage_assets: tuple[str, ...]) -> list[tuple[str, str]]:
    """The job's checks as (asset, check name): a run of a subset of the job's assets runs the job's own
    checks on them (Dagster would otherwise add every check of those assets, the smoke check too)."""
    from coursegpt_assets.definitions import defs

    keys = selection_for(job_name, stage_assets).resolve_checks(defs.resolve_asset_graph())
    return sorted((k.asset_key.to_user_string(), k.name) for k in keys)


def _runnable(level: str, agents: list[str], pairs: list[str], failed: set[str]) -> list[str]:
    """Partitions of the next stage whose upstream partitions have not failed: a pair needs its agent's
    data; an agent's summary (leaderboard) needs at least one of its pairs, when pairs were run at all."""
    if level == "pair":
        return [p for p in pairs if p not in failed and split_pair(p)[0] not in failed]
    runnable = []
    for agent in agents:
        own_pairs = [p for p in pairs if split_pair(p)[0] == agent]
        if agent not in failed and (not own_pairs or any(p not in failed for p in own_pairs)):
            runnable.append(agent)
    return runnable


#: Step processes fork from a server that has already imported the definitions: a step starts in
#: milliseconds instead of re-importing dagster and the project (seconds on a busy 2-core machine).
RUN_CONFIG = {
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    "execution": {"config": {"multiprocess": {
        "start_method": {"forkserver": {"preload_modules": ["coursegpt_assets.definitions"]}},
    }}},
}


def _run_processes(workers: int) -> ProcessPoolExecutor:
    """A fresh process per run, forked from a server that has already imported the definitions."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["coursegpt_assets.definitions", "coursegpt_assets.cli.runner"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, max_tasks_per_child=1)


def _execute(instance_ref, job_name: str, partition: str, *, assets: list[str], checks: list[tuple[str, str]],
             invocation: str) -> bool:
    """One run of `assets` and exactly `checks` (asset, name), in its own process (see the module docstring)."""
    job = dg.build_reconstructable_job("coursegpt_assets.cli.runner", "load_job", reconstructable_args=(job_name,))
    job = job.get_subset(asset_selection={dg.AssetKey(a) for a in assets},
                         asset_check_selection={dg.AssetCheckKey(dg.AssetKey(a), name) for a, name in checks})
    try:
        instance = dg.DagsterInstance.from_ref(instance_ref)
        result = dg.execute_job(
            job,
            instance=instance,
            tags={"dagster/partition": partition, INVOCATION_TAG: invocation, **partition_tags(partition)},
            run_config=RUN_CONFIG,
        )
    except Exception as e:  # a run that cannot even start: say which and why, then stop the pipeline
        print(f"error: {job_name} [{partition}] could not run: {type(e).__name__}: {e}")
        return False
    return result.success


def load_job(job_name: str):
    """Reconstructs a job in each step process (used by build_reconstructable_job)."""
    from coursegpt_assets.definitions import defs

    return defs.resolve_job_def(job_name)

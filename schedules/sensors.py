"""Sensors: checked adapters → evaluation; Vertex AI tuning jobs → `adapter` when they end.

- `new_adapter_sensor` reads the `adapter` asset's materialisations after its cursor (a storage id), so
  only adapters Dagster materialised are evaluated, never a folder that appears in the store. A version is
  requested (`evaluation_report` + `model_card`, tag `coursegpt/adapter_version`, run_key `<pair>:<version>`)
  once its run has reported the blocking checks on that partition (`adapter_matches_plan`) and all
  passed, unless the same run also planned `evaluation_report` for the pair (the local pipeline
  evaluates its own adapter), or the pair's latest report already describes that version. A failed
  check means no report and no card. Of several checked versions of one pair in one tick, only the newest is evaluated.
  A materialisation whose run has not yet reported its checks is kept in the cursor and read again.
- `vertex_job_sensor` reads the latest `tuning_job` materialisation per pair; for a Vertex job whose
  recorded state was not final it asks Vertex for the state. SUCCEEDED requests `adapter` (run_key = the
  job's resource name); FAILED / CANCELLED / EXPIRED logs Vertex's error and reports a failed
  `vertex_job_succeeded` check on `tuning_job`. No run worker waits for a job.
"""

import json
import warnings
from dataclasses import dataclass

import dagster as dg

from coursegpt_assets.core.names import (  # the evaluation assets read the version back
    ADAPTER_VERSION_TAG,
    TRIGGER_TAG,
)
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS, partition_tags
from resources.tuning import Trainer
from schedules.config import settings

EVALUATION_ASSETS = ("evaluation_report", "model_card")

VERTEX_CHECK = "vertex_job_succeeded"
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")


def latest_materialization(instance: dg.DagsterInstance, asset: str, partition: str):
    """The newest materialisation record of one partition of `asset`, or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return records[0] if records else None


def _metadata_value(record, key: str):
    if record is None or record.asset_materialization is None:
        return None
    entry = record.asset_materialization.metadata.get(key)
    return getattr(entry, "value", entry)


# -- checked adapters --------------------------------------------------------------------------------------
ADAPTER = dg.AssetKey("adapter")
REPORT = dg.AssetKey("evaluation_report")
CURSOR_VERSION = 2
PAGE_SIZE = 200  # adapter materialisations read per tick; the next tick goes on from there
_RUN_EVENTS = {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, dg.DagsterEventType.ASSET_CHECK_EVALUATION}

#: what the sensor concluded about one adapter materialisation
EVALUATE, OWN_RUN, FAILED, UNCHECKED, PENDING = "evaluate", "own run", "failed", "unchecked", "pending"


@dataclass(frozen=True)
class AdapterCursor:
    """Every adapter materialisation up to storage id `after` is handled, except those in `pending`
    (their run had not reported its blocking checks yet); those are read again on the next tick."""

    after: int = 0
    pending: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> "AdapterCursor":
        """The cursor a previous tick saved; a ValueError for one this sensor did not write."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON ({e})") from None
        if not isinstance(raw, dict) or raw.get("v") != CURSOR_VERSION:
            found = raw.get("v") if isinstance(raw, dict) else None
            raise ValueError(f"cursor version {found!r} is not {CURSOR_VERSION} (an older new_adapter_sensor's?)")
        return cls(after=int(raw.get("after", 0)), pending=tuple(sorted(int(i) for i in raw.get("pending", ()))))

    def dump(self) -> str:
        return json.dumps({"v": CURSOR_VERSION, "after": self.after, "pending": sorted(self.pending)},
                          separators=(",", ":"))


@dataclass(frozen=True)
class Verdict:
    """One adapter materialisation and what the sensor does with it (`outcome`, explained by `detail`)."""

    storage_id: int
    pair: str
    version: str | None
    outcome: str
    detail: str


def _planned_and_checks(instance: dg.DagsterInstance, run_id: str, pair: str):
    """The assets the run planned to materialise, as (key, partition), and the blocking check evaluations
    it reported on `adapter` for `pair`."""
    planned, checks = set(), []
    for entry in instance.all_logs(run_id, of_type=_RUN_EVENTS):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            planned.add((event.asset_key, event.partition))
            continue
        evaluation = event.event_specific_data
        if (isinstance(evaluation, dg.AssetCheckEvaluation) and evaluation.asset_key == ADAPTER
                and evaluation.partition == pair and evaluation.blocking):
            checks.append(evaluation)
    return planned, checks


def judge(instance: dg.DagsterInstance, record) -> Verdict:
    """What to do with one `adapter` materialisation record: evaluate it, leave it to its own run, or not."""
    pair, version = record.partition_key, _metadata_value(record, "version")
    version = str(version) if version else None

    def verdict(outcome: str, detail: str) -> Verdict:
        return Verdict(record.storage_id, pair or "", version, outcome, detail)

    if pair not in PAIR_PARTITIONS.get_partition_keys():
        return verdict(UNCHECKED, f"partition {pair!r} is not a planned pair")
    if not version:
        return verdict(UNCHECKED, "its metadata names no adapter version")
    run = instance.get_run_by_id(record.run_id) if record.run_id else None
    if run is None:
        return verdict(UNCHECKED, "it was reported outside a run, so no blocking check evaluated it")
    planned, checks = _planned_and_checks(instance, run.run_id, pair)
    failed = sorted(c.check_name for c in checks if not c.passed)
    if failed:
        return verdict(FAILED, f"blocking check(s) {', '.join(failed)} failed in run {run.run_id}")
    if (REPORT, pair) in planned or (REPORT, None) in planned:  # None: a run over a partition range
        return verdict(OWN_RUN, f"run {run.run_id} also materialises evaluation_report for {pair}")
    if not checks:
        if not run.is_finished:
            return verdict(PENDING, f"run {run.run_id} has not reported the adapter's blocking checks yet")
        return verdict(UNCHECKED, f"run {run.run_id} evaluated no blocking check on it")
    passed = ", ".join(sorted(c.check_name for c in checks))
    return verdict(EVALUATE, f"{passed} passed in run {run.run_id}")


def _read_cursor(context: dg.SensorEvaluationContext) -> AdapterCursor:
    try:
        return AdapterCursor.parse(context.cursor)
    except ValueError as e:
        context.log.warning(f"new_adapter_sensor: ignoring the saved cursor: {e}. Reading the adapter's "
                            "materialisations from the start; a version its own run or the latest report "
                            "evaluated is not requested, nor a run_key the daemon already launched")
        return AdapterCursor()


def _new_records(instance: dg.DagsterInstance, cursor: AdapterCursor) -> list:
    """The pending records of the cursor, then the next page after it, in storage order."""
    records = []
    if cursor.pending:
        records += instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=ADAPTER, storage_ids=list(cursor.pending)), limit=len(cursor.pending)
        ).records
    records += instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ADAPTER, after_storage_id=cursor.after or None), limit=PAGE_SIZE,
        ascending=True,
    ).records
    return sorted(records, key=lambda r: r.storage_id)


def _newest_checked(context: dg.SensorEvaluationContext, verdicts: list[Verdict]) -> dict[str, Verdict]:
    """pair -> its newest checked version this tick (evaluated here or by its own run), older ones logged."""
    newest: dict[str, Verdict] = {}
    for v in verdicts:
        line = f"{v.pair}: adapter {v.version or '?'} (storage id {v.storage_id}): {v.detail}"
        if v.outcome == UNCHECKED:
            context.log.warning(f"new_adapter_sensor: not evaluated: {line}")
        elif v.outcome == FAILED:
            context.log.info(f"not evaluated: {line}")
        elif v.outcome == PENDING:
            context.log.info(f"waiting: {line}")
        else:
            if v.pair in newest and newest[v.pair].version != v.version:
                context.log.info(f"{v.pair}: adapter {newest[v.pair].version} superseded by {v.version}")
            newest[v.pair] = v
    return newest


def _request(v: Verdict) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"{v.pair}:{v.version}",
        partition_key=v.pair,
        asset_selection=[dg.AssetKey(a) for a in EVALUATION_ASSETS],
        tags={ADAPTER_VERSION_TAG: str(v.version), TRIGGER_TAG: "new_adapter_sensor", **partition_tags(v.pair)},
    )


@dg.sensor(
    name="new_adapter_sensor",
    target=dg.AssetSelection.assets(*EVALUATION_ASSETS),
    minimum_interval_seconds=settings().new_adapter_sensor.minimum_interval_seconds,
    default_status=settings().new_adapter_sensor.status(),
    description="Evaluates each adapter version whose materialisation passed its blocking checks, once "
                "(run_key pair:version), unless its own run evaluates it.",
)
def new_adapter_sensor(context: dg.SensorEvaluationContext):
    cursor = _read_cursor(context)
    verdicts = [judge(context.instance, r) for r in _new_records(context.instance, cursor)]
    requests = []
    for pair, v in sorted(_newest_checked(context, verdicts).items()):
        if v.outcome == OWN_RUN:
            context.log.info(f"{pair}: adapter {v.version} is evaluated by its own run; no run requested")
        elif _metadata_value(latest_materialization(context.instance, "evaluation_report", pair),
                             "adapter_version") == v.version:
            context.log.info(f"{pair}: adapter {v.version} is already evaluated; no run requested")
        else:
            context.log.info(f"{pair}: adapter {v.version} passed its checks ({v.detail}); requesting its evaluation")
            requests.append(_request(v))
    after = max([cursor.after, *(v.storage_id for v in verdicts)])
    pending = tuple(v.storage_id for v in verdicts if v.outcome == PENDING)
    skip = None if requests else (f"{len(verdicts)} adapter materialisation(s) read; none to evaluate" if verdicts
                                  else "no new adapter materialisations")
    return dg.SensorResult(run_requests=requests, cursor=AdapterCursor(after, pending).dump(), skip_reason=skip)


# -- Vertex AI tuning jobs ---------------------------------------------------------------------------------
def _state(value) -> str:
    """JOB_STATE_SUCCEEDED / SUCCEEDED / 4-as-name → SUCCEEDED."""
    return str(value or "").upper().removeprefix("JOB_STATE_")


def _vertex_jobs(instance: dg.DagsterInstance) -> dict[str, tuple[str, str]]:
    """pair -> (resource name, recorded state) for pairs whose latest tuning_job recorded a Vertex job."""
    jobs = {}
    for pair in PAIR_PARTITIONS.get_partition_keys():
        record = latest_materialization(instance, "tuning_job", pair)
        name = _metadata_value(record, "resource_name")
        if name:
            jobs[pair] = (str(name), _state(_metadata_value(record, "state")))
    return jobs


def _job_metadata(info) -> dict:
    meta = {"resource_name": info.resource_name, "state": info.state,
            "console_url": dg.MetadataValue.url(info.console_url)}
    if info.error:
        meta["error"] = info.error
    return meta


@dg.sensor(
    name="vertex_job_sensor",
    target=dg.AssetSelection.assets("adapter"),
    minimum_interval_seconds=settings().vertex_job_sensor.minimum_interval_seconds,
    default_status=settings().vertex_job_sensor.status(),
    description="Polls submitted Vertex AI tuning jobs; launches `adapter` on success, reports Vertex's error on failure.",
)
def vertex_job_sensor(context: dg.SensorEvaluationContext, trainer: Trainer):
    if not hasattr(trainer, "get_job"):
        return dg.SkipReason(f"trainer {type(trainer).__name__} submits no Vertex jobs (COURSEGPT_ENV=gcp does)")
    known: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    jobs = _vertex_jobs(context.instance)
    requests, events, states = [], [], {}
    for pair, (name, recorded) in sorted(jobs.items()):
        if _state(known.get(name)) in FINAL_STATES:
            states[name] = known[name]
            continue
        info = None
        if recorded in FINAL_STATES:
            state = recorded
        else:
            try:
                info = trainer.get_job(name)
            except Exception as e:  # one unreachable job must not stop the others
                context.log.warning(f"{pair}: could not read Vertex job {name}: {type(e).__name__}: {e}")
                states[name] = known.get(name, recorded)
                continue
            state = _state(info.state)
        if info is not None and state != _state(known.get(name, recorded)):
            events.append(dg.AssetObservation(asset_key="tuning_job", partition=pair, metadata=_job_metadata(info)))
        states[name] = state
        if state == "SUCCEEDED":
            context.log.info(f"{pair}: Vertex job {name} succeeded; requesting the adapter")
            requests.append(dg.RunRequest(run_key=name, partition_key=pair, asset_selection=[dg.AssetKey("adapter")],
                                          tags={TRIGGER_TAG: "vertex_job_sensor", **partition_tags(pair)}))
        elif state in FINAL_STATES:
            error = (info.error if info else None) or "no error message from Vertex"
            console = f" ({info.console_url})" if info else ""
            context.log.error(f"{pair}: Vertex tuning job {name} is {state}: {error}{console}")
            events.append(dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("tuning_job"), check_name=VERTEX_CHECK, passed=False, partition=pair,
                description=f"Vertex tuning job {state}: {error}",
                metadata={"resource_name": name, "state": state, "error": error},
            ))
    skip = None if requests or events else f"{len(jobs)} Vertex job(s) followed; no state changed"
    return dg.SensorResult(run_requests=requests, asset_events=events, cursor=json.dumps(states, sort_keys=True),
                           skip_reason=skip)


def _vertex_job_succeeded(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """Re-reads the job the latest tuning_job recorded; the sensor reports the same check when a job ends."""
    record = latest_materialization(context.instance, "tuning_job", context.partition_key)
    name = _metadata_value(record, "resource_name")
    trainer = context.resources.trainer
    if not name or not hasattr(trainer, "get_job"):
        return dg.AssetCheckResult(passed=True, description="no Vertex job recorded (trained locally)")
    info = trainer.get_job(str(name))
    state = _state(info.state)
    failed = state in FINAL_STATES and state != "SUCCEEDED"
    return dg.AssetCheckResult(passed=not failed, metadata=_job_metadata(info),
                               description=f"Vertex job {state}" + (f": {info.error}" if info.error else ""))


with warnings.catch_warnings():  # partitioned checks are "preview" in 1.13; we rely on them knowingly
    warnings.filterwarnings("ignore", message="Specifying a partitions_def", category=dg.PreviewWarning)
    vertex_job_succeeded = dg.asset_check(
        asset="tuning_job", name=VERTEX_CHECK, partitions_def=PAIR_PARTITIONS, required_resource_keys={"trainer"},
        description="The pair's Vertex AI tuning job did not fail (local training always passes).",
    )(_vertex_job_succeeded)

SENSOR_CHECKS = [vertex_job_succeeded]

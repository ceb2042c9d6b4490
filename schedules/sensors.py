"""Sensors: new adapters in the store → evaluation; Vertex AI tuning jobs → `adapter` when they end.

- `new_adapter_sensor` lists the store's `adapters/` prefix (a local folder or a GCS listing through
  `ArtifactStore.list_keys`), so adapters produced outside Dagster are noticed too. For each pair with a
  new complete version it reports an `adapter` materialisation (unless Dagster already recorded that
  version) and requests `evaluation_report` + `model_card` with run_key `<pair>:<version>`.
- `vertex_job_sensor` reads the latest `tuning_job` materialisation per pair; for a Vertex job whose
  recorded state was not final it asks Vertex for the state. SUCCEEDED requests `adapter` (run_key = the
  job's resource name); FAILED / CANCELLED / EXPIRED logs Vertex's error and reports a failed
  `vertex_job_succeeded` check on `tuning_job`. No run worker waits for a job.
"""

import json
import warnings

import dagster as dg

from coursegpt_assets.core import layout
from coursegpt_assets.core.names import (  # the evaluation assets read the version back
    ADAPTER_VERSION_TAG,
    TRIGGER_TAG,
)
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from resources.storage import ArtifactStore
from resources.tuning import Trainer
from schedules.adapter_scan import ScanCursor, scan
from schedules.config import settings

EVALUATION_ASSETS = ("evaluation_report", "model_card")

VERTEX_CHECK = "vertex_job_succeeded"
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")
_SUMMARY_NUMBERS = ("steps", "final_loss", "eval_loss", "wall_time_s", "tokens_per_second", "train_examples")


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


# -- new adapters ------------------------------------------------------------------------------------------
def _adapter_event(new, store) -> dg.AssetMaterialization:
    summary = new.summary
    metadata = {k: summary[k] for k in _SUMMARY_NUMBERS if isinstance(summary.get(k), int | float)}
    metadata.update({
        "version": new.version,
        "adapter_uri": store.uri(layout.adapter_dir(new.pair, new.version)),
        "reported_by": "new_adapter_sensor (found in the store)",
    })
    for key in ("data_version", "backend", "device", "base_model_id"):
        if summary.get(key) is not None:
            metadata[key] = str(summary[key])
    return dg.AssetMaterialization(asset_key="adapter", partition=new.pair, metadata=metadata)


@dg.sensor(
    name="new_adapter_sensor",
    target=dg.AssetSelection.assets(*EVALUATION_ASSETS),
    minimum_interval_seconds=settings().new_adapter_sensor.minimum_interval_seconds,
    default_status=settings().new_adapter_sensor.status(),
    description="Watches adapters/ in the store; evaluates each new adapter version once (run_key pair:version).",
)
def new_adapter_sensor(context: dg.SensorEvaluationContext, store: ArtifactStore):
    cursor = ScanCursor.parse(context.cursor)
    result = scan(store.list_keys(layout.adapters_root()), cursor,
                  known_pairs=PAIR_PARTITIONS.get_partition_keys(), read_json=store.read_json)
    for folder, reason in result.newly_skipped.items():
        context.log.warning(f"new_adapter_sensor: skipping adapters/{folder}: {reason}")
    events, requests = [], []
    for new in result.new:
        if new.superseded:
            context.log.info(f"{new.pair}: evaluating {new.version} ({new.choice}); "
                             f"superseded new versions: {', '.join(new.superseded)}")
        recorded = latest_materialization(context.instance, "adapter", new.pair)
        if _metadata_value(recorded, "version") != new.version:
            events.append(_adapter_event(new, store))
        evaluated = latest_materialization(context.instance, "evaluation_report", new.pair)
        if _metadata_value(evaluated, "adapter_version") == new.version:
            context.log.info(f"{new.pair}: adapter {new.version} is already evaluated; no run requested")
            continue
        requests.append(dg.RunRequest(
            run_key=f"{new.pair}:{new.version}",
            partition_key=new.pair,
            asset_selection=[dg.AssetKey(a) for a in EVALUATION_ASSETS],
            tags={ADAPTER_VERSION_TAG: new.version, TRIGGER_TAG: "new_adapter_sensor"},
        ))
    skip = None if requests or events else f"no new adapter versions ({len(result.skipped)} folders skipped)"
    return dg.SensorResult(run_requests=requests, asset_events=events, cursor=result.cursor.dump(), skip_reason=skip)


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
                                          tags={TRIGGER_TAG: "vertex_job_sensor"}))
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

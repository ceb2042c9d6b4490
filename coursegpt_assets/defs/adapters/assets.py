"""Pair-level LoRA adapters: `tuning_job` trains or submits, `adapter` validates and publishes.

- `tuning_job`: locally, trains the adapter in a Dagster Pipes subprocess (TRL + PEFT; per-step loss /
  learning rate / tokens-per-second become AssetObservations while it runs) and uploads the folder to
  `adapters/<pair>/<version>/` with `training_summary.json` last. With Vertex AI it submits the tuning
  job (or follows the one already running for the same labels) and returns at once; a sensor launches
  `adapter` when the job ends.
- `adapter`: makes sure the version's folder is complete (for Vertex, copying the export from the job's
  `output_uri`), checks it against the plan (blocking) and points `adapters/<pair>/latest.json` at it.
A local version hashes tuning data version + hyperparameters + base model + backend; a Vertex version is
the job's identity (training.spec.VertexJob: only what Vertex receives). An unchanged input is reused,
never retrained or paid for twice.
"""


import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import dagster as dg

from coursegpt_assets.core import layout, settings
from coursegpt_assets.core.chat_templates import family
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.defs.adapters.vertex_export import collect_vertex_export, job_metadata
from coursegpt_assets.defs.common import OWNERS, image, read_upstream, stored_image
from coursegpt_assets.defs.common import uri as uri_metadata
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from coursegpt_assets.defs.tuning.checks import cost_of, paid_job_problems, tuning_data_report
from coursegpt_assets.training.spec import BACKEND_VERTEX, AdapterRequest, adapter_request
from coursegpt_assets.training.validation import summarise_problems, validate_adapter
from resources.storage import ArtifactStore
from resources.tuning import Trainer

GROUP = "adapters"
ADAPTER_CHECK = "adapter_matches_plan"
_NUMERIC = ("steps", "final_loss", "eval_loss", "wall_time_s", "tokens_per_second", "train_examples",
            "validation_examples", "dropped_examples")


def _request(context, store: ArtifactStore, trainer: Trainer) -> AdapterRequest:
    plan = default_plan()
    pair = context.partition_key
    manifest = read_upstream(store, layout.tuning_manifest(pair), producer="tuning_dataset", partition=pair)
    return adapter_request(plan, pair, manifest, trainer.backend_for(plan.base_model_for(pair)))


def summary_metadata(summary: dict) -> dict:
    """Numbers as ints/floats so the UI plots them across materialisations."""
    meta: dict = {k: summary[k] for k in _NUMERIC if isinstance(summary.get(k), int | float)}
    for key in ("version", "data_version", "backend", "device", "hardware", "base_model_id"):
        if summary.get(key) is not None:
            meta[key] = str(summary[key])
    meta["smoke"] = bool(summary.get("smoke", False))
    return meta


LOSS_ALT = "Training and validation loss"


def _loss_curve(folder: Path) -> dict[str, dg.MetadataValue]:
    """The local trainer's loss curve on the asset page ({} for a Vertex adapter, which has none)."""
    path = folder / layout.LOSS_CURVE_FILE
    value = image(path.read_bytes(), LOSS_ALT) if path.exists() else None
    return {"loss_curve": value} if value else {}


def _staging_root(pair: str) -> Path:
    root = settings.current().home / "staging" / pair
    root.mkdir(parents=True, exist_ok=True)
    return root


def _train_local(context, store: ArtifactStore, trainer: Trainer, req: AdapterRequest):
    from coursegpt_assets.training.tiny_llama import ensure_base_model

    manifest = store.read_json(layout.tuning_manifest(req.pair))
    base_path = ensure_base_model(req.base_model, default_plan())
    data_dir = store.local_dir(str(Path(layout.tuning_manifest(req.pair)).parent), settings.current().home / "cache")
    staging = Path(tempfile.mkdtemp(prefix=f"{req.version}.", dir=_staging_root(req.pair)))
    out = staging / "adapter"
    extras = {
        "pair": req.pair, "agent": req.agent, "base_model": req.base_model, "base_model_id": req.base_model_id,
        "base_model_path": base_path, "base_model_revision": req.base_revision, "version": req.version,
        "data_version": req.data_version, "hyperparameters": req.hyperparameters, "smoke": req.smoke,
        "train_path": str(data_dir / "train.jsonl"), "validation_path": str(data_dir / "validation.jsonl"),
        "output_dir": str(out),
        "chat_template": manifest.get("chat_template") or family(req.family).template,
        "end_of_turn": manifest.get("end_of_turn") or family(req.family).end_of_turn,
        "chat_template_kwargs": manifest.get("chat_template_kwargs") if "chat_template_kwargs" in manifest
        else family(req.family).template_kwargs(think=bool(manifest.get("think_wrapping"))),
    }
    try:
        messages = yield from trainer.run_child(context, extras)
        summary = json.loads((out / layout.SUMMARY_FILE).read_text(encoding="utf-8"))
        record = {"backend": req.backend, "state": "SUCCEEDED", "version": req.version, "pair": req.pair,
                  "logging_steps_reported": len(messages)}
        (out / layout.JOB_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        adapter_uri = store.upload_dir(out, layout.adapter_dir(req.pair, req.version), last=layout.SUMMARY_FILE)
        curve = _loss_curve(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    context.log.info(f"{req.pair}: adapter {req.version} trained and stored at {adapter_uri}")
    yield dg.MaterializeResult(
        metadata={**summary_metadata(summary), "reused": False, "adapter_uri": uri_metadata(adapter_uri),
                  "observations": len(messages), **curve},
    )


def _submit_vertex(context, store: ArtifactStore, trainer: Trainer, req: AdapterRequest):
    plan = default_plan()
    report = tuning_data_report(store, plan, req.pair)
    cost = cost_of(report, plan, req.pair)
    reasons = list(report.problems)
    if report.rows == 0:
        reasons.append("the tuning data has no rows")
    if report.over_model_length:
        reasons.append(f"{report.over_model_length} rows exceed the model's context (estimated tokens)")
    if cost > plan.cost.budget_usd:
        reasons.append(f"estimated ${cost:,.2f} exceeds the ${plan.cost.budget_usd:,.2f} budget (cost.budget_usd)")
    reasons += paid_job_problems(store, plan, req.pair)
    if reasons:
        raise dg.Failure(f"{req.pair}: not submitting a paid Vertex job:\n{summarise_problems(reasons)}")
    job = req.vertex_job
    adir = layout.adapter_dir(req.pair, req.version)
    info = trainer.submit_or_find(
        pair=req.pair, job=job,
        train_uri=store.uri(layout.tuning_records(req.pair, "train")),
        validation_uri=store.uri(layout.tuning_records(req.pair, "validation")),
        output_uri=store.uri(f"{adir}/{layout.VERTEX_EXPORT}"), display_name=f"coursegpt-{req.pair}-{req.version}",
        store=store, log=context.log,
    )
    record = {"backend": req.backend, "pair": req.pair, "version": req.version, "data_version": req.data_version,
              "resource_name": info.resource_name, "state": info.state, "console_url": info.console_url,
              "output_uri": info.output_uri, "labels": dict(info.labels or {}), "hyperparameters": job.hyperparameters(),
              "vertex_job": asdict(job), "estimated_cost_usd": cost}
    record_uri = store.write_json(f"{adir}/{layout.JOB_RECORD}", record)
    yield dg.MaterializeResult(
        metadata={**job_metadata(info), "version": req.version, "backend": req.backend,
                  "estimated_cost_usd": float(cost), "job_record": uri_metadata(record_uri), "reused": False},
    )


@dg.asset(
    name="tuning_job",
    partitions_def=PAIR_PARTITIONS,
    deps=[dg.AssetDep("tuning_dataset")],
    group_name=GROUP,
    kinds={"pytorch", "vertexai"},
    owners=OWNERS,
    code_version="1",
    pool="gpu",  # local training holds the GPU; the instance's pool limit keeps a second one waiting
)
def tuning_job(context: dg.AssetExecutionContext, store: ArtifactStore, trainer: Trainer):
    """Trains the pair's LoRA adapter (TRL + PEFT in a Pipes subprocess) or submits its Vertex AI job.

    An adapter version that is already complete in the store is reused, not retrained.
    """
    req = _request(context, store, trainer)
    summary_key = layout.adapter_summary(req.pair, req.version)
    if store.exists(summary_key):
        context.log.info(f"{req.pair}: adapter {req.version} already exists ({store.uri(summary_key)}); not retraining")
        curve = stored_image(store, f"{layout.adapter_dir(req.pair, req.version)}/{layout.LOSS_CURVE_FILE}", LOSS_ALT)
        yield dg.MaterializeResult(metadata={**summary_metadata(store.read_json(summary_key)), "reused": True, **curve})
        return
    if req.backend == BACKEND_VERTEX:
        yield from _submit_vertex(context, store, trainer, req)
    else:
        yield from _train_local(context, store, trainer, req)


@dg.asset(
    name="adapter",
    partitions_def=PAIR_PARTITIONS,
    deps=[tuning_job],
    group_name=GROUP,
    kinds={"pytorch", "peft"},
    owners=OWNERS,
    code_version="1",
    check_specs=[dg.AssetCheckSpec(ADAPTER_CHECK, asset="adapter", blocking=True, partitions_def=PAIR_PARTITIONS,
                                   description="adapter_config.json and LoRA tensors match the plan")],
)
def adapter(context: dg.AssetExecutionContext, store: ArtifactStore, trainer: Trainer):
    """The pair's validated LoRA adapter folder; `adapters/<pair>/latest.json` points at it when it passes."""
    req = _request(context, store, trainer)
    adir = layout.adapter_dir(req.pair, req.version)
    if not store.exists(layout.adapter_summary(req.pair, req.version)):
        if req.backend != BACKEND_VERTEX:
            raise dg.Failure(f"{req.pair}: adapter {req.version} is not in {store.uri(adir)}; "
                             "materialise tuning_job for this pair first")
        collect_vertex_export(context, store, trainer, req, adir)
    summary = store.read_json(layout.adapter_summary(req.pair, req.version))
    folder = store.local_dir(adir, settings.current().home / "cache")
    hp = req.hyperparameters
    report = validate_adapter(folder, rank=hp["lora_rank"], target_modules=hp["target_modules"],
                              base_model_id=req.base_model_id, exact_targets=req.backend != BACKEND_VERTEX)
    metadata = {**summary_metadata(summary), "adapter_uri": uri_metadata(store.uri(adir)),
                "lora_tensors": report.lora_tensors, "adapter_bytes": report.size_bytes, **_loss_curve(folder)}
    if report.valid:
        metadata["latest"] = uri_metadata(store.write_json(layout.adapter_latest(req.pair), {"version": req.version}))
        context.log.info(f"{req.pair}: adapter {req.version} passed its check; latest.json points at it")
    else:
        context.log.error(f"{req.pair}: adapter {req.version} does not match the plan; latest.json unchanged")
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[dg.AssetCheckResult(
            check_name=ADAPTER_CHECK, passed=report.valid,
            description=summarise_problems(report.problems) if report.problems else "matches the plan",
            metadata={"problems": len(report.problems), "lora_tensors": report.lora_tensors,
                      "rank": report.rank or 0, "modules": dg.MetadataValue.json(report.modules)},
        )],
    )


ADAPTER_ASSETS = [tuning_job, adapter]

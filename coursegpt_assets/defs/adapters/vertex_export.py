"""Turning a finished Vertex AI tuning job into an adapter folder in the store.

The job was submitted with `output_uri = adapters/<pair>/<version>/vertex_export`; Vertex writes the PEFT
adapter somewhere below it (the layout is Vertex's). We find the folder holding `adapter_config.json` and
`adapter_model.safetensors`, copy its files up into `adapters/<pair>/<version>/`, name the base model by
its HF id, add the family chat template and write `training_summary.json` last. The summary records what
the job reported (tuned model, the endpoint Vertex deployed it to, start/end, tuningDataStats) and the
prompt format Vertex tuned on (the agent's `vertex_prompt_format`, checked against every train row's
`prompt`), so the endpoint is asked in that format at evaluation and the card states only what Vertex did.
"""

from __future__ import annotations

import json
import posixpath

import dagster as dg

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.base import matches_vertex_prompt_format
from coursegpt_assets.core import layout
from coursegpt_assets.core.chat_templates import family
from coursegpt_assets.defs.common import read_upstream
from coursegpt_assets.defs.common import uri as uri_metadata
from resources.storage import ArtifactStore

_ADAPTER_FILES = (layout.ADAPTER_CONFIG, layout.ADAPTER_WEIGHTS)


def job_metadata(info) -> dict:
    """Metadata for a tuning job: resource name, state, console URL, output URI (the sensor reads these)."""
    meta = {
        "resource_name": info.resource_name,
        "state": info.state,
        "console_url": dg.MetadataValue.url(info.console_url),
        "created": bool(info.created),
        "output_uri": uri_metadata(info.output_uri) if info.output_uri else "",
        "labels": dg.MetadataValue.json(dict(info.labels or {})),
    }
    if info.error:
        meta["error"] = info.error
    if info.create_time:
        meta["create_time"] = str(info.create_time)
    return meta


def find_export(keys: list[str]) -> str:
    """The folder (store key) among `keys` holding a complete PEFT adapter; `final` checkpoints win."""
    by_folder: dict[str, set[str]] = {}
    for key in keys:
        folder, name = posixpath.split(key)
        by_folder.setdefault(folder, set()).add(name)
    complete = sorted(f for f, names in by_folder.items() if set(_ADAPTER_FILES) <= names)
    if not complete:
        return ""
    finals = [f for f in complete if "final" in f.split("/")]
    return (finals or complete)[-1]


def tuned_prompt_format(store: ArtifactStore, req) -> tuple[str | None, str]:
    """The agent's Vertex prompt format when every train row's `prompt` (what Vertex tuned on) has it, else
    None; and a sentence saying which."""
    agent = get_agent(req.agent)
    fmt = getattr(agent, "vertex_prompt_format", None)
    if not fmt:
        return None, f"agent {req.agent} declares no vertex_prompt_format"
    key = layout.tuning_records(req.pair, "train")
    rows = 0
    for row in store.iter_jsonl(key):
        rows += 1
        if not matches_vertex_prompt_format(fmt, agent.system_prompt, str(row.get("prompt", ""))):
            return None, (f"{store.uri(key)} row {rows} (id {row.get('id')}) has a `prompt` not in agent "
                          f"{req.agent}'s vertex_prompt_format {fmt!r}")
    return fmt, f"every one of the {rows} train prompts has the format {fmt!r}"


def collect_vertex_export(context, store: ArtifactStore, trainer, req, adir: str) -> None:
    """Copy the succeeded job's adapter into `adir`; fail with Vertex's own message when it did not succeed."""
    record = read_upstream(store, f"{adir}/{layout.JOB_RECORD}", producer="tuning_job", partition=req.pair)
    info = trainer.get_job(record["resource_name"])
    if not info.is_terminal:
        raise dg.Failure(f"{req.pair}: Vertex job {info.resource_name} is still {info.state}; the adapter sensor "
                         f"launches this asset when it ends ({info.console_url})")
    info.raise_for_failure()
    export_prefix = f"{adir}/{layout.VERTEX_EXPORT}"
    keys = store.list_keys(export_prefix)
    folder = find_export(keys)
    if not folder:
        raise dg.Failure(f"{req.pair}: job {info.resource_name} succeeded but {store.uri(export_prefix)} holds no "
                         f"folder with {' and '.join(_ADAPTER_FILES)} ({len(keys)} objects found)")
    exported_base = None
    for key in (k for k in keys if posixpath.dirname(k) == folder):
        name = posixpath.basename(key)
        data = store.read_bytes(key)
        if name == layout.ADAPTER_CONFIG:
            config = json.loads(data)
            exported_base = config.get("base_model_name_or_path")
            config["base_model_name_or_path"] = req.base_model_id
            data = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
        store.write_bytes(f"{adir}/{name}", data)
    store.write_text(f"{adir}/{layout.CHAT_TEMPLATE_FILE}", family(req.family).template)
    manifest = store.read_json(layout.tuning_manifest(req.pair))
    prompt_format, prompt_check = tuned_prompt_format(store, req)
    if prompt_format is None:
        context.log.warning(f"{req.pair}: no Vertex prompt format recorded ({prompt_check}); a Vertex endpoint "
                            "cannot be asked in the format this adapter was tuned on")
    # what Vertex trained with (its job record), not the plan's local-only settings: the version ignores those
    hp = record.get("hyperparameters") or req.vertex_job.hyperparameters()
    summary = {
        "pair": req.pair, "agent": req.agent, "base_model": req.base_model, "base_model_id": req.base_model_id,
        "vertex_model_id": req.vertex_model_id, "exported_base_model": exported_base, "version": req.version,
        "data_version": req.data_version, "backend": "vertex", "device": "vertex-ai",
        "hardware": "Vertex AI managed tuning", "hyperparameters": hp,
        "vertex_job": record.get("vertex_job"),
        # Vertex reports no loss in the job; its step count and duration are the job's own
        "steps": info.data_stats.get("tuning_step_count"), "final_loss": None,
        "wall_time_s": info.duration_s, "tokens_per_second": None,
        "train_examples": manifest.get("counts", {}).get("train"),
        "validation_examples": manifest.get("counts", {}).get("validation"),
        "smoke": req.smoke, "resource_name": info.resource_name, "console_url": info.console_url,
        "export_uri": store.uri(folder), "job_create_time": info.create_time,
        "job_start_time": info.start_time, "job_end_time": info.end_time,
        "tuned_model": info.tuned_model or None, "endpoint": info.endpoint or None,
        "experiment": info.experiment or None, "vertex_data_stats": dict(info.data_stats),
        "vertex_prompt_format": prompt_format, "vertex_prompt_check": prompt_check,
    }
    store.write_json(f"{adir}/{layout.SUMMARY_FILE}", summary)
    job_meta = {key: summary[key] for key in ("resource_name", "tuned_model", "endpoint") if summary[key]}
    context.add_output_metadata({**job_meta, "console_url": dg.MetadataValue.url(info.console_url)},
                                output_name=context.assets_def.get_output_name_for_asset_key(context.asset_key))
    where = f"; Vertex deployed it to {info.endpoint}" if info.endpoint else "; Vertex names no endpoint serving it"
    context.log.info(f"{req.pair}: copied the Vertex adapter from {store.uri(folder)} into {store.uri(adir)}{where}")

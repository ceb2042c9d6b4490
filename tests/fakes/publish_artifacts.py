"""Writes the upstream artifacts the publishing assets read, shaped as the real assets write them.

The evaluation report is scored for real: the router fixture's records are the gold, and the
predictions are those records with some plans truncated and some rows broken, run through the
project's router scorer. Adapter files are small but genuine formats (safetensors, PNG, JSON), and
adapter_config.json records an absolute local base-model path the way PEFT does after local training.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from safetensors.numpy import save as save_safetensors

from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.scoring.router_plans import ROUTER_KEYS
from coursegpt_assets.scoring.router_report import score_router
from resources.storage import ArtifactStore

ADAPTER_VERSION = "20261124T101500Z-3f2a9c"
REPORT_VERSION = "20261124T103000Z-b71e02"
HEADLINE = ("json_valid", "route_plan_exact", "route_tool_precision", "route_tool_recall", "todo_tool_alignment")


def _png(width: int = 4, height: int = 3) -> bytes:
    """A valid grey PNG (what a loss-curve plot file is, minus the plot)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes([128]) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def router_records(limit: int = 40) -> list[dict]:
    """Well-formed router fixture records (the fixture also holds deliberately broken lines)."""
    rows = []
    for line in (FIXTURES_DIR / "router.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and all(isinstance(row.get(k), (list, str, dict)) for k in ROUTER_KEYS):
            rows.append(row)
    return rows[:limit]


def scored_router_report(pair: str, adapter_version: str = ADAPTER_VERSION) -> tuple[dict, str]:
    """A router report.json / report.md from real scoring of imperfect predictions."""
    golds = [{k: r[k] for k in ROUTER_KEYS} for r in router_records()]
    predictions: list = []
    for i, gold in enumerate(golds):
        pred = dict(gold)
        if i % 4 == 1:
            pred["route_plan"] = gold["route_plan"][:-1]
        if i % 7 == 3:
            predictions.append({"completion": json.dumps(pred)[:-5]})  # truncated generation: invalid JSON
            continue
        predictions.append({"completion": json.dumps(pred)})
    scored = score_router(golds, predictions, thresholds={})
    metrics = scored["metrics"]
    agent, base_model = pair.split("__")
    report = {
        "pair": pair, "agent": agent, "base_model": base_model, "adapter_version": adapter_version,
        "benchmark_version": "bench-5d41402a", "metrics": metrics,
        "headline": {m: metrics["overall"][m] for m in HEADLINE},
        "thresholds": scored["thresholds"],
        "inference": {"backend": "local", "max_new_tokens": 64, "samples": len(golds)},
    }
    lines = [f"# Evaluation report: {pair}", ""]
    for bucket, values in metrics.items():
        lines += [f"## {bucket} ({values['samples']} samples)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in values.items() if k != "samples" and isinstance(v, float)]
        lines.append("")
    return report, "\n".join(lines)


def training_summary(pair: str, base_dir: str, **overrides) -> dict:
    plan = default_plan()
    agent, base_model = pair.split("__")
    smoke = plan.base_models[base_model].smoke
    hp = plan.hyperparameters.model_dump(mode="json")
    if smoke:
        hp.update({k: v for k, v in plan.smoke.model_dump().items() if k in hp})
    summary = {
        "pair": pair, "agent": agent, "base_model": base_model, "base_model_id": base_dir,
        "version": ADAPTER_VERSION, "data_version": "9f86d081884c7d65", "backend": "trl",
        "device": "cpu", "hardware": "2 vCPU x86_64, 24 GiB RAM", "hyperparameters": hp,
        "steps": 16, "final_loss": 4.8612, "wall_time_s": 12.7, "train_examples": 64,
        "validation_examples": 16, "smoke": smoke,
    }
    summary.update(overrides)
    return summary


VERTEX_JOB = "projects/coursegpt-prod/locations/us-central1/tuningJobs/7000000000000000123"
VERTEX_DATA_STATS = {"tuning_dataset_example_count": 6962, "tuning_step_count": 870,
                     "total_billable_token_count": 5123456, "total_tuning_character_count": 20493824,
                     "total_billable_character_count": 20493824, "total_truncated_example_count": 3}


def vertex_training_summary(pair: str, *, data_stats: dict | None = None, **overrides) -> dict:
    """A Vertex adapter's training_summary.json as collect_vertex_export writes it: the settings Vertex
    received (no local-only ones), the job's names and times, and what the job reported (`data_stats`)."""
    from coursegpt_assets.agents import get_agent
    from coursegpt_assets.training.spec import vertex_job

    plan = default_plan()
    agent, base_model = pair.split("__")
    base = plan.base_models[base_model]
    job = vertex_job(pair, base.vertex_id, plan.hyperparameters.model_dump(),
                     {"sha256": {"train": "a" * 64, "validation": "b" * 64}})
    base_uri = VERTEX_JOB.split("/tuningJobs/")[0]
    summary = {
        "pair": pair, "agent": agent, "base_model": base_model, "base_model_id": base.hf_id,
        "vertex_model_id": base.vertex_id, "exported_base_model": "gs://vertex-model-garden/llama3_1/8b",
        "version": job.key, "data_version": "9f86d081884c7d65", "backend": "vertex", "device": "vertex-ai",
        "hardware": "Vertex AI managed tuning", "hyperparameters": job.hyperparameters(),
        "vertex_job": {**job.hyperparameters(), "train_sha256": job.train_sha256,
                       "validation_sha256": job.validation_sha256},
        "steps": (data_stats or {}).get("tuning_step_count"), "final_loss": None, "wall_time_s": 10812.0,
        "tokens_per_second": None, "train_examples": 6962, "validation_examples": 818, "smoke": False,
        "resource_name": VERTEX_JOB,
        "console_url": "https://console.cloud.google.com/vertex-ai/generative/language/locations/us-central1"
                       "/tuning/tuningJob/7000000000000000123?project=coursegpt-prod",
        "export_uri": "gs://coursegpt/adapters/x/vertex_export/postprocess/node-0/checkpoints/final",
        "job_create_time": "2026-11-24T07:00:00+00:00", "job_start_time": "2026-11-24T07:00:05+00:00",
        "job_end_time": "2026-11-24T10:00:17+00:00", "tuned_model": f"{base_uri}/models/123@1",
        "endpoint": f"{base_uri}/endpoints/456", "experiment": None,
        "vertex_data_stats": dict(data_stats or {}),
        "vertex_prompt_format": get_agent(agent).vertex_prompt_format, "vertex_prompt_check": "checked",
    }
    summary.update(overrides)
    return summary


#: the commit a real `hf://` read of the plan's dataset would have recorded (dataset_splits' source_revision)
DATASET_REVISION = "3f9c2a7d1e5b8c0a4d6e2f1b9a7c5e3d1f0b2a4c"


def splits_manifest(agent: str, *, from_fixture: bool = False) -> dict:
    """The seed's split counts, read from the plan's Hub dataset at DATASET_REVISION (or from the shipped
    fixture, as the local default reads it)."""
    read = {"source": str(FIXTURES_DIR / f"{agent}.jsonl")} if from_fixture else {
        "source": f"hf://{default_plan().agents[agent].source}", "source_revision": DATASET_REVISION}
    return {
        "agent": agent, "counts": {"train": 6962, "validation": 818, "test": 409}, "seed": 42,
        "content_hash": "e3b0c44298fc1c149afbf4c8996fb924", **read,
        "ratios": {"validation": 0.1, "test": 0.05},
    }


def tuning_manifest(pair: str) -> dict:
    agent, base_model = pair.split("__")
    return {
        "pair": pair, "agent": agent, "base_model": base_model,
        "family": default_plan().base_models[base_model].family,
        "counts": {"train": 6962, "validation": 818}, "sha256": {"train": "a" * 64, "validation": "b" * 64},
        "data_version": "9f86d081884c7d65", "chat_template": "{{ messages }}", "token_estimate": {},
    }


def write_upstream(store: ArtifactStore, pair: str, *, base_dir: str | None = None,
                   summary_overrides: dict | None = None, report_adapter_version: str | None = None) -> dict:
    """Write every artifact model_card and published_adapter read; returns what was written. `base_dir`
    is the local folder the base model was loaded from (default /tmp/coursegpt/base/<base_model>)."""
    agent, base_model = pair.split("__")
    base_dir = base_dir or f"/tmp/coursegpt/base/{base_model}"
    store.write_json(layout.splits_manifest(agent), splits_manifest(agent))
    store.write_json(layout.tuning_manifest(pair), tuning_manifest(pair))
    adapter_key = layout.adapter_dir(pair, ADAPTER_VERSION)
    weights = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.full((16, 64), 0.01, np.float32),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": np.zeros((64, 16), np.float32),
    }
    store.write_bytes(f"{adapter_key}/adapter_model.safetensors", save_safetensors(weights))
    store.write_json(f"{adapter_key}/adapter_config.json", {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"], "base_model_name_or_path": base_dir,
    })
    vocab = {"a": 0, "/home": 1, "/tmp/": 2, "hf_": 3}  # real BPE vocabularies hold such tokens
    store.write_json(f"{adapter_key}/tokenizer.json", {"version": "1.0", "model": {"type": "BPE", "vocab": vocab}})
    store.write_json(f"{adapter_key}/tokenizer_config.json", {
        "bos_token": "<|bos|>", "eos_token": "<|eos|>", "name_or_path": base_dir,
        "tokenizer_class": "PreTrainedTokenizerFast",
    })
    store.write_text(f"{adapter_key}/chat_template.jinja", "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    store.write_bytes(f"{adapter_key}/loss_curve.png", _png())
    summary = training_summary(pair, base_dir, **(summary_overrides or {}))
    store.write_json(f"{adapter_key}/training_summary.json", summary)
    store.write_json(layout.adapter_latest(pair), {"version": ADAPTER_VERSION})
    report, report_md = scored_router_report(pair, report_adapter_version or ADAPTER_VERSION)
    report_key = layout.report_dir(pair, REPORT_VERSION)
    store.write_text(f"{report_key}/report.md", report_md)
    store.write_json(f"{report_key}/report.json", report)
    store.write_json(layout.report_latest(pair), {"version": REPORT_VERSION})
    return {"summary": summary, "report": report, "report_md": report_md, "adapter_key": adapter_key}


def adapter_file(store: ArtifactStore, pair: str, name: str) -> bytes:
    return Path(store.uri(f"{layout.adapter_dir(pair, ADAPTER_VERSION)}/{name}")).read_bytes()

"""What one adapter is made of: effective hyperparameters per pair and the version derived from its inputs.

A locally trained (TRL) adapter's version hashes the tuning data version, every hyperparameter, the base
model (and, for the local tiny build, its build hash) and the backend. A Vertex AI adapter's version is the
identity of its tuning job (`VertexJob`): only what `vertexai.tuning.sft.train` receives, so a setting
Vertex never sees (batch size, the local learning rate, dropout...) names no new folder and pays for no
new job. Either way an unchanged input maps to an existing adapter folder and is never trained twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from coursegpt_assets.core.plan import BaseModelSpec, TrainingPlan

VERSION_FORMAT = 1
VERTEX_JOB_FORMAT = 1
BACKEND_LOCAL = "trl"
BACKEND_VERTEX = "vertex"
VERTEX_TUNING_MODE = "PEFT_ADAPTER"
#: smoke settings that replace the plan's hyperparameters for smoke base models
_SMOKE_OVERRIDES = ("epochs", "batch_size", "gradient_accumulation_steps", "max_length", "logging_steps")


def effective_hyperparameters(plan: TrainingPlan, pair_key: str) -> dict:
    """The hyperparameters a pair actually trains with: the plan's, with the smoke tier for smoke models.

    `max_length` never exceeds the base model's own context; `max_train_examples` / `max_eval_examples`
    are None (all rows) except for smoke models.
    """
    base = plan.base_model_for(pair_key)
    hp = plan.hyperparameters.model_dump()
    hp["target_modules"] = list(hp["target_modules"])
    hp["max_train_examples"] = None
    hp["max_eval_examples"] = None
    if base.smoke:
        smoke = plan.smoke.model_dump()
        for key in _SMOKE_OVERRIDES:
            hp[key] = smoke[key]
        hp["max_train_examples"] = smoke["max_train_examples"]
        hp["max_eval_examples"] = smoke["max_eval_examples"]
        if smoke["learning_rate"] is not None:
            hp["learning_rate"] = smoke["learning_rate"]
    hp["max_length"] = min(hp["max_length"], base.max_length)
    return hp


def backend_for(base: BaseModelSpec, *, gcp: bool) -> str:
    """Who trains a base model: Vertex AI in the gcp environment when the model has a Vertex id, else TRL
    on this machine. The trainer resources, `coursegpt run` and the cost guard all decide with this."""
    return BACKEND_VERTEX if gcp and base.vertex_id else BACKEND_LOCAL


@dataclass(frozen=True)
class VertexJob:
    """Everything a Vertex AI tuning job receives that decides what it trains, and nothing else.

    `sft.train` is given the source model, the train and validation files, the tuning mode, epochs, the
    learning-rate multiplier and the adapter size; the files are named here by the sha256 of their bytes
    (the tuning manifest's), not by their URI. Its display name, labels and output URI are derived from
    `key`, so they add nothing. The job's labels, the adapter version and the submission lease all use `key`.
    """

    source_model: str
    train_sha256: str
    validation_sha256: str
    epochs: int
    learning_rate_multiplier: float
    adapter_size: int
    tuning_mode: str = VERTEX_TUNING_MODE

    @property
    def key(self) -> str:
        """A short stable hash of every field: the job's identity."""
        blob = json.dumps({"format": VERTEX_JOB_FORMAT, **asdict(self)}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def hyperparameters(self) -> dict:
        """What the job trains with, as the job record and the adapter's training summary state it."""
        return {k: v for k, v in asdict(self).items() if k not in ("train_sha256", "validation_sha256")}


def vertex_settings(vertex_model_id: str, hyperparameters: dict) -> dict:
    """The part of a VertexJob the plan decides: the model, and the only three settings Vertex takes."""
    return {"source_model": vertex_model_id, "tuning_mode": VERTEX_TUNING_MODE,
            "epochs": int(hyperparameters["epochs"]),
            "learning_rate_multiplier": float(hyperparameters["learning_rate_multiplier"]),
            "adapter_size": int(hyperparameters["lora_rank"])}


def vertex_job(pair_key: str, vertex_model_id: str, hyperparameters: dict, manifest: dict) -> VertexJob:
    """The Vertex job for a pair: its plan settings and the sha256 of the tuning files Vertex reads."""
    digests = manifest.get("sha256") or {}
    missing = [split for split in ("train", "validation") if not digests.get(split)]
    if missing:
        raise ValueError(f"tuning/{pair_key}/manifest.json has no sha256 for {', '.join(missing)}; "
                         "re-materialise tuning_dataset")
    return VertexJob(train_sha256=digests["train"], validation_sha256=digests["validation"],
                     **vertex_settings(vertex_model_id, hyperparameters))


def adapter_version(
    *, data_version: str, hyperparameters: dict, base_model_id: str, base_revision: str, backend: str
) -> str:
    """A short stable hash naming a locally trained adapter's `adapters/<pair>/<version>/`."""
    inputs = {
        "format": VERSION_FORMAT,
        "data_version": data_version,
        "hyperparameters": hyperparameters,
        "base_model_id": base_model_id,
        "base_revision": base_revision,
        "backend": backend,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AdapterRequest:
    """Everything that names and configures one adapter of one pair."""

    pair: str
    agent: str
    base_model: str
    family: str
    base_model_id: str
    vertex_model_id: str | None
    base_revision: str
    hyperparameters: dict
    data_version: str
    backend: str
    smoke: bool
    version: str
    vertex_job: VertexJob | None = None  # set when backend is BACKEND_VERTEX


def adapter_request(plan: TrainingPlan, pair_key: str, manifest: dict, backend: str) -> AdapterRequest:
    """The request for `pair_key` from its tuning manifest (`tuning/<pair>/manifest.json`)."""
    from coursegpt_assets.training.tiny_llama import base_model_revision

    pair = plan.pair(pair_key)
    base = plan.base_models[pair.base_model]
    data_version = manifest.get("data_version")
    if not data_version:
        raise ValueError(f"tuning/{pair_key}/manifest.json has no data_version; re-materialise tuning_dataset")
    hyperparameters = effective_hyperparameters(plan, pair_key)
    revision = base_model_revision(pair.base_model, plan)
    job = None
    if backend == BACKEND_VERTEX:
        if not base.vertex_id:
            raise ValueError(f"{pair_key}: {pair.base_model} has no vertex_id in the training plan; "
                             "it cannot be tuned on Vertex AI")
        job = vertex_job(pair_key, base.vertex_id, hyperparameters, manifest)
        version = job.key
    else:
        version = adapter_version(
            data_version=data_version,
            hyperparameters=hyperparameters,
            base_model_id=base.hf_id,
            base_revision=revision,
            backend=backend,
        )
    return AdapterRequest(
        pair=pair_key,
        agent=pair.agent,
        base_model=pair.base_model,
        family=base.family,
        base_model_id=base.hf_id,
        vertex_model_id=base.vertex_id,
        base_revision=revision,
        hyperparameters=hyperparameters,
        data_version=data_version,
        backend=backend,
        smoke=base.smoke,
        version=version,
        vertex_job=job,
    )

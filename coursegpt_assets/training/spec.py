"""What one adapter is made of: effective hyperparameters per pair and the version derived from its inputs.

The version hashes the tuning data version, every hyperparameter, the base model (and, for the local
tiny build, its build hash) and the backend, so an unchanged input maps to an existing adapter folder
and is never trained twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from coursegpt_assets.core.plan import TrainingPlan

VERSION_FORMAT = 1
BACKEND_LOCAL = "trl"
BACKEND_VERTEX = "vertex"
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


def adapter_version(
    *, data_version: str, hyperparameters: dict, base_model_id: str, base_revision: str, backend: str
) -> str:
    """A short stable hash naming `adapters/<pair>/<version>/`."""
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
    )

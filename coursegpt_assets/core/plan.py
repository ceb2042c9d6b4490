"""Reads and validates `training_plan.yaml`: agents, base models, planned pairs and hyperparameters.

Everything partitioned in the platform is derived from this file, so a bad key fails loudly at load
with the dotted path of the key and what is wrong with it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coursegpt_assets.core.chat_templates import FAMILIES
from coursegpt_assets.core.names import PAIR_SEPARATOR, pair_key

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PLAN_PATH = PROJECT_ROOT / "training_plan.yaml"
#: where an agent's module is looked up when its plan entry names none: `<package>.<agent name>`
DEFAULT_AGENT_PACKAGE = "coursegpt_assets.agents"


class StrictModel(BaseModel):
    """A user-edited YAML section: unknown keys are errors (a typo must not pass silently), values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitRatios(StrictModel):
    validation: float = Field(ge=0, lt=1)
    test: float = Field(ge=0, lt=1)


class AgentSpec(StrictModel):
    description: str
    source: str
    source_license: str = "unknown"
    pipeline_tag: str = "text-generation"
    splits: SplitRatios
    max_invalid_share: float = Field(default=0.05, ge=0, le=1)
    subset_size: int | None = Field(default=None, gt=0)
    module: str | None = Field(
        default=None, pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$",
        description=f"dotted import path of the module whose AGENT implements the agent "
                    f"(default: {DEFAULT_AGENT_PACKAGE}.<agent name>)")


class BaseModelSpec(StrictModel):
    hf_id: str
    vertex_id: str | None = None
    family: str
    license: str
    max_length: int = Field(gt=0)
    vram_class: str = "unknown"
    smoke: bool = False
    local_tokens_per_second: float | None = Field(
        default=None, gt=0, description="training throughput on this machine; estimates a local run's duration")
    vertex_base_endpoint: str | None = Field(
        default=None, pattern=r"^(\d+|projects/[^/\s]+/locations/[^/\s]+/endpoints/[^/\s]+)$",
        description="Vertex AI endpoint serving the base model itself (an endpoint id or "
                    "projects/<p>/locations/<l>/endpoints/<id>): a Vertex pair's report scores the base model "
                    "there; unset, the base model is reported as not measured")

    @model_validator(mode="after")
    def _known_family(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family {self.family!r} is not one of {sorted(FAMILIES)}")
        return self


class Hyperparameters(StrictModel):
    lora_rank: int = Field(gt=0)
    lora_alpha: int = Field(gt=0)
    lora_dropout: float = Field(ge=0, lt=1)
    target_modules: tuple[str, ...]
    epochs: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    learning_rate_multiplier: float = Field(gt=0)
    warmup_ratio: float = Field(ge=0, lt=1)
    batch_size: int = Field(gt=0)
    gradient_accumulation_steps: int = Field(gt=0)
    max_length: int = Field(gt=0)
    logging_steps: int = Field(gt=0)
    seed: int


class SmokeSettings(StrictModel):
    max_train_examples: int = Field(gt=0)
    max_eval_examples: int = Field(gt=0)
    benchmark_subset_rows: int = Field(
        gt=0, description="rows a smoke model answers from each benchmark source (a seeded subset of each)")
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    gradient_accumulation_steps: int = Field(gt=0)
    max_length: int = Field(gt=0)
    logging_steps: int = Field(gt=0)
    max_new_tokens: int = Field(gt=0)
    learning_rate: float | None = Field(
        default=None, gt=0, description="replaces hyperparameters.learning_rate for smoke models (few steps)")
    max_perplexity_rows: int = Field(
        default=16, gt=0, description="held-out rows whose perplexity a smoke model's report measures (seeded)")


class CostSettings(StrictModel):
    price_per_million_tokens_usd: float = Field(ge=0)
    budget_usd: float = Field(ge=0)
    min_train_rows: int = Field(
        default=500, ge=0, description="a paid tuning job needs at least this many train rows (not fixture data)")


class Pair(StrictModel):
    agent: str
    base_model: str

    @property
    def key(self) -> str:
        return pair_key(self.agent, self.base_model)


class TrainingPlan(StrictModel):
    license: str
    hub_organization: str
    agents: dict[str, AgentSpec]
    base_models: dict[str, BaseModelSpec]
    pairs: dict[str, tuple[str, ...]]
    hyperparameters: Hyperparameters
    smoke: SmokeSettings
    cost: CostSettings

    @model_validator(mode="after")
    def _pairs_reference_known_keys(self):
        for agent, models in self.pairs.items():
            if agent not in self.agents:
                raise ValueError(f"pairs.{agent}: unknown agent (agents: {sorted(self.agents)})")
            for model in models:
                if model not in self.base_models:
                    raise ValueError(
                        f"pairs.{agent}: unknown base model {model!r} (base_models: {sorted(self.base_models)})"
                    )
        for name in [*self.agents, *self.base_models]:
            if PAIR_SEPARATOR in name or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"{name!r}: names may hold letters, digits, '-' and single '_' only")
        return self

    # -- derived views -------------------------------------------------------------------------------
    @property
    def agent_names(self) -> list[str]:
        return list(self.agents)

    def agent_module(self, name: str) -> str:
        """The dotted path of the module that defines agent `name` (its `AGENT`)."""
        return self.agents[name].module or f"{DEFAULT_AGENT_PACKAGE}.{name}"

    @property
    def planned_pairs(self) -> list[Pair]:
        return [Pair(agent=a, base_model=m) for a, models in self.pairs.items() for m in models]

    @property
    def pair_keys(self) -> list[str]:
        return [p.key for p in self.planned_pairs]

    def pair(self, key: str) -> Pair:
        for p in self.planned_pairs:
            if p.key == key:
                return p
        raise KeyError(f"{key!r} is not a planned pair; planned: {self.pair_keys}")

    def base_model_for(self, pair_key: str) -> BaseModelSpec:
        return self.base_models[self.pair(pair_key).base_model]

    def is_smoke(self, pair_key: str) -> bool:
        return self.base_model_for(pair_key).smoke


class PlanError(ValueError):
    """The training plan file is missing or invalid; the message names the file and the key."""


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid training plan"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"] if e["type"] != "extra_forbidden" else "unknown key"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def plan_file() -> Path:
    """COURSEGPT_PLAN when set (relative to the working directory), else the repository's training_plan.yaml.
    Every reader of the plan goes through here: load_plan, default_plan and Settings.plan."""
    return Path(os.environ.get("COURSEGPT_PLAN", "").strip() or DEFAULT_PLAN_PATH).expanduser()


def load_plan(path: str | os.PathLike | None = None) -> TrainingPlan:
    plan_path = Path(path) if path else plan_file()
    try:
        raw = yaml.safe_load(plan_path.read_text())
    except FileNotFoundError:
        raise PlanError(f"{plan_path}: training plan not found (set COURSEGPT_PLAN or restore the file)") from None
    except yaml.YAMLError as e:
        raise PlanError(f"{plan_path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise PlanError(f"{plan_path}: expected a mapping at the top level")
    try:
        return TrainingPlan.model_validate(raw)
    except ValidationError as e:
        raise PlanError(_format_error(plan_path, e)) from None


@lru_cache(maxsize=1)
def default_plan() -> TrainingPlan:
    return load_plan()

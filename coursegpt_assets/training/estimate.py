"""What training a pair will take before it runs: dollars on Vertex AI, time on this machine.

The blocking `tuning_cost_within_budget` check, `coursegpt plan` and `coursegpt run --dry-run` all ask this
module, so they agree. Only a pair tuned on Vertex AI (`spec.backend_for`: the gcp environment and a Vertex
model id) is priced and held to `cost.budget_usd`. A pair trained locally costs nothing; its estimate is a
duration: the tokens one local epoch trains × epochs / a local throughput in tokens per second, taken from

1. the pair's latest local training run (`tokens_per_second` in its `training_summary.json`: measured by
   the training child, as a rule on this machine), else
2. `base_models.<model>.local_tokens_per_second` in the plan (the shipped tiny-llama figure is what
   bench/train_throughput.py measured on 2 CPU cores; see bench/README.md), else
3. nothing: the duration is unknown and the estimate says how to get a figure.

Tokens are core.tokens's estimate (UTF-8 bytes / 4), not a tokenizer's count, so a duration is a guide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import TrainingPlan
from coursegpt_assets.core.tokens import estimated_cost_usd
from coursegpt_assets.training.spec import (
    BACKEND_LOCAL,
    BACKEND_VERTEX,
    backend_for,
    effective_hyperparameters,
)

THROUGHPUT_HINT = "set base_models.{model}.local_tokens_per_second in the training plan (bench/train_throughput.py measures it)"


@dataclass(frozen=True)
class Throughput:
    tokens_per_second: float
    source: str  # where the figure comes from, shown beside every duration


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return "<1 min"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@dataclass(frozen=True)
class TrainingEstimate:
    pair: str
    model: str
    backend: str
    train_tokens: int  # every train row, estimated: what Vertex bills per epoch
    local_tokens: int  # what one local epoch trains (rows over max_length and past a smoke cap left out)
    epochs: int
    cost_usd: float  # 0.0 unless the pair is tuned on Vertex AI
    budget_usd: float
    throughput: Throughput | None = None

    @property
    def paid(self) -> bool:
        return self.backend == BACKEND_VERTEX

    @property
    def within_budget(self) -> bool:
        return not self.paid or self.cost_usd <= self.budget_usd

    @property
    def local_seconds(self) -> float | None:
        if self.paid or self.throughput is None:
            return None
        return self.local_tokens * self.epochs / self.throughput.tokens_per_second

    def headline(self) -> str:
        """The estimate in a few words, for tables: `$12.34`, `$612.00 OVER budget`, `12 min local`."""
        if self.paid:
            return f"${self.cost_usd:,.2f}" + ("" if self.within_budget else " OVER budget")
        seconds = self.local_seconds
        return f"{format_duration(seconds)} local" if seconds is not None else "local, time unknown"

    def basis(self) -> str:
        """What the headline is computed from, briefly."""
        if self.paid:
            return f"{self.train_tokens:,} tokens × {self.epochs} epochs at the Vertex price"
        if self.throughput is None:
            return f"{self.local_tokens:,} tokens × {self.epochs} epochs; " + THROUGHPUT_HINT.format(model=self.model)
        return (f"{self.local_tokens:,} tokens × {self.epochs} epochs / {self.throughput.tokens_per_second:,.0f} "
                f"tokens/s ({self.throughput.source})")

    def describe(self) -> str:
        """One sentence for the check's description."""
        if self.paid:
            return (f"estimated ${self.cost_usd:,.2f} for {self.train_tokens:,} train tokens × {self.epochs} epochs "
                    f"{'within' if self.within_budget else 'OVER'} the ${self.budget_usd:,.2f} budget "
                    "(training_plan.yaml cost.budget_usd)")
        seconds = self.local_seconds
        took = "time unknown" if seconds is None else f"about {format_duration(seconds)}"
        return f"trained locally ({self.backend}), no cloud cost; {took}: {self.basis()}"

    def metadata(self) -> dict:
        """Plain numbers and strings (the check wraps nothing): what a user plots or reads."""
        meta: dict = {"backend": self.backend, "estimated_cost_usd": float(self.cost_usd),
                      "budget_usd": float(self.budget_usd), "estimated_train_tokens": self.train_tokens,
                      "epochs": self.epochs}
        if not self.paid:
            meta["local_train_tokens"] = self.local_tokens
            if self.throughput is not None:
                meta["estimated_local_training_s"] = float(self.local_seconds)
                meta["local_tokens_per_second"] = float(self.throughput.tokens_per_second)
                meta["throughput_source"] = self.throughput.source
        return meta


def measured_throughput(read_json: Callable[[str], dict], pair: str) -> Throughput | None:
    """Tokens per second of the pair's latest local training run, from the store (`store.read_json`)."""
    try:
        version = read_json(layout.adapter_latest(pair)).get("version")
        summary = read_json(layout.adapter_summary(pair, version)) if version else {}
    except FileNotFoundError:
        return None
    tps = summary.get("tokens_per_second")
    if summary.get("backend") != BACKEND_LOCAL or not isinstance(tps, int | float) or tps <= 0:
        return None
    return Throughput(float(tps), f"measured by {pair}'s training run {version}")


def training_estimate(plan: TrainingPlan, pair: str, *, gcp: bool, train_tokens: int, local_tokens: int,
                      measured: Throughput | None = None) -> TrainingEstimate:
    """The estimate for `pair` in this environment (`gcp`: COURSEGPT_ENV=gcp)."""
    model = plan.pair(pair).base_model
    base = plan.base_models[model]
    backend = backend_for(base, gcp=gcp)
    epochs = effective_hyperparameters(plan, pair)["epochs"]
    paid = backend == BACKEND_VERTEX
    throughput = measured
    if throughput is None and base.local_tokens_per_second:
        throughput = Throughput(base.local_tokens_per_second,
                                f"training_plan.yaml base_models.{model}.local_tokens_per_second")
    return TrainingEstimate(
        pair=pair, model=model, backend=backend, train_tokens=train_tokens, local_tokens=local_tokens, epochs=epochs,
        cost_usd=estimated_cost_usd(train_tokens, epochs, plan.cost.price_per_million_tokens_usd) if paid else 0.0,
        budget_usd=plan.cost.budget_usd, throughput=None if paid else throughput,
    )

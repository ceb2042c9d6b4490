"""Blocking checks on `tuning_dataset` that gate training, above all a paid Vertex AI job.

- `tuning_data_trainable`: every row is valid JSON with non-empty prompt/completion (and rendered
  text), its completion holds the family's end-of-turn token, and no row exceeds the base model's
  context (estimated tokens). Smoke models pass with a note: the local child leaves over-long rows out.
- `tuning_cost_within_budget`: for a pair tuned on Vertex AI (gcp environment and a Vertex model id),
  estimated tokens × epochs × plan.cost.price_per_million_tokens_usd stays below plan.cost.budget_usd. A
  pair trained locally costs nothing and passes with an estimate of its training time instead
  (training/estimate.py says where the throughput comes from).
- `paid_job_data_is_real`: a Vertex pair's data is named (not the shipped fixture) and has at least
  plan.cost.min_train_rows train rows.
All three are one multi-check step, so the length and cost checks share one streamed read of the data.
The `tuning_job` asset runs the same report before submitting to Vertex, so a run that skips the checks
still cannot pay for bad data.
"""


import warnings

import dagster as dg

from coursegpt_assets.core import layout, settings
from coursegpt_assets.core.chat_templates import family
from coursegpt_assets.core.plan import TrainingPlan, default_plan
from coursegpt_assets.core.tokens import estimated_cost_usd
from coursegpt_assets.defs.common import read_upstream
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS
from coursegpt_assets.training.estimate import TrainingEstimate, measured_throughput, training_estimate
from coursegpt_assets.training.spec import BACKEND_VERTEX, backend_for, effective_hyperparameters
from coursegpt_assets.training.validation import (
    TuningDataReport,
    inspect_rows,
    paid_data_problems,
    summarise_problems,
)
from resources.storage import ArtifactStore, StoreError


def tuning_data_report(store: ArtifactStore, plan: TrainingPlan, pair: str) -> TuningDataReport:
    """Inspect both tuning splits of `pair`, streamed (one row in memory at a time); training tokens are
    counted on the train split only. A split that cannot be read adds its problem and nothing else."""
    base = plan.base_model_for(pair)
    hp = effective_hyperparameters(plan, pair)
    end_of_turn = family(base.family).end_of_turn
    report = TuningDataReport()
    for split in layout.TUNING_SPLITS:
        key = layout.tuning_records(pair, split)
        try:
            part = inspect_rows(
                enumerate(store.iter_jsonl(key), start=1),
                source=store.uri(key),
                end_of_turn=end_of_turn,
                model_max_length=base.max_length,
                training_max_length=hp["max_length"],
                count_tokens=split == "train",
                local_max_examples=hp["max_train_examples"],
            )
        except (StoreError, FileNotFoundError) as e:
            report.problems.append(str(e))
            continue
        _merge(report, part)
    return report


def _merge(report: TuningDataReport, part: TuningDataReport) -> None:
    report.rows += part.rows
    report.problems += part.problems
    report.over_model_length += part.over_model_length
    report.over_training_length += part.over_training_length
    report.max_tokens = max(report.max_tokens, part.max_tokens)
    report.train_tokens += part.train_tokens
    report.local_train_tokens += part.local_train_tokens
    report.local_train_rows += part.local_train_rows


def cost_of(report: TuningDataReport, plan: TrainingPlan, pair: str) -> float:
    epochs = effective_hyperparameters(plan, pair)["epochs"]
    return estimated_cost_usd(report.train_tokens, epochs, plan.cost.price_per_million_tokens_usd)


TRAINABLE, COST, PAID = "tuning_data_trainable", "tuning_cost_within_budget", "paid_job_data_is_real"
_DESCRIPTIONS = {
    TRAINABLE: "Valid JSONL, non-empty prompt/completion with the end-of-turn token, within the model's context.",
    COST: "A pair tuned on Vertex AI: estimated cost (train tokens × epochs × price per 1M tokens) below "
          "the plan's budget. A pair trained locally: no cost, an estimate of its training time.",
    PAID: "A pair tuned on Vertex AI trains on named, real data: not the shipped fixture, and at least "
          "cost.min_train_rows train rows. A pair trained locally passes (no paid job).",
}


def trainable_result(report: TuningDataReport, plan: TrainingPlan, pair: str) -> dg.AssetCheckResult:
    base = plan.base_model_for(pair)
    over = report.over_model_length
    problems = list(report.problems)
    if report.rows == 0 and not problems:
        problems.append(f"{pair}: the tuning data has no rows")
    if over and not base.smoke:
        problems.append(f"{pair}: {over} rows exceed {base.hf_id}'s context of {base.max_length} tokens (estimated)")
    passed = not problems
    description = summarise_problems(problems) if problems else f"{report.rows} rows fit to train"
    if passed and (over or report.over_training_length):
        description += (
            f"; {report.over_training_length} rows exceed the training max_length "
            f"{effective_hyperparameters(plan, pair)['max_length']} and are left out of local training"
        )
    return dg.AssetCheckResult(
        check_name=TRAINABLE,
        passed=passed,
        description=description,
        metadata={
            "rows": report.rows,
            "problems": len(problems),
            "max_estimated_tokens": report.max_tokens,
            "model_max_length": base.max_length,
            "rows_over_model_length": over,
            "rows_over_training_length": report.over_training_length,
        },
    )


def paid_job_problems(store: ArtifactStore, plan: TrainingPlan, pair: str) -> list[str]:
    """`paid_data_problems` for the pair's tuning data, whose source the splits manifest records."""
    agent = plan.pair(pair).agent
    tuning = read_upstream(store, layout.tuning_manifest(pair), producer="tuning_dataset", partition=pair)
    source = read_upstream(store, layout.splits_manifest(agent), producer=f"dataset_splits for {agent}",
                           partition=pair).get("source")
    return paid_data_problems(train_rows=int((tuning.get("counts") or {}).get("train", 0)),
                              min_train_rows=plan.cost.min_train_rows, source=source,
                              is_fixture=settings.is_shipped_fixture(source))


def paid_result(store: ArtifactStore, plan: TrainingPlan, pair: str) -> dg.AssetCheckResult:
    if backend_for(plan.base_model_for(pair), gcp=settings.current().is_gcp) != BACKEND_VERTEX:
        return dg.AssetCheckResult(check_name=PAID, passed=True, description=f"{pair} trains locally: no paid job to guard",
                                   metadata={"paid": False})
    problems = paid_job_problems(store, plan, pair)
    return dg.AssetCheckResult(
        check_name=PAID,
        passed=not problems,
        description=summarise_problems(problems) or f"{pair}: named source with enough train rows for a paid job",
        metadata={"paid": True, "problems": len(problems), "min_train_rows": plan.cost.min_train_rows},
    )


def estimate_for(store: ArtifactStore, plan: TrainingPlan, pair: str, report: TuningDataReport) -> TrainingEstimate:
    """The pair's cost (tuned on Vertex AI) or local training time (trained here), from its tuning data."""
    return training_estimate(plan, pair, gcp=settings.current().is_gcp, train_tokens=report.train_tokens,
                             local_tokens=report.local_train_tokens, measured=measured_throughput(store.read_json, pair))


def cost_result(store: ArtifactStore, report: TuningDataReport, plan: TrainingPlan, pair: str) -> dg.AssetCheckResult:
    estimate = estimate_for(store, plan, pair, report)
    passed = estimate.within_budget and report.train_tokens > 0
    return dg.AssetCheckResult(
        check_name=COST,
        passed=passed,
        description=(
            estimate.describe() if report.train_tokens
            else f"{pair}: no train tokens to estimate ({summarise_problems(report.problems) or 'empty split'})"
        ),
        metadata={**estimate.metadata(),
                  "price_per_million_tokens_usd": float(plan.cost.price_per_million_tokens_usd)},
    )


with warnings.catch_warnings():  # partitioned checks are "preview" in 1.13; we rely on them knowingly
    warnings.filterwarnings("ignore", message="Specifying a partitions_def", category=dg.PreviewWarning)
    _SPECS = [dg.AssetCheckSpec(name, asset="tuning_dataset", blocking=True, partitions_def=PAIR_PARTITIONS,
                                description=text) for name, text in _DESCRIPTIONS.items()]


@dg.multi_asset_check(specs=_SPECS, can_subset=True, name="tuning_data_checks",
                      description="The blocking checks that gate training, on one read of the tuning data.")
def tuning_data_checks(context: dg.AssetCheckExecutionContext, store: ArtifactStore):
    """The length and cost checks share one streamed pass over both splits (`tuning_data_report`)."""
    plan, pair = default_plan(), context.partition_key
    selected = {key.name for key in context.selected_asset_check_keys}
    report = tuning_data_report(store, plan, pair) if selected & {TRAINABLE, COST} else None
    if TRAINABLE in selected:
        yield trainable_result(report, plan, pair)
    if COST in selected:
        yield cost_result(store, report, plan, pair)
    if PAID in selected:
        yield paid_result(store, plan, pair)


TUNING_DATA_CHECKS = [tuning_data_checks]

"""Re-evaluation: a nightly schedule over every pair with an adapter, and the on-change automation rule.

- `reevaluation_schedule` (cron in schedules/automation.yaml) yields one RunRequest per pair whose
  `adapters/<pair>/latest.json` exists, run_key `<pair>:<scheduled date>`.
- `EVALUATION_AUTOMATION_CONDITION` re-runs `evaluation_report` when a new benchmark version lands
  (a new checked adapter is `new_adapter_sensor`'s), only once every upstream blocking check has passed
  (blocking checks only gate their own run otherwise: dagster issue #25112).
"""

import datetime as dt

import dagster as dg

from coursegpt_assets.core import layout
from coursegpt_assets.core.names import TRIGGER_TAG
from coursegpt_assets.defs.partitions import PAIR_PARTITIONS, partition_tags
from resources.storage import ArtifactStore
from schedules.config import AutomationConfigError, settings, settings_path


def _evaluation_assets() -> list[dg.AssetKey]:
    names = ["evaluation_report", "model_card"] if settings().reevaluation_schedule.include_model_card else [
        "evaluation_report"]
    return [dg.AssetKey(n) for n in names]


def pairs_with_adapters(store) -> list[str]:
    """Planned pairs whose latest.json pointer exists, from one listing of adapters/."""
    keys = set(store.list_keys(layout.adapters_root()))
    return [p for p in PAIR_PARTITIONS.get_partition_keys() if layout.adapter_latest(p) in keys]


def _build_schedule() -> dg.ScheduleDefinition:
    cfg = settings().reevaluation_schedule
    assets = _evaluation_assets()

    def reevaluate(context: dg.ScheduleEvaluationContext, store: ArtifactStore):
        when = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        date = when.strftime("%Y-%m-%d")
        pairs = pairs_with_adapters(store)
        if not pairs:
            yield dg.SkipReason("no pair has an adapter yet (adapters/<pair>/latest.json)")
            return
        for pair in pairs:
            yield dg.RunRequest(run_key=f"{pair}:{date}", partition_key=pair, asset_selection=assets,
                                tags={TRIGGER_TAG: "reevaluation_schedule", **partition_tags(pair)})

    try:
        return dg.schedule(
            name="reevaluation_schedule", cron_schedule=cfg.cron, execution_timezone=cfg.timezone,
            target=dg.AssetSelection.assets(*assets), default_status=cfg.status(),
            description=f"Re-evaluates every pair with an adapter ({cfg.cron} {cfg.timezone}).",
        )(reevaluate)
    except dg.DagsterInvalidDefinitionError as e:
        raise AutomationConfigError(f"{settings_path()}: reevaluation_schedule: {e}") from None


reevaluation_schedule = _build_schedule()

_AC = dg.AutomationCondition

#: evaluation_report: re-run for every pair with an adapter once a new benchmark version lands, never while a
#: dep is missing or running, and only after every upstream blocking check has passed.
EVALUATION_AUTOMATION_CONDITION = (
    _AC.any_deps_updated().allow(dg.AssetSelection.assets("benchmark")).since_last_handled()
    & ~_AC.any_deps_missing()
    & ~_AC.any_deps_in_progress()
    & ~_AC.in_progress()
    & _AC.all_deps_blocking_checks_passed()
).with_label("re-evaluate on a new benchmark version")

#: model_card: re-render after its evaluation report updates, under the same blocking-check rule.
MODEL_CARD_AUTOMATION_CONDITION = (_AC.eager() & _AC.all_deps_blocking_checks_passed()).with_label(
    "re-render after a new evaluation report"
)

evaluation_automation_sensor = dg.AutomationConditionSensorDefinition(
    "evaluation_automation_sensor",
    target=dg.AssetSelection.assets("evaluation_report", "model_card"),
    default_status=settings().evaluation_automation_sensor.status(),
    minimum_interval_seconds=settings().evaluation_automation_sensor.minimum_interval_seconds,
    run_tags={TRIGGER_TAG: "evaluation_automation_sensor"},
    description="Evaluates the automation conditions of evaluation_report and model_card.",
)

#: asset -> the declarative automation definitions.py puts on it
AUTOMATION_CONDITIONS = {"evaluation_report": EVALUATION_AUTOMATION_CONDITION, "model_card": MODEL_CARD_AUTOMATION_CONDITION}

SCHEDULES = [reevaluation_schedule]

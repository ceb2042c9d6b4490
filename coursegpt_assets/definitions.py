"""The one Definitions object: assets, checks, resources, sensors, schedules and jobs."""

import dagster as dg

from coursegpt_assets import settings
from coursegpt_assets.adapters import ADAPTER_ASSETS, ADAPTER_CHECKS
from coursegpt_assets.benchmarks import BENCHMARK_ASSETS, BENCHMARK_CHECKS
from coursegpt_assets.datasets import DATA_ASSETS
from coursegpt_assets.evaluation import EVALUATION_ASSETS, EVALUATION_CHECKS
from coursegpt_assets.jobs import build_jobs
from coursegpt_assets.model_cards import MODEL_CARD_ASSETS, MODEL_CARD_CHECKS
from coursegpt_assets.tuning_data import TUNING_DATA_ASSETS
from dbt_style_checks.loader import build_dbt_checks
from resources import resources_for
from schedules import (
    EVALUATION_AUTOMATION_CONDITION,
    MODEL_CARD_AUTOMATION_CONDITION,
    SCHEDULES,
    SENSOR_CHECKS,
    SENSORS,
)

#: declarative automation on the assets the on-change rule re-runs (schedules/schedules.py)
AUTOMATION = {"evaluation_report": EVALUATION_AUTOMATION_CONDITION, "model_card": MODEL_CARD_AUTOMATION_CONDITION}


def _with_automation(spec: dg.AssetSpec) -> dg.AssetSpec:
    condition = AUTOMATION.get(spec.key.to_user_string())
    return spec.replace_attributes(automation_condition=condition) if condition else spec


ASSETS = dg.map_asset_specs(
    _with_automation,
    [*DATA_ASSETS, *BENCHMARK_ASSETS, *TUNING_DATA_ASSETS, *ADAPTER_ASSETS, *EVALUATION_ASSETS, *MODEL_CARD_ASSETS],
)
CHECKS = [*BENCHMARK_CHECKS, *ADAPTER_CHECKS, *EVALUATION_CHECKS, *MODEL_CARD_CHECKS, *SENSOR_CHECKS,
          *build_dbt_checks()]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=build_jobs({key.to_user_string() for a in ASSETS for key in a.keys}),
    sensors=SENSORS,
    schedules=SCHEDULES,
    resources=resources_for(settings.current()),
)

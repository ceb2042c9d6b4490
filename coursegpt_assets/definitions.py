"""The one Definitions object: assets, checks, resources, sensors, schedules and jobs."""

import dagster as dg

from coursegpt_assets import settings
from coursegpt_assets.adapters import ADAPTER_ASSETS, ADAPTER_CHECKS
from coursegpt_assets.benchmarks import BENCHMARK_ASSETS, BENCHMARK_CHECKS
from coursegpt_assets.datasets import DATA_ASSETS
from coursegpt_assets.jobs import build_jobs
from coursegpt_assets.model_cards import MODEL_CARD_ASSETS, MODEL_CARD_CHECKS
from coursegpt_assets.tuning_data import TUNING_DATA_ASSETS
from dbt_style_checks.loader import build_dbt_checks
from resources import resources_for

ASSETS = [*DATA_ASSETS, *BENCHMARK_ASSETS, *TUNING_DATA_ASSETS, *ADAPTER_ASSETS, *MODEL_CARD_ASSETS]
CHECKS = [*BENCHMARK_CHECKS, *ADAPTER_CHECKS, *MODEL_CARD_CHECKS, *build_dbt_checks()]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=build_jobs({a.key.to_user_string() for a in ASSETS}),
    resources=resources_for(settings.current()),
)

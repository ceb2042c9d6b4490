"""The one Definitions object: assets, checks, resources, sensors, schedules and jobs."""

from __future__ import annotations

import dagster as dg

from coursegpt_assets import settings
from coursegpt_assets.datasets import DATA_ASSETS
from coursegpt_assets.jobs import build_jobs
from coursegpt_assets.tuning_data import TUNING_DATA_ASSETS
from resources import resources_for

ASSETS = [*DATA_ASSETS, *TUNING_DATA_ASSETS]

defs = dg.Definitions(
    assets=ASSETS,
    jobs=build_jobs({a.key.to_user_string() for a in ASSETS}),
    resources=resources_for(settings.current()),
)

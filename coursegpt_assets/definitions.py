"""The one Definitions object: assets, checks, resources, sensors, schedules and jobs."""

from __future__ import annotations

import dagster as dg

from coursegpt_assets import settings
from coursegpt_assets.datasets import DATA_ASSETS
from coursegpt_assets.tuning_data import TUNING_DATA_ASSETS
from resources import resources_for

defs = dg.Definitions(
    assets=[*DATA_ASSETS, *TUNING_DATA_ASSETS],
    resources=resources_for(settings.current()),
)

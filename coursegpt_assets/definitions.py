"""The one Definitions object: every stage module under `defs/`, plus resources, sensors and schedules.

The assets and checks are found in the modules of `coursegpt_assets/defs/` (so a module added there, by
`dg scaffold defs` too, is loaded without being listed here); the environment's resources and the
automation (sensors, schedules, the conditions of `evaluation_report` and `model_card`) come from
`resources/` and `schedules/`, and the dbt-style data tests of `dbt_style_checks/schema.yml` (compiled from
the YAML, no store access at load time). Dagster's component loader (`dg.load_defs`) is not used: it imports every
installed integration, the Google SDKs among them, which loading the definitions must not pay for.
"""

import dagster as dg

from coursegpt_assets import defs as stages
from coursegpt_assets.core import settings
from coursegpt_assets.defs.jobs import JOBS
from coursegpt_assets.defs.partitions import scope_tags
from dbt_style_checks.loader import build_dbt_checks
from resources import resources_for
from schedules import AUTOMATION_CONDITIONS, SCHEDULES, SENSOR_CHECKS, SENSORS


def _with_automation_and_tags(spec: dg.AssetSpec) -> dg.AssetSpec:
    condition = AUTOMATION_CONDITIONS.get(spec.key.to_user_string())
    spec = spec.merge_attributes(tags=scope_tags(spec))
    return spec.replace_attributes(automation_condition=condition) if condition else spec


defs = dg.Definitions(
    assets=dg.map_asset_specs(_with_automation_and_tags, dg.load_assets_from_package_module(stages)),
    asset_checks=[*dg.load_asset_checks_from_package_module(stages), *build_dbt_checks(), *SENSOR_CHECKS],
    jobs=JOBS,
    sensors=SENSORS,
    schedules=SCHEDULES,
    resources=resources_for(settings.current()),
)

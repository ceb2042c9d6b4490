"""Automation: sensors (new adapters, Vertex jobs), the re-evaluation schedule and the on-change rule.

What definitions.py passes on: `SENSORS`, `SCHEDULES`, `SENSOR_CHECKS` (asset_checks), and the automation
conditions `EVALUATION_AUTOMATION_CONDITION` / `MODEL_CARD_AUTOMATION_CONDITION` for those assets.
"""

from schedules.schedules import (
    EVALUATION_AUTOMATION_CONDITION,
    MODEL_CARD_AUTOMATION_CONDITION,
    SCHEDULES,
    evaluation_automation_sensor,
    reevaluation_schedule,
)
from schedules.sensors import SENSOR_CHECKS, new_adapter_sensor, vertex_job_sensor

SENSORS = [new_adapter_sensor, vertex_job_sensor, evaluation_automation_sensor]

__all__ = [
    "EVALUATION_AUTOMATION_CONDITION", "MODEL_CARD_AUTOMATION_CONDITION", "SCHEDULES", "SENSORS", "SENSOR_CHECKS",
    "evaluation_automation_sensor", "new_adapter_sensor", "reevaluation_schedule", "vertex_job_sensor",
]

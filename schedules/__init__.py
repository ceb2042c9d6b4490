"""Automation: sensors (checked adapters, Vertex jobs), the re-evaluation schedule and the on-change rule.

What definitions.py passes on: `SENSORS`, `SCHEDULES`, `SENSOR_CHECKS` (asset_checks), and
`AUTOMATION_CONDITIONS`, the automation condition of `evaluation_report` and of `model_card`.
"""

from schedules.schedules import (
    AUTOMATION_CONDITIONS,
    EVALUATION_AUTOMATION_CONDITION,
    MODEL_CARD_AUTOMATION_CONDITION,
    SCHEDULES,
    evaluation_automation_sensor,
    reevaluation_schedule,
)
from schedules.sensors import SENSOR_CHECKS, new_adapter_sensor, vertex_job_sensor

SENSORS = [new_adapter_sensor, vertex_job_sensor, evaluation_automation_sensor]

__all__ = [
    "AUTOMATION_CONDITIONS", "EVALUATION_AUTOMATION_CONDITION", "MODEL_CARD_AUTOMATION_CONDITION", "SCHEDULES", "SENSORS", "SENSOR_CHECKS",
    "evaluation_automation_sensor", "new_adapter_sensor", "reevaluation_schedule", "vertex_job_sensor",
]

"""Reads schedules/automation.yaml: default status, intervals and cron of every sensor and schedule.

Read once at definitions load (it is a small local file); a bad key fails loading with the file and key.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Literal

import dagster as dg
import yaml
from pydantic import Field, ValidationError

from coursegpt_assets.core.plan import StrictModel
from coursegpt_assets.core.settings import environment

DEFAULT_PATH = Path(__file__).resolve().parent / "automation.yaml"
Status = Literal["running", "stopped"]


class SensorSettings(StrictModel):
    default_status: Status | dict[str, Status] = "stopped"
    minimum_interval_seconds: int = Field(default=60, ge=5)

    def status(self) -> dg.DefaultSensorStatus:
        return dg.DefaultSensorStatus.RUNNING if _pick(self.default_status) == "running" else dg.DefaultSensorStatus.STOPPED


class ScheduleSettings(StrictModel):
    cron: str = "0 3 * * *"  # validated by Dagster when the schedule is built (see schedules.py)
    timezone: str = "UTC"
    default_status: Status | dict[str, Status] = "stopped"
    include_model_card: bool = True

    def status(self) -> dg.DefaultScheduleStatus:
        running = _pick(self.default_status) == "running"
        return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


class AutomationSettings(StrictModel):
    new_adapter_sensor: SensorSettings = SensorSettings()
    vertex_job_sensor: SensorSettings = SensorSettings(minimum_interval_seconds=300)
    reevaluation_schedule: ScheduleSettings = ScheduleSettings()
    evaluation_automation_sensor: SensorSettings = SensorSettings()


def _pick(status: Status | dict[str, Status]) -> Status:
    """The status for the current COURSEGPT_ENV (local by default) when given per environment."""
    if isinstance(status, str):
        return status
    return status.get(environment(), "stopped")


class AutomationConfigError(ValueError):
    """automation.yaml is missing or invalid; the message names the file and the key."""


def settings_path() -> Path:
    return Path(os.environ.get("COURSEGPT_AUTOMATION") or DEFAULT_PATH)


def load_settings(path: str | os.PathLike | None = None) -> AutomationSettings:
    path = Path(path or settings_path())
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise AutomationConfigError(f"{path}: automation settings not found") from None
    except yaml.YAMLError as e:
        raise AutomationConfigError(f"{path}: not valid YAML: {e}") from None
    try:
        return AutomationSettings.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise AutomationConfigError(f"{path}: {problems}") from None


@cache
def settings() -> AutomationSettings:
    return load_settings()

"""Names every layer agrees on: how a pair key is built and split, and the run tags sensors set.

A pair key is `<agent>__<base_model>` (a static partition key; Dagster keys may not hold `|`, and `__`
never occurs inside an agent or base-model name, which the plan checks).
"""

from __future__ import annotations

PAIR_SEPARATOR = "__"

#: set by schedules.sensors.new_adapter_sensor: the adapter version a requested report and card describe
ADAPTER_VERSION_TAG = "coursegpt/adapter_version"
#: which sensor or schedule requested a run
TRIGGER_TAG = "coursegpt/trigger"


def pair_key(agent: str, base_model: str) -> str:
    return f"{agent}{PAIR_SEPARATOR}{base_model}"


def split_pair(key: str) -> tuple[str, str]:
    """(agent, base model) of a pair key; a ValueError names a key that is not one."""
    agent, sep, base_model = key.partition(PAIR_SEPARATOR)
    if not sep:
        raise ValueError(f"{key!r} is not a pair key (<agent>{PAIR_SEPARATOR}<base_model>)")
    return agent, base_model


def is_pair_key(key: str) -> bool:
    return PAIR_SEPARATOR in key

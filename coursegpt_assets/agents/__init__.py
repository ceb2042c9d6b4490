"""One module per agent behind one small protocol (see `base.Agent`).

Adding a fourth agent is one new module here (exposing `AGENT`) plus an entry in training_plan.yaml.
"""

from __future__ import annotations

import importlib

from coursegpt_assets.agents.base import Agent


def get_agent(name: str) -> Agent:
    try:
        module = importlib.import_module(f"coursegpt_assets.agents.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"coursegpt_assets.agents.{name}":
            raise
        raise KeyError(f"no agent module coursegpt_assets/agents/{name}.py for agent {name!r}") from None
    return module.AGENT

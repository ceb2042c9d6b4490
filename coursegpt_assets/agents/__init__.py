"""One module per agent behind one protocol (see `base.Agent`), found through the training plan.

Adding an agent is one module exposing `AGENT` plus its entry in training_plan.yaml; the entry's `module`
names the module when it does not live here as `coursegpt_assets/agents/<name>.py`.
"""

from __future__ import annotations

import importlib

from coursegpt_assets.agents.base import Agent, protocol_members
from coursegpt_assets.core.plan import PlanError, TrainingPlan, default_plan


def get_agent(name: str, plan: TrainingPlan | None = None) -> Agent:
    """The `AGENT` of the module the plan names for agent `name`; errors name the plan key and the module."""
    plan = plan or default_plan()
    if name not in plan.agents:
        raise PlanError(f"agent {name!r} is not in the training plan (agents: {', '.join(plan.agents)})")
    module_name = plan.agent_module(name)
    where = f"training plan agents.{name}: module {module_name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not (module_name == e.name or module_name.startswith(f"{e.name}.")):
            raise  # the module exists but imports something missing: that error is the one to read
        raise PlanError(f"{where} is not importable (no module {e.name!r}); set agents.{name}.module to the "
                        "dotted path of a module that defines AGENT") from None
    agent = getattr(module, "AGENT", None)
    if agent is None:
        raise PlanError(f"{where} defines no AGENT (the object implementing coursegpt_assets.agents.base.Agent)")
    missing = [member for member in protocol_members() if not hasattr(agent, member)]
    if missing:
        raise PlanError(f"{where}: AGENT lacks {', '.join(missing)} (see coursegpt_assets.agents.base.Agent)")
    return agent

"""Partition definitions, derived from the training plan and imported everywhere as constants.

Agent-level assets use AGENT_PARTITIONS; pair-level assets use PAIR_PARTITIONS, whose keys are exactly
the planned `<agent>__<base_model>` pairs (no invalid cross-product cells). The two mappings connect them.
"""

from __future__ import annotations

import dagster as dg

from coursegpt_assets.core.plan import default_plan

_PLAN = default_plan()

AGENT_PARTITIONS = dg.StaticPartitionsDefinition(_PLAN.agent_names)
PAIR_PARTITIONS = dg.StaticPartitionsDefinition(_PLAN.pair_keys)

#: upstream agent partition -> the pair partitions that read it (agent-level asset feeding a pair-level one)
AGENT_TO_PAIRS = dg.StaticPartitionMapping(
    {agent: [p.key for p in _PLAN.planned_pairs if p.agent == agent] for agent in _PLAN.agent_names}
)
#: upstream pair partition -> its agent partition (pair-level asset feeding an agent-level one)
PAIRS_TO_AGENT = dg.StaticPartitionMapping({p.key: p.agent for p in _PLAN.planned_pairs})



def partition_tags(key: str) -> dict[str, str]:
    """Run tags saying what a partition is: agent, and for a pair its base model, chat family and whether it
    is a smoke-test model, so the Runs page filters by them. They are run tags, not asset tags: one asset
    definition holds every agent's (or pair's) partitions."""
    if key in _PLAN.agent_names:
        return {"coursegpt/agent": key}
    pair = next((p for p in _PLAN.planned_pairs if p.key == key), None)
    if pair is None:
        return {}
    return {"coursegpt/agent": pair.agent, "coursegpt/base_model": pair.base_model,
            "coursegpt/family": _PLAN.base_models[pair.base_model].family,
            "coursegpt/smoke": str(_PLAN.is_smoke(key)).lower()}


def scope_tags(spec: dg.AssetSpec) -> dict[str, str]:
    """Asset tags for the catalog's filters: which partitions an asset has (per agent or per pair)."""
    scope = {id(AGENT_PARTITIONS): "agent", id(PAIR_PARTITIONS): "pair"}.get(id(spec.partitions_def))
    return {"coursegpt/partitioned_by": scope} if scope else {}

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


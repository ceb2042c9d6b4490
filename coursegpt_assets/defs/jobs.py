"""The jobs `coursegpt run` and the UI launch: agent-level data, pair-level training/evaluation, leaderboard.

A run targets one partition, so the main pipeline is three partitioned jobs run in order; independent
partitions of one stage run side by side.
"""

from __future__ import annotations

import dagster as dg

from coursegpt_assets.defs.partitions import AGENT_PARTITIONS, PAIR_PARTITIONS

AGENT_STAGE = ("raw_examples", "clean_examples", "dataset_splits", "benchmark")
PAIR_STAGE = ("tuning_dataset", "tuning_job", "adapter", "evaluation_report", "model_card", "published_adapter")
SUMMARY_STAGE = ("leaderboard",)

PARTITIONS_BY_LEVEL = {"agent": AGENT_PARTITIONS, "pair": PAIR_PARTITIONS}

#: (job name, assets in order, partition level, description)
STAGES = (
    ("agent_data_job", AGENT_STAGE, "agent", "Raw → clean → splits → benchmark for one agent."),
    ("pair_pipeline_job", PAIR_STAGE, "pair", "Tuning data → adapter → report → card for one pair."),
    ("leaderboard_job", SUMMARY_STAGE, "agent", "Every base model of one agent side by side."),
)



JOBS = [
    dg.define_asset_job(name, selection=dg.AssetSelection.assets(*stage), partitions_def=PARTITIONS_BY_LEVEL[level],
                        description=description)
    for name, stage, level, description in STAGES
]

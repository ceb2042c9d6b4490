"""The jobs `coursegpt run` and the UI launch: agent-level data, pair-level training/evaluation, leaderboard,
and publishing, which only an explicit request runs.

A run targets one partition, so the main pipeline is three partitioned jobs run in order; independent
partitions of one stage run side by side. `publish_job` is not one of them: nothing publishes unless a
person launches it (`coursegpt run --publish`, or the UI). Its selection adds the blocking checks on
`model_card` (`card_is_valid`, `not_a_smoke_model`), so they gate `published_adapter` in that run even
when model_card itself is not re-materialised; `pair_pipeline_job` leaves the smoke check out, so a
smoke pair's card renders without a failed check.
"""

from __future__ import annotations

import dagster as dg

from coursegpt_assets.defs.partitions import AGENT_PARTITIONS, PAIR_PARTITIONS
from coursegpt_assets.defs.publishing.assets import CARD_CHECK, PUBLISH_JOB, SMOKE_CHECK

AGENT_STAGE = ("raw_examples", "clean_examples", "dataset_splits", "benchmark")
PAIR_STAGE = ("tuning_dataset", "tuning_job", "adapter", "evaluation_report", "model_card")
SUMMARY_STAGE = ("leaderboard",)
PUBLISH_STAGE = ("published_adapter",)

#: the blocking checks on model_card that publish_job runs before published_adapter
PUBLISH_CHECKS = tuple(dg.AssetCheckKey(dg.AssetKey("model_card"), name) for name in (CARD_CHECK, SMOKE_CHECK))

PARTITIONS_BY_LEVEL = {"agent": AGENT_PARTITIONS, "pair": PAIR_PARTITIONS}

#: (job name, assets in order, partition level, description): what `coursegpt run` runs, in this order
STAGES = (
    ("agent_data_job", AGENT_STAGE, "agent", "Raw → clean → splits → benchmark for one agent."),
    ("pair_pipeline_job", PAIR_STAGE, "pair", "Tuning data → adapter → report → card for one pair (publishes nothing)."),
    ("leaderboard_job", SUMMARY_STAGE, "agent", "Every base model of one agent side by side."),
)
#: run only on request (`coursegpt run --publish`), after STAGES
PUBLISH = (PUBLISH_JOB, PUBLISH_STAGE, "pair",
           "Publish one pair's reviewed card and adapter to the Hub; the blocking card checks refuse a smoke model first.")


def selection_for(job_name: str, assets: tuple[str, ...]) -> dg.AssetSelection:
    """The assets of a job with the checks it runs: publish_job adds the publishing checks on model_card,
    every other job leaves the smoke check out."""
    if job_name == PUBLISH_JOB:
        return dg.AssetSelection.assets(*assets) | dg.AssetSelection.checks(*PUBLISH_CHECKS)
    return dg.AssetSelection.assets(*assets) - dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("model_card"),
                                                                                        SMOKE_CHECK))


JOBS = [
    dg.define_asset_job(name, selection=selection_for(name, stage), partitions_def=PARTITIONS_BY_LEVEL[level],
                        description=description)
    for name, stage, level, description in (*STAGES, PUBLISH)
]

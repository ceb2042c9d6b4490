"""Pair-level tuning data: the seed's Vertex prompt/completion plus chat text rendered for the pair's family."""


import hashlib
import itertools
import json

import dagster as dg

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.base import tuning_row
from coursegpt_assets.core import layout
from coursegpt_assets.core.chat_templates import family
from coursegpt_assets.core.names import split_pair
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.core.tokens import estimate_tokens
from coursegpt_assets.defs.common import OWNERS, ROW_COUNT, column_schema, preview, published_splits, uri
from coursegpt_assets.defs.partitions import AGENT_TO_PAIRS, PAIR_PARTITIONS
from resources.storage import ArtifactStore


class TokenStats:
    """Estimated token counts of the rows written, accumulated as they stream past."""

    def __init__(self, max_length: int):
        self.max_length, self.total, self.max, self.rows, self.over = max_length, 0, 0, 0, 0

    def add(self, row: dict) -> dict:
        n = estimate_tokens(row["text_prompt"] + row["text_completion"])
        self.total, self.max, self.rows = self.total + n, max(self.max, n), self.rows + 1
        self.over += n > self.max_length
        return row

    def summary(self) -> dict[str, float]:
        mean = round(self.total / self.rows, 1) if self.rows else 0.0
        return {"total": self.total, "max": self.max, "mean": mean, "over_max_length": self.over}


def token_stats(rows: list[dict], max_length: int) -> dict[str, float]:
    stats = TokenStats(max_length)
    for row in rows:
        stats.add(row)
    return stats.summary()


@dg.asset(
    partitions_def=PAIR_PARTITIONS,
    group_name="tuning",
    kinds={"python", "jsonl"},
    owners=OWNERS,
    code_version="1",
    deps=[dg.AssetDep("dataset_splits", partition_mapping=AGENT_TO_PAIRS)],
)
def tuning_dataset(context: dg.AssetExecutionContext, store: ArtifactStore):
    """Tuning JSONL for one agent × base model: Vertex prompt/completion and the family's chat rendering."""
    pair = context.partition_key
    agent_name, base_model = split_pair(pair)
    plan = default_plan()
    model = plan.base_models[base_model]
    agent = get_agent(agent_name)
    splits_manifest, split_keys = published_splits(store, agent_name, layout.TUNING_SPLITS, partition=agent_name)
    think = bool(splits_manifest.get("think_wrapping"))
    hashes, counts, tokens, first_rows = {}, {}, {}, []
    for split in layout.TUNING_SPLITS:  # streamed: rows are rendered, counted and written one at a time
        stats = TokenStats(model.max_length)
        rows = (stats.add(tuning_row(agent, record, model.family, think=think))
                for record in store.iter_jsonl(split_keys[split]))
        if not first_rows:
            first_rows = list(itertools.islice(rows, 5))  # the preview and column schema
            rows = itertools.chain(first_rows, rows)
        _, counts[split], hashes[split] = store.write_jsonl(layout.tuning_records(pair, split), rows)
        tokens[split] = stats.summary()
    data_version = hashlib.sha256(
        json.dumps({"sha256": hashes, "family": model.family, "think": think}, sort_keys=True).encode()
    ).hexdigest()
    manifest = {
        "pair": pair, "agent": agent_name, "base_model": base_model, "family": model.family,
        "counts": counts, "sha256": hashes, "data_version": data_version,
        "splits_content_hash": splits_manifest["content_hash"],
        "chat_template": family(model.family).template, "end_of_turn": family(model.family).end_of_turn,
        "chat_template_kwargs": family(model.family).template_kwargs(think=think),
        "token_estimate": tokens, "think_wrapping": think,
        "train_uri": store.uri(layout.tuning_records(pair, "train")),
        "validation_uri": store.uri(layout.tuning_records(pair, "validation")),
    }
    manifest_uri = store.write_json(layout.tuning_manifest(pair), manifest)
    context.log.info(f"{pair}: {counts} rows rendered for the {model.family} family")
    return dg.MaterializeResult(
        metadata={
            ROW_COUNT: sum(counts.values()),
            "train_rows": counts["train"],
            "validation_rows": counts["validation"],
            "estimated_train_tokens": tokens["train"]["total"],
            "estimated_max_tokens": max(t["max"] for t in tokens.values()),
            "estimated_mean_tokens": tokens["train"]["mean"],
            "rows_over_max_length": sum(t["over_max_length"] for t in tokens.values()),
            "chat_family": model.family,
            "data_version": data_version,
            "train_uri": uri(manifest["train_uri"]),
            "validation_uri": uri(manifest["validation_uri"]),
            "manifest": uri(manifest_uri),
            "preview": preview(first_rows, ["id", "text_prompt", "text_completion"], limit=3, width=120),
            **column_schema(first_rows),
        },
        data_version=dg.DataVersion(data_version),
    )


TUNING_DATA_ASSETS = [tuning_dataset]

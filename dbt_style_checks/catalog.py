"""What schema.yml may test: each asset's partitions, how to read one partition from the store, and its columns.

Columns come from the code that writes the rows (the agent's `columns`; the tuning row shape of
`agents.base.tuning_row`), so a schema.yml typo is caught at load time. An agent whose `columns` is None
(and the benchmark, whose row shape differs per agent) has no known columns: references to them are
checked at run time only (a column absent from every row fails the check).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import dagster as dg

from coursegpt_assets.agents import get_agent
from coursegpt_assets.core import layout
from coursegpt_assets.core.names import is_pair_key, split_pair
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.defs.partitions import AGENT_PARTITIONS, PAIR_PARTITIONS

#: keys of every tuning row (`coursegpt_assets.agents.base.tuning_row`)
TUNING_COLUMNS = frozenset({"id", "prompt", "completion", "messages", "text_prompt", "text_completion"})


@cache
def record_columns(agent: str) -> frozenset[str] | None:
    """Columns of the agent's clean records (every record also has its `id`); None when the agent does not say."""
    columns = get_agent(agent).columns
    return frozenset(columns) | {"id"} if columns is not None else None


@dataclass(frozen=True)
class AssetSource:
    """One testable asset: its partitions and how to read a partition (whole, or split by split)."""

    name: str
    level: str  # "agent" or "pair"
    splits: tuple[str, ...] | None  # None: one rows file per partition
    path: Callable[..., str]  # (store, partition) or (store, partition, split) -> store key
    columns_for: Callable[[str], frozenset[str] | None]

    @property
    def partitions_def(self) -> dg.StaticPartitionsDefinition:
        return AGENT_PARTITIONS if self.level == "agent" else PAIR_PARTITIONS

    @property
    def partition_keys(self) -> list[str]:
        return self.partitions_def.get_partition_keys()

    def expand(self, names) -> tuple[str, ...]:
        """Partition keys for `names`, where an agent name stands for all of its pairs (pair-level assets)."""
        keys = self.partition_keys
        return tuple(k for k in keys if k in names or (self.level == "pair" and agent_of(k) in names))

    def read(self, store, partition: str, split: str | None = None) -> Iterator[dict]:
        if self.splits is None:
            yield from store.iter_jsonl(self.path(store, partition))
            return
        for name in [split] if split else self.splits:
            yield from store.iter_jsonl(self.path(store, partition, name))


def published_split(store, agent: str, split: str) -> str:
    """The key of a split file of the set the agent's splits manifest publishes now."""
    return layout.split_keys(store.read_json(layout.splits_manifest(agent)), (split,))[split]


def agent_of(partition: str) -> str:
    """The agent of an agent or pair partition key."""
    return split_pair(partition)[0] if is_pair_key(partition) else partition


SOURCES: dict[str, AssetSource] = {
    s.name: s
    for s in (
        AssetSource("clean_examples", "agent", None, lambda _, p: layout.clean_records(p), record_columns),
        AssetSource("dataset_splits", "agent", layout.SPLITS, published_split, record_columns),
        # benchmark rows have per-agent shapes (`Agent.benchmark_rows`) no agent lists: run-time only
        AssetSource("benchmark", "agent", None, lambda _, p: layout.benchmark_records(p), lambda _: None),
        AssetSource("tuning_dataset", "pair", layout.TUNING_SPLITS, lambda _, p, s: layout.tuning_records(p, s),
                    lambda _: TUNING_COLUMNS),
    )
}


def target_partition(source: AssetSource, target: AssetSource, partition: str) -> str:
    """The partition of `target` that a check of `source`'s `partition` compares against."""
    if target.level == source.level:
        return partition
    if target.level == "agent":
        return agent_of(partition)
    raise ValueError(f"{source.name} (per agent) cannot refer to {target.name} (per pair)")


# -- values from the training plan, written `{{ plan.<name> }}` in schema.yml -------------------------
def _split_ratios(partition: str) -> dict[str, float]:
    spec = default_plan().agents[agent_of(partition)].splits
    return {"train": round(1 - spec.validation - spec.test, 10), "validation": spec.validation, "test": spec.test}


def _max_length(partition: str) -> int:
    return default_plan().base_model_for(partition).max_length


def _train_max_length(partition: str) -> int:
    plan = default_plan()
    return plan.smoke.max_length if plan.is_smoke(partition) else plan.hyperparameters.max_length


#: name -> (partition level it needs, resolver(partition) -> value)
PLAN_VALUES: dict[str, tuple[str | None, Callable[[str], object]]] = {
    "split_ratios": (None, _split_ratios),
    "max_length": ("pair", _max_length),
    "train_max_length": ("pair", _train_max_length),
}

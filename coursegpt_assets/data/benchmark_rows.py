"""What every agent's benchmark shares: the error for unusable rows, the leakage comparison and counts.

Each agent builds its own rows (`Agent.benchmark_rows`); every row has `id`, `source` and the fields its
scorer reads. The leakage check compares each row's `Agent.benchmark_question` with the training split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # data/ sits below agents/: the protocol is only a type here
    from coursegpt_assets.agents.base import Agent


class BenchmarkError(ValueError):
    """A benchmark file or row is unusable; the message names the file and line."""


def overlapping_ids(agent: Agent, rows: Iterable[dict], train_keys: set[str]) -> list[str]:
    """Ids of benchmark rows whose normalised question is in the training split."""
    return [row["id"] for row in rows if agent.benchmark_question(row) in train_keys]


def counts_by(rows: list[dict], field: str) -> dict[str, int]:
    counter: Counter = Counter()
    for row in rows:
        value = row.get(field)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                counter[str(item)] += 1
    return dict(sorted(counter.items()))

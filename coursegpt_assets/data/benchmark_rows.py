"""What every agent's benchmark shares: row sources, shipped benchmark data, the leakage comparison and counts.

Each agent builds its own rows (`Agent.benchmark_rows`); every row has `id`, `source` (where it came from:
a held-out split or an external benchmark), `origin` (`held-out` or `external`) and the fields its scorer
reads. The leakage check compares each row's `Agent.benchmark_question` with the training split, for every
source. External benchmarks shipped with the package live in `coursegpt_assets/benchmarks/`, each folder
with a `source.json` naming the benchmark, its licence and where it came from.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from coursegpt_assets.data.splits import seeded_order

if TYPE_CHECKING:  # data/ sits below agents/: the protocol is only a type here
    from coursegpt_assets.agents.base import Agent

HELD_OUT, EXTERNAL = "held-out", "external"
ORIGINS = (HELD_OUT, EXTERNAL)
SHIPPED_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SOURCE_FILE = "source.json"
_SOURCE_KEYS = ("name", "origin", "license", "url", "provenance")


class BenchmarkError(ValueError):
    """A benchmark file or row is unusable; the message names the file and line."""


def source_info(folder: Path) -> dict | None:
    """The folder's `source.json` (name, origin, license, url, provenance), or None when it has none."""
    path = folder / SOURCE_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    missing = [k for k in _SOURCE_KEYS if not isinstance(info.get(k), str) or not info[k].strip()] if isinstance(
        info, dict) else list(_SOURCE_KEYS)
    if missing:
        raise BenchmarkError(f"{path}: needs non-empty strings {missing} (a shipped benchmark names its licence)")
    if info["origin"] not in ORIGINS:
        raise BenchmarkError(f"{path}: origin {info['origin']!r} is not one of {ORIGINS}")
    return {k: info[k] for k in _SOURCE_KEYS}


def overlapping_ids(agent: Agent, rows: Iterable[dict], train_keys: set[str]) -> list[str]:
    """Ids of benchmark rows whose normalised question is in the training split (every source)."""
    return [row["id"] for row in rows if agent.benchmark_question(row) in train_keys]


def counts_by(rows: list[dict], field: str) -> dict[str, int]:
    counter: Counter = Counter()
    for row in rows:
        value = row.get(field)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                counter[str(item)] += 1
    return dict(sorted(counter.items()))


def sources(rows: Iterable[dict], chosen: Iterable[dict] | None = None) -> list[dict]:
    """Each source in benchmark order: {source, origin, rows}, plus `evaluated` when `chosen` is given.

    A row without an `origin` fails: a report must never leave a reader guessing whether it scored held-out
    data or an external benchmark."""
    table: dict[str, dict] = {}
    for row in rows:
        name, origin = row.get("source"), row.get("origin")
        if not name or origin not in ORIGINS:
            raise BenchmarkError(f"benchmark row {row.get('id')!r}: needs a `source` and an `origin` in {ORIGINS} "
                                 f"(got {name!r}, {origin!r}); rebuild the benchmark")
        entry = table.setdefault(name, {"source": name, "origin": origin, "rows": 0})
        entry["rows"] += 1
    if chosen is not None:
        evaluated = Counter(row.get("source") for row in chosen)
        for entry in table.values():
            entry["evaluated"] = evaluated.get(entry["source"], 0)
    return list(table.values())


def select_per_source(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    """All rows, or a seeded sample of at most `limit` rows from each source, in benchmark order.

    Sampling per source keeps every benchmark in a small (smoke) evaluation instead of letting the largest
    one crowd out the rest."""
    if limit is None:
        return list(rows)
    by_source: dict[object, list[int]] = {}
    for i, row in enumerate(rows):
        by_source.setdefault(row.get("source"), []).append(i)
    keep: list[int] = []
    for indices in by_source.values():
        order = seeded_order([str(rows[i].get("id", i)) for i in indices], seed)
        keep += [indices[j] for j in order[:limit]]
    return [rows[i] for i in sorted(keep)]


def subset_phrase(entry: dict) -> str:
    """"all 164 rows" or "subset of 6 of 164 rows" for one `sources` entry with `evaluated`."""
    n, m = entry.get("evaluated", entry["rows"]), entry["rows"]
    return f"all {m} rows" if n == m else f"subset of {n} of {m} rows"

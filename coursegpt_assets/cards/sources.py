"""The model card's list of benchmark sources: which rows the numbers come from, held-out or external.

Why: a card must not let a reader take an external benchmark for the agent's own held-out split (or the
reverse), nor a smoke subset for the whole benchmark; report.json `sources` says which is which.
"""

from __future__ import annotations

import re

from coursegpt_assets.data.benchmark_rows import subset_phrase

SOURCE_KINDS = {"held-out": "held-out data (this agent's own split)", "external": "external benchmark"}


def benchmark_sources(report: dict) -> list[tuple[str, str, str, str]]:
    """(source, held-out or external, "all M rows" / "subset of N of M rows", licence) per benchmark source."""
    return [(e["source"], SOURCE_KINDS.get(e.get("origin"), str(e.get("origin"))), subset_phrase(e),
             str(e.get("license") or "—"))
            for e in report.get("sources") or []]


def without_sources_section(markdown: str) -> str:
    """The report's markdown minus its "Benchmark sources" section (the card lists them with licences)."""
    return re.sub(r"^## Benchmark sources\n.*?(?=^## |\Z)", "", markdown, flags=re.S | re.M)


def dataset_split(report: dict) -> str:
    """The model-index `dataset.split`: the benchmark's sources joined by "+" (older reports: "test")."""
    return "+".join(e["source"] for e in report.get("sources") or []) or "test"

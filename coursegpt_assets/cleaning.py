"""Validation of raw rows into clean records and a quarantine, as plain functions the asset calls."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from coursegpt_assets.agents.base import Agent


@dataclass
class CleaningOutcome:
    """What clean_examples saw: the valid records and one quarantine row per rejected source row."""

    clean: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    total: int = 0

    @property
    def invalid_share(self) -> float:
        return len(self.quarantined) / self.total if self.total else 0.0

    def first_reasons(self, n: int = 5) -> list[str]:
        return [f"line {q['line']} ({q.get('id') or 'no id'}): {q['reason']}" for q in self.quarantined[:n]]


def raw_rows(stored: Iterable[dict]) -> Iterator[tuple[int, dict | None, str | None]]:
    for row in stored:
        yield row["line"], row.get("record"), row.get("error")


def clean(agent: Agent, stored_raw: Iterable[dict]) -> CleaningOutcome:
    """Keep every valid record; quarantine the rest with their line number and a readable reason.

    A repeated id is quarantined and the first occurrence kept. An agent with a `clean_record(record)`
    method gets its valid records in that canonical shape (the raw record stays in raw_examples).
    """
    out = CleaningOutcome()
    seen: dict[str, int] = {}
    for line, record, error in raw_rows(stored_raw):
        out.total += 1
        if record is None:
            out.quarantined.append({"line": line, "id": None, "reason": error or "unreadable row", "record": None})
            continue
        problems = agent.validate(record)
        rid = agent.record_id(record, line) if not problems or isinstance(record.get("id"), str) else None
        if not problems and rid in seen:
            problems = [f"duplicate id {rid!r} (first seen on line {seen[rid]})"]
        if problems:
            out.quarantined.append({"line": line, "id": rid, "reason": "; ".join(problems), "record": record})
            continue
        seen[rid] = line
        shape = getattr(agent, "clean_record", None)  # optional: agents whose sources name fields differently
        out.clean.append({**(shape(record) if shape else record), "id": rid})
    return out

"""Validation of raw rows into clean records and a quarantine, as plain functions the asset calls.

Raw rows are stored as `{"line":N,"record":<source bytes>}` (or `{"line":N,"error":...}`), written and
read here by byte slicing, so a valid record reaches the clean file byte for byte without being
re-serialised.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:  # data/ sits below agents/: the protocol is only a type here
    from coursegpt_assets.agents.base import Agent

_RECORD_PREFIX = b'{"line":%d,"record":'


def encode_raw_row(line: int, record: bytes | None = None, error: str | None = None) -> bytes:
    if record is None:
        return orjson.dumps({"line": line, "error": error or "unreadable row"})
    return _RECORD_PREFIX % line + record + b"}"


def decode_raw_row(raw: bytes) -> tuple[int, bytes | None, str | None]:
    """(line, record bytes, error) of one stored raw row."""
    if raw.startswith(b'{"line":'):
        comma = raw.index(b",", 8)
        line = int(raw[8:comma])
        if raw.startswith(b'"record":', comma + 1):
            return line, raw[comma + 10:-1], None
    row = orjson.loads(raw)
    return row["line"], None, row.get("error")


@dataclass
class CleaningOutcome:
    """What clean_examples saw: one quarantine row per rejected source row, and counts."""

    quarantined: list[dict] = field(default_factory=list)
    total: int = 0
    kept: int = 0

    @property
    def invalid_share(self) -> float:
        return len(self.quarantined) / self.total if self.total else 0.0

    def first_reasons(self, n: int = 5) -> list[str]:
        return [f"{where(q)} ({q.get('id') or 'no id'}): {q['reason']}" for q in self.quarantined[:n]]

    def name_files(self, table: list[dict]) -> None:
        """Add `file` and `file_line` to each quarantined row of a multi-file source."""
        from coursegpt_assets.data.sources import locate

        for q in self.quarantined:
            found = locate(table, q["line"]) if table else None
            if found:
                q["file"], q["file_line"] = found


def where(q: dict) -> str:
    return f"{q['file']}:{q['file_line']}" if q.get("file") else f"line {q['line']}"


@dataclass(frozen=True)
class CleanRecord:
    line: bytes  # the record as it goes into the clean file
    id: str
    dedup_key: str
    record: dict


def clean(agent: Agent, stored_raw: Iterable[bytes], outcome: CleaningOutcome) -> Iterator[CleanRecord]:
    """Yield every valid record; quarantine the rest into `outcome` with line number and a readable reason.

    A repeated id is quarantined and the first occurrence kept. Valid records take the agent's canonical
    shape (`clean_record`); the raw record stays in raw_examples.
    """
    seen: dict[str, int] = {}
    for raw in stored_raw:
        line, record_bytes, error = decode_raw_row(raw)
        outcome.total += 1
        if record_bytes is None:
            outcome.quarantined.append({"line": line, "id": None, "reason": error or "unreadable row", "record": None})
            continue
        try:
            record = orjson.loads(record_bytes)
        except orjson.JSONDecodeError as e:
            outcome.quarantined.append({"line": line, "id": None, "reason": f"not valid JSON ({e})", "record": None,
                                        "text": record_bytes[:2000].decode("utf-8", "replace")})
            continue
        if not isinstance(record, dict):
            outcome.quarantined.append({"line": line, "id": None, "record": None,
                                        "reason": f"expected a JSON object, got {type(record).__name__}"})
            continue
        problems = agent.validate(record)
        rid = agent.record_id(record, line) if not problems or isinstance(record.get("id"), str) else None
        if not problems and rid in seen:
            problems = [f"duplicate id {rid!r} (first seen on line {seen[rid]})"]
        if problems:
            outcome.quarantined.append({"line": line, "id": rid, "reason": "; ".join(problems), "record": record})
            continue
        seen[rid] = line
        outcome.kept += 1
        shaped = agent.clean_record(record)
        if shaped is not record or record.get("id") != rid:  # reshaped: serialise; else keep the source bytes
            record = {**shaped, "id": rid}
            record_bytes = orjson.dumps(record, default=str)
        yield CleanRecord(record_bytes, rid, agent.dedup_key(record), record)

"""One line format for "k of N done" that long steps log and `coursegpt run` turns into progress bars.

Training children (through Pipes) and generation loops log it with the Dagster logger, so it reads well
in the UI's run log, and the terminal's progress view parses the same event-log entries: one format,
written and read here only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PREFIX = "progress:"
_HEAD = re.compile(rf"{re.escape(PREFIX)} (?P<done>\d+)/(?P<total>\d+) (?P<unit>[a-z]+)")
_FIELD = re.compile(r" · (?P<name>[a-z_]+) (?P<value>-?[0-9.]+(?:e[-+]?\d+)?|nan|inf)")


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    unit: str
    fields: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


def format_progress(done: int, total: int, unit: str, **fields: float) -> str:
    """`progress: 12/40 steps · loss 2.3100 · tok_s 812`: the head, then named numbers."""
    parts = [f"{PREFIX} {int(done)}/{int(total)} {unit}"]
    parts += [f"{name} {_number(value)}" for name, value in fields.items() if value is not None]
    return " · ".join(parts)


def parse_progress(message: str) -> Progress | None:
    """The progress a log message reports, or None for any other message."""
    head = _HEAD.search(message or "")
    if head is None:
        return None
    numbers = {m["name"]: float(m["value"]) for m in _FIELD.finditer(message, head.end())}
    return Progress(int(head["done"]), int(head["total"]), head["unit"], numbers)


def eta_seconds(done: int, total: int, elapsed_s: float) -> float | None:
    """Time left at the rate so far; None before the first unit is done."""
    if done <= 0 or total <= done:
        return None if done <= 0 else 0.0
    return elapsed_s * (total - done) / done


def _number(value: float) -> str:
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value == int(value) and abs(value) >= 1:
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1e-3 else f"{value:.4f}"

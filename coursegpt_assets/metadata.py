"""Small helpers that turn rows and numbers into Dagster metadata reviewers can read."""

from __future__ import annotations

import dagster as dg

ROW_COUNT = "dagster/row_count"


def _cell(value, width: int) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def preview(rows: list[dict], columns: list[str], *, limit: int = 5, width: int = 80) -> dg.MetadataValue:
    """A markdown table of the first few rows: the first thing a reviewer looks at."""
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join(
        "| " + " | ".join(_cell(row.get(c, ""), width) for c in columns) + " |\n" for row in rows[:limit]
    )
    return dg.MetadataValue.md(head + body if rows else "_no rows_")


def uri(value: str) -> dg.MetadataValue:
    return dg.MetadataValue.url(value) if value.startswith("gs://") else dg.MetadataValue.path(value)

"""A real-size router source: distinct, valid router traces, as many as a paid Vertex job needs.

The shipped fixture has a few dozen records, and a Vertex job is refused under cost.min_train_rows (500
train rows) or on the fixture itself. These traces are the fixture's valid records, each repeated with a
numbered user query (the dedup and leakage key), so every one survives cleaning and lands in one split.
"""

from __future__ import annotations

from tests.fakes.tuning_store import valid_router_records


def router_traces(count: int) -> list[dict]:
    """`count` valid router records with distinct ids and user queries."""
    base = valid_router_records()
    traces = []
    for i in range(count):
        record = dict(base[i % len(base)])
        record["id"] = f"trace_{i:05d}"
        record["user_query"] = f"{record['user_query']} (request {i})"
        traces.append(record)
    return traces

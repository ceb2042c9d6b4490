"""StoreLease: at most one process at a time does what must happen once, such as submitting a paid job.

A lease on `name` is an append-only log of small JSON entries `leases/<name>/<n>.json` in the artifact
store, each written with `ArtifactStore.create_exclusive` (GCS: `ifGenerationMatch=0`; a folder: a hard
link), so of the processes writing the same `n` exactly one succeeds. The newest entry says who holds it:

- `held`, until its `expires_at`: every other caller waits;
- `released`, or `held` but expired (the holder crashed): the next caller may write `n + 1` and hold it.

Entries are never deleted, so a number is never reused: a slow caller that read an old log can only fail
to write an entry that already exists. A log grows by two entries of a few hundred bytes per holder.
`expires_at` is the holder's wall clock, compared with the reader's, so clocks need only agree to well
within `timeout_s`; a holder still working after `timeout_s` can be overtaken, so the timeout must be
far above how long the guarded work takes.
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from resources.storage import ArtifactStore

LEASE_PREFIX = "leases"
HELD, RELEASED = "held", "released"


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_held(entry: dict, now: float | None = None) -> bool:
    """Whether a log entry still keeps others out: held and not yet expired."""
    now = time.time() if now is None else now
    return entry.get("state") == HELD and float(entry.get("expires_at", 0)) > now


def describe(entry: dict) -> str:
    """Who holds (or held) a lease, for the log lines of those who wait."""
    who = f"{entry.get('host', '?')} pid {entry.get('pid', '?')}"
    if entry.get("state") == HELD:
        return f"held by {who} since {entry.get('acquired_at', '?')}, expires {_utc(float(entry['expires_at']))}"
    return f"released by {who} at {entry.get('released_at', '?')}"


@dataclass
class StoreLease:
    """One caller's handle on the lease `name`; `acquire()` then, when it returned True, `release()`."""

    store: ArtifactStore
    name: str
    timeout_s: float = 900.0
    note: dict = field(default_factory=dict)  # what the holder is doing (pair, labels), kept in its entry
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    held: int | None = None  # the number of this caller's `held` entry while it holds the lease

    def _key(self, n: int) -> str:
        return f"{LEASE_PREFIX}/{self.name}/{n:08d}.json"

    def latest(self) -> tuple[int, dict] | None:
        """The newest log entry and its number, or None when the lease was never taken."""
        numbers = [int(stem) for stem in (posixpath.basename(k).removesuffix(".json")
                                          for k in self.store.list_keys(f"{LEASE_PREFIX}/{self.name}"))
                   if stem.isdigit()]
        if not numbers:
            return None
        n = max(numbers)
        return n, self.store.read_json(self._key(n))

    def _write(self, n: int, entry: dict) -> bool:
        data = (json.dumps({**entry, "holder": self.token, "host": socket.gethostname(), "pid": os.getpid()},
                           sort_keys=True) + "\n").encode("utf-8")
        return self.store.create_exclusive(self._key(n), data, "application/json")

    def acquire(self) -> bool:
        """Hold the lease if it is free (never taken, released or expired); False while another holds it."""
        if self.held is not None:
            return True
        latest = self.latest()
        if latest is not None and is_held(latest[1]):
            return False
        n = 0 if latest is None else latest[0] + 1
        now = time.time()
        if self._write(n, {**self.note, "state": HELD, "acquired_at": _utc(now), "expires_at": now + self.timeout_s}):
            self.held = n
            return True
        return False

    def release(self, **outcome) -> None:
        """Append a `released` entry recording `outcome` (e.g. the job created). If this holder had expired
        and someone else took over, their entry is already there and nothing is written."""
        if self.held is None:
            return
        n, self.held = self.held, None
        self._write(n + 1, {**self.note, **outcome, "state": RELEASED, "released_at": _utc(time.time())})

"""Finished predictions kept in the store while a remote backend generates, so a run that fails halfway (an
outage, a crash, a killed process) resumes where it stopped instead of asking the server again.

The file lives in the report's own folder (`layout.prediction_log`: the report version hashes pair, adapter
version, benchmark version and generation settings, so a changed input finds no file). Each entry is keyed by
the sha256 of the exact request sent (model, prompt, decoding...), so even within one file an answer is only
reused for the identical question. The file is rewritten atomically (the store's writes are) at most every
`flush_every_s` seconds and when generation ends, failed or not; a hard kill loses at most that window.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from coursegpt_assets.core.progress import format_progress

FLUSH_EVERY_S = 10.0


def request_key(request: Any) -> str:
    """The sha256 of a request's canonical JSON: what identifies one question to one server."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class PredictionLog:
    """Answers already received for one report version. Without a store it only counts (a direct
    `generate` call outside `evaluation_report` keeps nothing); Dagster logging happens on the calling thread."""

    def __init__(self, store=None, key: str | None = None, *, total: int = 0, label: str = "", log=None,
                 flush_every_s: float = FLUSH_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.store, self.key, self.total, self.label, self.log = store, key, total, label, log
        self.flush_every_s, self.clock = flush_every_s, clock
        self._entries: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._notes: queue.SimpleQueue[str] = queue.SimpleQueue()  # retry lines from worker threads
        self.retries: Counter[str] = Counter()
        self.resumed = self.generated = 0
        self._started = clock()
        self._last_flush = self._started
        self._dirty = False
        if store is not None and key and store.exists(key):
            self._load()
        self.earlier_wall_s = max((e["t"] for e in self._entries.values()), default=0.0)
        if self._entries:
            self._info(f"{len(self._entries)} finished predictions kept from an earlier run ({self.uri}); "
                       "only the others are generated")

    @property
    def uri(self) -> str:
        return self.store.uri(self.key) if self.store is not None and self.key else "(not kept)"

    def _load(self) -> None:
        for n, line in self.store.iter_lines(self.key):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                entry, why = None, f"invalid JSON: {e.msg}"
            else:
                why = str(entry)[:120]
            well_formed = isinstance(entry, dict) and isinstance(entry.get("key"), str) and isinstance(
                entry.get("value"), list) and isinstance(entry.get("t"), int | float)
            if not well_formed:
                raise ValueError(f"{self.uri} line {n}: not a finished-prediction entry ({why}); delete the file "
                                 "to generate those predictions again")
            self._entries[entry["key"]] = entry

    def _info(self, message: str) -> None:
        if self.log is not None:
            self.log.info(f"{self.label}: {message}" if self.label else message)

    # -- used by the backends ---------------------------------------------------------------------------
    def get(self, request: Any) -> list | None:
        """The kept answer to exactly this request, or None."""
        entry = self._entries.get(request_key(request))
        if entry is None:
            return None
        self.resumed += 1
        return entry["value"]

    def record(self, request: Any, value: list) -> None:
        """Keep one finished answer (JSON-serialisable); flushes when the last flush is old enough."""
        with self._lock:
            t = self.earlier_wall_s + self.clock() - self._started
            self._entries[request_key(request)] = {"key": request_key(request), "t": round(t, 3), "value": value}
            self.generated += 1
            self._dirty = True
        if self.clock() - self._last_flush >= self.flush_every_s:
            self.flush()
            self._info(self.progress())

    def note_retry(self, target: str, attempt: int, delay: float, why) -> None:
        """A retry callback (`http_retry.call_with_retries(on_retry=...)`); safe from any thread."""
        with self._lock:
            self.retries[why.reason] += 1
        self._notes.put(f"{target}: {why.reason} on attempt {attempt}; retrying in {delay:.2f} s")

    def drain_notes(self) -> None:
        """Log the retry lines worker threads queued (called on the thread that owns the Dagster log)."""
        while True:
            try:
                line = self._notes.get_nowait()
            except queue.Empty:
                return
            if self.log is not None:
                self.log.warning(f"{self.label}: {line}" if self.label else line)

    # -- bookkeeping --------------------------------------------------------------------------------------
    def flush(self) -> None:
        with self._lock:
            self._last_flush = self.clock()
            if not self._dirty or self.store is None or not self.key:
                return
            rows = list(self._entries.values())
            self._dirty = False
        self.store.write_jsonl(self.key, rows)

    def progress(self) -> str:
        retries = sum(self.retries.values())
        by_reason = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.retries.items()))
        line = format_progress(self.resumed + self.generated, self.total, "predictions", kept=self.resumed,
                               generated=self.generated, retries=retries)
        return line + (f" ({by_reason})" if retries else "")

    def discard(self) -> None:
        """Forget every kept answer (the report is complete, or `force` asks to generate again)."""
        with self._lock:
            self._entries.clear()
            self._dirty = False
        if self.store is not None and self.key:
            self.store.delete(self.key)

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.drain_notes()
        self.flush()
        if not (self.resumed or self.generated or self.retries):  # a backend that keeps nothing (local)
            return
        if exc_type is None:
            self._info(self.progress())
        elif self.log is not None:
            self.log.error(f"{self.label}: generation stopped: {self.progress()}; {len(self._entries)} finished "
                           f"predictions are kept in {self.uri}, and materialising again resumes from there")


def answer_all(requests: Sequence[Any], send: Callable[[list], list], *, log: PredictionLog, batch_size: int = 1,
               concurrency: int = 1, thread_name: str = "predict") -> list[list]:
    """The answer to every request, in order: kept ones from `log`, the rest from `send(batch)` (a list of
    JSON-serialisable answers, one per request of the batch) on `concurrency` threads, each recorded in `log`
    as it arrives. On the first failure no new batch starts; the batches in flight finish and are kept, then
    the error is raised."""
    answers: list[list | None] = [log.get(r) for r in requests]
    missing = [i for i, a in enumerate(answers) if a is None]
    batches = [missing[s:s + batch_size] for s in range(0, len(missing), batch_size)]
    failure: BaseException | None = None
    waiting = iter(batches)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=thread_name) as pool:
        pending: dict[Future, list[int]] = {}

        def start_next() -> None:
            batch = next(waiting, None)
            if batch is not None:
                pending[pool.submit(send, [requests[i] for i in batch])] = batch

        for _ in range(concurrency):
            start_next()
        while pending:
            done, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            log.drain_notes()
            for future in done:
                batch = pending.pop(future)
                if future.exception() is not None:
                    failure = failure or future.exception()
                    continue
                values = future.result()
                if len(values) != len(batch):
                    raise ValueError(f"{len(values)} answers for {len(batch)} requests")
                for i, value in zip(batch, values, strict=True):
                    log.record(requests[i], value)
                    answers[i] = value
                if failure is None:
                    start_next()
    if failure is not None:
        raise failure
    return answers  # type: ignore[return-value]

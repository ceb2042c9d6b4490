"""Live progress for `coursegpt run`: one line per finished step, and a sign of life from running ones.

The printer follows each run's event log incrementally (`get_records_for_run` with a cursor per run),
so a poll reads only what was written since the last one. Steps that log progress lines
(`core.progress`: training steps through Pipes, generation rows) get a bar per running step on a
terminal, or a plain line every 30 s otherwise (CI logs, pipes to files).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from coursegpt_assets.core.progress import Progress, eta_seconds, parse_progress

INVOCATION_TAG = "coursegpt/invocation"
_STEP_ENDS = {
    dg.DagsterEventType.STEP_SUCCESS: "success",
    dg.DagsterEventType.STEP_FAILURE: "failure",
    dg.DagsterEventType.STEP_SKIPPED: "skipped",
}
_MARKS = {"success": "✓", "failure": "✗", "skipped": "-"}


@dataclass
class StepLine:
    asset: str
    partition: str
    status: str
    seconds: float
    headline: dict[str, float] = field(default_factory=dict)


@dataclass
class RunningStep:
    label: str
    started: float  # event-log timestamp of the step's first progress line
    progress: Progress


def describe(step: RunningStep, now: float) -> str:
    """`step 12/40 (30%) · loss 2.3100 · 812 tok/s · ETA 1m20s` for a running step."""
    p = step.progress
    parts = [f"{p.done}/{p.total} {p.unit} ({p.fraction:.0%})"]
    if "loss" in p.fields:
        parts.append(f"loss {p.fields['loss']:.4f}")
    if "tok_s" in p.fields:
        parts.append(f"{p.fields['tok_s']:.0f} tok/s")
    eta = eta_seconds(p.done, p.total, max(0.0, now - step.started))
    if eta is not None:
        parts.append(f"ETA {_duration(eta)}")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class PlainView:
    """Lines only: each finished step at once; each running step's progress at most every `interval` s."""

    def __init__(self, emit: Callable[[str], None], interval: float = 30.0):
        self.emit, self.interval = emit, interval
        self._last: dict[str, float] = {}

    def line(self, text: str) -> None:
        self.emit(text)

    def update(self, uid: str, step: RunningStep, now: float, elapsed: float) -> None:
        if uid not in self._last:
            self._last[uid] = now  # the first line comes one interval after the step starts reporting
            return
        if now - self._last[uid] >= self.interval:
            self._last[uid] = now
            self.emit(f"[{elapsed:7.1f}s] … {step.label:<57} {describe(step, now)}")

    def finish(self, uid: str) -> None:
        self._last.pop(uid, None)

    def close(self) -> None:
        pass


class BarView:
    """A `rich` progress bar per running step; finished-step lines print above the bars."""

    def __init__(self):
        from rich.progress import BarColumn, Progress, TextColumn

        self._bars = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                              transient=True)
        self._tasks: dict[str, int] = {}
        self._bars.start()

    def line(self, text: str) -> None:
        self._bars.console.print(text, markup=False, highlight=False)

    def update(self, uid: str, step: RunningStep, now: float, elapsed: float) -> None:
        info = describe(step, now)
        if uid not in self._tasks:
            self._tasks[uid] = self._bars.add_task(step.label, total=step.progress.total, info=info)
        self._bars.update(self._tasks[uid], completed=step.progress.done, total=step.progress.total, info=info)

    def finish(self, uid: str) -> None:
        task = self._tasks.pop(uid, None)
        if task is not None:
            self._bars.remove_task(task)

    def close(self) -> None:
        self._bars.stop()


def view_for(emit: Callable[[str], None]):
    """Bars when printing to a terminal, plain lines otherwise (and whenever output is captured)."""
    return BarView() if emit is print and sys.stdout.isatty() else PlainView(emit)


class ProgressPrinter:
    """Follows the event logs of this invocation's runs: finished steps, and progress of running ones."""

    def __init__(self, instance: dg.DagsterInstance, invocation: str, emit: Callable[[str], None],
                 headline: Callable[[dict], dict[str, float]], view=None):
        self.instance, self.invocation, self.headline = instance, invocation, headline
        self.view = view or view_for(emit)
        self.started = time.monotonic()
        self.lines: list[StepLine] = []
        self._cursors: dict[str, str | None] = {}
        self._done_runs: set[str] = set()
        self._materialized: dict[str, dict] = {}
        self._running: dict[str, RunningStep] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def poll(self) -> None:
        with self._lock:
            runs = self.instance.get_runs(filters=dg.RunsFilter(tags={INVOCATION_TAG: self.invocation}))
            for run in reversed(runs):  # oldest first
                if run.run_id not in self._done_runs:
                    self._follow(run)
            now = time.time()
            for uid, step in self._running.items():
                self.view.update(uid, step, now, time.monotonic() - self.started)

    def _follow(self, run) -> None:
        """Read the run's new event-log records; a finished run whose log is read is not read again."""
        finished = run.is_finished  # read before the records, so no record written after it is missed
        partition = run.tags.get("dagster/partition", "")
        while True:
            conn = self.instance.get_records_for_run(run.run_id, cursor=self._cursors.get(run.run_id), limit=1000)
            for record in conn.records:
                self._handle(run.run_id, partition, record.event_log_entry)
            self._cursors[run.run_id] = conn.cursor
            if not conn.has_more:
                break
        if finished:
            self._done_runs.add(run.run_id)

    def _handle(self, run_id: str, partition: str, entry) -> None:
        uid = f"{run_id}:{entry.step_key}"
        event = entry.dagster_event
        if event is None:
            progress = parse_progress(entry.user_message) if entry.step_key else None
            if progress is not None:
                step = self._running.get(uid)
                label = f"{entry.step_key} {partition}"
                self._running[uid] = RunningStep(label, step.started if step else entry.timestamp, progress)
            return
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            self._materialized[uid] = dict(event.step_materialization_data.materialization.metadata)
        elif event.event_type in _STEP_ENDS:
            self._finish(uid, event, partition)

    def _finish(self, uid: str, event, partition: str) -> None:
        status = _STEP_ENDS[event.event_type]
        seconds = (getattr(event.event_specific_data, "duration_ms", None) or 0) / 1000
        line = StepLine(event.step_key, partition, status, seconds, self.headline(self._materialized.pop(uid, {})))
        self.lines.append(line)
        if self._running.pop(uid, None) is not None:
            self.view.finish(uid)
        elapsed = time.monotonic() - self.started
        self.view.line(f"[{elapsed:7.1f}s] {_MARKS[status]} {line.asset:<36} {partition:<20} {status:<8} "
                       f"{seconds:6.1f}s")
        error = getattr(event.event_specific_data, "error", None)
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            self.view.line(f"            {error.message.strip()[:300]}")

    def run_in_background(self, interval: float = 0.5) -> threading.Thread:
        def loop():
            while not self._stop.wait(interval):
                self.poll()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        self.poll()
        self.view.close()

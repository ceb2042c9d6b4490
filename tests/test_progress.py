"""`coursegpt run`'s live progress: the log-line format, the plain view, and the event-log follower."""

import dagster as dg
import pytest

from coursegpt_assets.cli.progress import INVOCATION_TAG, PlainView, ProgressPrinter, RunningStep, describe
from coursegpt_assets.core.progress import Progress, eta_seconds, format_progress, parse_progress


def test_a_progress_line_round_trips_with_its_numbers():
    line = format_progress(12, 40, "steps", loss=2.31, lr=2e-4, tok_s=812.4)
    assert line == "progress: 12/40 steps · loss 2.3100 · lr 0.0002 · tok_s 812.4000"
    parsed = parse_progress(line)
    assert parsed == Progress(12, 40, "steps", {"loss": 2.31, "lr": 2e-4, "tok_s": 812.4})
    assert parse_progress("[pipes] step 3 started") is None and parse_progress("") is None
    assert parse_progress(format_progress(3, 9, "completions")) == Progress(3, 9, "completions", {})


def test_eta_is_the_rate_so_far():
    assert eta_seconds(10, 40, 30.0) == pytest.approx(90.0)
    assert eta_seconds(0, 40, 30.0) is None and eta_seconds(40, 40, 30.0) == 0.0


def test_describe_shows_share_loss_throughput_and_eta():
    step = RunningStep("tuning_job router__tiny-llama", started=100.0,
                       progress=Progress(12, 40, "steps", {"loss": 2.31, "tok_s": 812.0}))
    assert describe(step, now=130.0) == "12/40 steps (30%) · loss 2.3100 · 812 tok/s · ETA 1m10s"


def test_the_plain_view_prints_a_running_step_once_per_interval():
    lines: list[str] = []
    view = PlainView(lines.append, interval=30.0)
    step = RunningStep("tuning_job p", started=0.0, progress=Progress(1, 4, "steps"))
    for now in (0.0, 10.0, 29.0, 30.0, 45.0, 61.0):
        view.update("run:step", step, now, elapsed=now)
    assert len(lines) == 2 and all("1/4 steps (25%)" in line for line in lines)


ROWS = 5
MID_RUN: list = []  # polls the test's printer while the step runs (the asset runs in this process)


@dg.asset
def slow_rows(context: dg.AssetExecutionContext) -> None:
    for done in range(1, ROWS + 1):
        context.log.info(format_progress(done, ROWS, "rows"))
        if done == 3:
            for poll in MID_RUN:
                poll()
    context.log.info("an ordinary message")


class RecordingView(PlainView):
    def __init__(self):
        super().__init__(lambda _line: None, interval=0.0)
        self.seen: list[tuple[str, Progress]] = []
        self.finished_lines: list[str] = []

    def update(self, uid, step, now, elapsed):
        self.seen.append((uid, step.progress))

    def line(self, text):
        self.finished_lines.append(text)


def test_the_printer_follows_each_run_log_once_with_a_cursor(monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    calls: list = []
    original = instance.get_records_for_run

    def counting(run_id, cursor=None, **kwargs):
        calls.append(cursor)
        return original(run_id, cursor=cursor, **kwargs)

    monkeypatch.setattr(instance, "get_records_for_run", counting)
    view = RecordingView()
    printer = ProgressPrinter(instance, "inv1", print, headline=lambda md: {}, view=view)
    MID_RUN.append(printer.poll)
    try:
        result = dg.materialize([slow_rows], instance=instance, tags={INVOCATION_TAG: "inv1"})
    finally:
        MID_RUN.clear()
    assert result.success
    # mid-run the step was running, at its third row
    assert [(uid.split(":")[1], p.done, p.total, p.unit) for uid, p in view.seen] == [("slow_rows", 3, ROWS, "rows")]
    mid_run_reads = len(calls)
    printer.poll()
    assert [line.asset for line in printer.lines] == ["slow_rows"]
    assert len(view.finished_lines) == 1 and "✓ slow_rows" in view.finished_lines[0]
    reads = len(calls)
    printer.poll()  # a finished run whose log was read is not read again
    assert len(calls) == reads and len(printer.lines) == 1
    assert calls[0] is None and all(c is not None for c in calls[mid_run_reads:])  # later reads go on from a cursor

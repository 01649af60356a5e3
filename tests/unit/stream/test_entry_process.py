"""The entry stage as a child process of the worker (pipeline/stream/entry_process.py): the worker
builds it so by default, its counts reach the worker's /metrics as they would from the stage
in-process, and the child-process plumbing (pipeline/child_process.py) reads its reports and
stops it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.app import build_worker
from pipeline.child_process import ChildProcess
from pipeline.observability import WorkerMetrics
from pipeline.settings import Settings
from pipeline.stream.entry import EntryStage
from pipeline.stream.entry_process import EntryProcess, EntryReport, apply_report
from pipeline.stream.worker import EntryStats
from tests.unit.stream.test_entry import lines, records, router  # noqa: F401 (fixture)

TOPIC = "cx.touchpoints"


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if not s.name.endswith("_created") and s.name != "peakend_last_event_timestamp_seconds"}


def test_the_childs_reports_give_the_worker_the_counts_of_the_stage_in_process(
        lines: list[bytes]) -> None:  # noqa: F811
    read = records(lines, "round_robin")
    in_process, from_child = WorkerMetrics.create(), WorkerMetrics.create()
    direct = EntryStats(in_process, TOPIC)
    relayed = EntryStats(from_child, TOPIC)
    report = EntryReport()
    reports = []
    for start in range(0, len(read), 700):  # several reads, several reports
        routed = router().route(read[start:start + 700], 0)
        direct.entry_read(routed)
        report.entry_read(routed)
        direct.entry_lag(start % 4, start)
        report.entry_lag(start % 4, start)
        if start % 2100 == 0:  # now and then records the retention deleted unread
            direct.entry_expired(start % 3, 5 + start)
            report.entry_expired(start % 3, 5 + start)
        if start % 1400 == 700:
            line = report.take()
            assert line is not None
            reports.append(line)
    last = report.take()
    assert last is not None
    reports.append(last)
    assert report.take() is None  # nothing new, no line
    for line in reports:
        apply_report(line, relayed.add, relayed.entry_lag, relayed.entry_expired)
    got, want = _samples(from_child.registry), _samples(in_process.registry)
    assert got == want
    # and it counted something: the read records and at least one dead letter reason
    assert want[("peakend_events_in_total", (("topic", TOPIC),))] == len(read)
    assert any(name == "peakend_dead_letters_total" and value > 0
               for (name, _), value in want.items())
    assert want[("peakend_input_records_expired_total", (("topic", TOPIC),))] == sum(
        5 + start for start in range(0, len(read), 700) if start % 2100 == 0)


def test_the_worker_runs_its_entry_stage_as_a_child_unless_told_not_to(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEAKEND_ENTRY_PROCESS", raising=False)
    child = build_worker(Settings.from_env(), migrate=False)
    assert isinstance(child.tasks.entry, EntryProcess)  # and no entry stage in this process
    assert inside_journeys(child).handoff is None  # nothing to hand off across processes
    monkeypatch.setenv("PEAKEND_ENTRY_PROCESS", "false")
    inside = build_worker(Settings.from_env(), migrate=False)
    assert isinstance(inside.tasks.entry, EntryStage)
    assert inside.tasks.entry.router.handoff is not None
    assert inside_journeys(inside).handoff is inside.tasks.entry.router.handoff


def inside_journeys(worker: Any) -> Any:
    assert worker.journeys is not None  # the worker's own app runs the journeys agent
    return worker.journeys


class Script(ChildProcess):
    """A child that runs a Python snippet instead of a `peakend` command."""

    def __init__(self, code: str, **kw: Any) -> None:
        super().__init__("script", **kw)
        self.code = code

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.code]


def test_a_childs_lines_reach_the_worker_and_stop_ends_it(tmp_path: Path) -> None:
    got: list[bytes] = []
    child = Script("import sys, time\n"
                   "for i in range(3): print('line', i, flush=True)\n"
                   "time.sleep(60)\n", on_line=got.append)
    child.start()
    assert child.proc is not None
    deadline = time.monotonic() + 20
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got == [b"line 0\n", b"line 1\n", b"line 2\n"]
    started = time.monotonic()
    child.stop()
    assert child.proc.returncode is not None
    assert time.monotonic() - started < 5  # SIGTERM, not the 20 s wait and a kill


def test_a_garbled_report_is_logged_and_the_next_one_still_counts(
        caplog: pytest.LogCaptureFixture) -> None:
    stats = WorkerMetrics.create()
    entry = EntryStats(stats, TOPIC)
    seen: list[bytes] = []

    def on_line(line: bytes) -> None:
        seen.append(line)
        apply_report(line, entry.add, entry.entry_lag, entry.entry_expired)

    child = Script("print('not json', flush=True)\n"
                   "print('{\"records\":2,\"dead\":{},\"lag\":{},\"at\":1.0}', flush=True)\n",
                   on_line=on_line)
    child.start()
    assert child.proc is not None
    child.proc.wait(20)
    deadline = time.monotonic() + 20
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    assert stats.events_in.labels(TOPIC)._value.get() == 2
    assert any("child report ignored" in r.getMessage() for r in caplog.records)


def test_peakend_entry_is_a_command() -> None:
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "entry", "--help"],
                         capture_output=True, text=True, check=True, timeout=60)
    assert "--parent-pid" in out.stdout


def test_a_report_to_a_worker_that_is_gone_is_dropped_without_a_traceback() -> None:
    """A killed worker closes the pipe's other end: the child's report task must not raise
    (it printed `Task exception was never retrieved ... BrokenPipeError` at every kill)."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the worker is gone
    report = EntryReport()
    report.entry_lag(0, 5)
    out = os.fdopen(write_end, "wb", buffering=0)  # each write reaches the pipe at once
    report.flush(out)  # BrokenPipeError before, now nothing
    assert report.take() is None  # the report was taken, not kept to be sent again
    out.close()
    report.entry_lag(1, 7)
    report.flush(out)  # a closed file (ValueError) is dropped too

"""`peakend drivers` over ClickHouse equals `peakend drivers` over replay's files for the same
events (the storage scenario), on either engine; the job's rows in `key_drivers`, the view
`key_drivers_latest` and the quadrant panel's query (dashboards/panels_drivers.py)."""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest

from dashboards import panels_drivers
from jobs import drivers
from pipeline.settings import Settings
from tests.unit.dashboards.grafana_macros import expand
from tests.unit.storage import scenario
from tests.unit.storage.ch_helpers import Databases
from tests.unit.storage.windows_check import replay_scenario

ARGS = argparse.Namespace(method="auto", expect=[("hotline", 0.5)], expect_default=0.0,
                          bootstrap=40, seed=3)


def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[drivers.Driver]:
    out = replay_scenario(tmp_path, monkeypatch)
    lines = scenario._Builder(random.Random(20261122)).build()
    assert (tmp_path / "events.jsonl").read_bytes() == b"".join(r + b"\n" for _, r in lines)
    settings = Settings.from_env()
    builder = drivers.features_from_files(str(tmp_path / "events.jsonl"),
                                          str(out / "journeys.jsonl"),
                                          drivers.FeatureBuilder(), settings)
    assert builder.unmatched == 0
    return drivers.run_analysis(builder, ARGS, settings)


def assert_same(got: list[drivers.Driver], want: list[drivers.Driver], what: str) -> None:
    assert [d.driver for d in got] == [d.driver for d in want], what
    for g, w in zip(got, want, strict=True):
        for name, a, b in zip(drivers.DRIVER_COLUMNS[4:], astuple(g), astuple(w), strict=True):
            if isinstance(a, float) and isinstance(b, float):
                assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (what, g.driver, name)
            else:
                assert a == b, (what, g.driver, name, a, b)


def check_clickhouse_equals_offline(dbs: Databases, want: list[drivers.Driver]) -> None:
    scenario.load(dbs.writer)
    settings = Settings.from_env()
    builder = drivers.features_from_clickhouse(dbs.reader, drivers.FeatureBuilder(), settings,
                                               0, drivers.NO_END_MS)
    got = drivers.run_analysis(builder, ARGS, settings)
    assert_same(got, want, dbs.engine)
    top = drivers.top_negative(got)
    assert top is not None and top.driver == "hotline"

    # the job: two runs, the view shows the later one only
    drivers.write_results(dbs.writer, got[:2], 1_000, 0, drivers.NO_END_MS)
    assert drivers.write_results(dbs.writer, got, 2_000, 0, drivers.NO_END_MS) == len(got)
    rows = dbs.reader.query(
        f"SELECT {', '.join(drivers.DRIVER_COLUMNS[4:])} FROM key_drivers_latest "
        "WHERE dim = %(dim)s AND outcome = %(outcome)s ORDER BY rank",
        {"dim": "touchpoint", "outcome": "nps"})
    stored = []
    for row in rows:
        values: list[Any] = [bool(v) if name == "significant" else v
                             for name, v in zip(drivers.DRIVER_COLUMNS[4:], row, strict=True)]
        stored.append(drivers.Driver(*values))
    assert_same(stored, got, f"key_drivers_latest on {dbs.engine}")
    assert dbs.reader.query("SELECT count() FROM key_drivers")[0][0] == len(got) + 2
    # run_at is the run's instant whatever the server's and the client's zones (sent as epoch
    # seconds): read back in UTC, next to its _ms column
    runs = dbs.reader.query("SELECT DISTINCT toUnixTimestamp(run_at), run_at_ms FROM key_drivers "
                            "ORDER BY run_at_ms")
    assert runs == [(1, 1_000), (2, 2_000)]

    # the analyst guide's query (section Key drivers) as the reader
    guide = (Path(__file__).resolve().parents[3] / "docs" / "analyst-guide.md").read_text()
    query = guide.split("Latest run from ClickHouse", 1)[1].split("```sql\n", 1)[1]
    ranked = dbs.reader.query(query.split("```", 1)[0])
    assert [(r[0], r[1]) for r in ranked] == [(d.rank, d.driver) for d in got]

    # the quadrant panel, macros expanded as Grafana's plugin does
    sql = expand(panels_drivers.SQL, scenario.START, scenario.START, 60,
                 {"driver_dim": "touchpoint", "driver_outcome": "nps"})
    panel = dbs.reader.query(sql)
    assert [r[0] for r in panel] == [d.driver for d in got]
    first = panel[0]
    assert first[0] == "hotline" and first[6] == "fix first"
    assert math.isclose(first[1], got[0].share) and math.isclose(first[-1], 1 / len(got))
    json.dumps([list(map(str, r)) for r in panel])  # plain values a data source can send


ANSWER_AFTER_MS = 86_400_000  # the survey a day after the journey: a journey of its own


def check_answers_after_the_journey(dbs: Databases, tmp_path: Path) -> None:
    """Customer-keyed journeys whose NPS survey comes a day later (jobs.planted): replay's
    journeys and the events in ClickHouse give the same analysis as replay's files, and the
    answers after the journeys are the outcome on both (FeatureBuilder's outcome-only rule)."""
    from jobs.planted import planted_events
    from pipeline.cli import main
    from pipeline.contract import parse_event
    from pipeline.contract.encode import event_to_dict
    from pipeline.storage import tables

    weights = {"hotline": 0.9, "delivery": 0.5, "checkout": 0.2, "newsletter": 0.0}
    lines = [json.dumps(e).encode() for e in planted_events(
        400, weights, seed=12, journey_ids=False, answer_after_ms=ANSWER_AFTER_MS)]
    events = tmp_path / "after.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in lines))
    out = tmp_path / "after-out"
    assert main(["replay", str(events), "--output", str(out), "--now",
                 "2030-01-01T00:00:00Z"]) == 0
    settings = Settings.from_env()
    offline_builder = drivers.features_from_files(str(events), str(out / "journeys.jsonl"),
                                                  drivers.FeatureBuilder(), settings)
    want = drivers.run_analysis(offline_builder, ARGS, settings)
    journeys = [json.loads(line) for line in (out / "journeys.jsonl").read_text().splitlines()]
    for table, records in (("journeys", journeys),
                           ("touchpoint_events", [event_to_dict(parse_event(raw))
                                                  for raw in lines])):
        columns, data = tables.rows(table, records)
        dbs.writer.insert(table, columns, data)
    builder = drivers.features_from_clickhouse(dbs.reader, drivers.FeatureBuilder(), settings,
                                               0, drivers.NO_END_MS)
    got = drivers.run_analysis(builder, ARGS, settings)
    assert_same(got, want, f"answers after the journey on {dbs.engine}")
    assert builder.followed == offline_builder.followed > 390  # 0.3^4 of them visit nothing
    # the 400 answers, and the journeys that visited nothing (a journey_end marker alone)
    assert builder.outcome_only == offline_builder.outcome_only == 400 + 400 - builder.followed
    assert got[0].journeys == builder.followed
    assert max(got, key=lambda d: d.importance).driver == "hotline"

"""`peakend drivers` over replay's Parquet inputs (drivers_events.parquet,
drivers_journeys.parquet: `pipeline.driver_inputs`) gives the features, and so the rows, of the
events file read again (`features_from_files`, the path of a replay from before the files), on
data with every case the reading handles: contract rejects, late events, duplicates, conflicting
copies, customer-keyed journeys with the answer or churn a day later, valences from signals and
surveys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import drivers
from jobs.planted import planted_events
from pipeline import driver_inputs
from pipeline.cli import main
from pipeline.settings import Settings
from tests.unit.cli_util import cli

NOW = "2030-01-01T00:00:00Z"
DAY_MS = 86_400_000
PLANTED = {"hotline": 0.9, "delivery": 0.6, "checkout": 0.35, "app": 0.15, "newsletter": 0.0}
# Both paths add the same valences in the same order: equal to rounding, stated anyway
TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(events file, replay output directory), replayed once for the module."""
    tmp = tmp_path_factory.mktemp("columnar")
    generated = tmp / "generated.jsonl"
    # after the planted journeys (2026-09-01 plus a day of late answers): not late behind them
    assert main(["generate", "--events", "4000", "--seed", "3", "--start",
                 "2026-09-05T00:00:00Z", "--span", "6h", "--invalid-fraction", "0.01",
                 "--mix", "bank=0.4,hotel=0.3,ecommerce=0.3", "--output", str(generated),
                 "--quiet"]) == 0
    planted = [json.dumps(e).encode() for e in planted_events(
        500, PLANTED, seed=11, journey_ids=False, answer_after_ms=DAY_MS, churn_at_or_below=3)]
    lines = generated.read_bytes().splitlines()  # the invalid records are not all UTF-8
    valid = []
    for line in lines[:400]:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event_id" in event and "type" in event:
            valid.append(event)
    duplicates = [json.dumps(e).encode() for e in valid[:40:4]]
    conflicts = [json.dumps({**e, "touchpoint": "conflicting-copy"}).encode()
                 for e in valid[1:40:4]]
    late = [json.dumps({**e, "event_id": f"late-{i}",
                        "occurred_at": "2026-08-20T00:00:00Z"}).encode()
            for i, e in enumerate(valid[2:40:4])]
    events = tmp / "events.jsonl"
    events.write_bytes(b"\n".join([*planted, *lines, *duplicates, *conflicts, *late]) + b"\n")
    out = tmp / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(driver_inputs, "BATCH_ROWS", 997)  # the spool in several row groups
        assert main(["replay", str(events), "--output", str(out), "--now", NOW]) == 0
    letters = {json.loads(line)["reason"]
               for line in (out / "dead_letters.jsonl").read_text().splitlines()}
    assert {"late", "conflict"} <= letters and len(letters) > 2  # and contract rejects
    return events, out


@pytest.mark.parametrize("dim", drivers.DIMENSIONS)
def test_replays_columns_give_the_features_of_the_events_file(
        replayed: tuple[Path, Path], dim: str) -> None:
    events, out = replayed
    journeys = str(out / "journeys.jsonl")
    from_files = drivers.features_from_files(str(events), journeys, drivers.FeatureBuilder(dim),
                                             Settings.from_env({}))
    paths = drivers.replay_inputs(journeys)
    assert paths is not None
    assert pq.ParquetFile(paths[1]).num_row_groups > 3
    from_columns = drivers.features_from_replay(paths, drivers.FeatureBuilder(dim))
    for builder in (from_files, from_columns):
        assert builder.journeys and builder.drivers
    assert from_columns.unmatched == from_files.unmatched
    for outcome in ("nps", "peak_end_score", "outcome:churn"):  # chosen at build()
        from_files.outcome = from_columns.outcome = outcome
        a, b = from_files.build(), from_columns.build()
        assert (from_columns.outcome_only, from_columns.followed) == (
            from_files.outcome_only, from_files.followed)
        if outcome != "peak_end_score":
            assert from_files.followed > 0  # the answers / churn a day after the journey
        assert b.drivers == a.drivers and b.moments == a.moments
        assert b.negatives == a.negatives
        assert len(a.y) > 500 and a.x.shape == b.x.shape
        np.testing.assert_allclose(b.x, a.x, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(b.y, a.y, rtol=0, atol=TOLERANCE)
        np.testing.assert_array_equal(b.visits, a.visits)
        np.testing.assert_allclose(b.valence_sum, a.valence_sum, rtol=TOLERANCE)


def test_the_command_reads_the_columns_and_an_older_replay_the_events(
        replayed: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the Parquet files the events file is not needed (nor read: a missing one is no
    error); a replay directory without them (an older replay) is read the old way; the rows
    are the same."""
    events, out = replayed
    older = tmp_path / "older"
    older.mkdir()
    for name in ("journeys.jsonl", "dead_letters.jsonl"):
        shutil.copy(out / name, older / name)
    options = ("--json", "--bootstrap", "20", "--by", "channel")
    new = cli(capsys, "drivers", "--journeys", str(out / "journeys.jsonl"), *options)
    assert new.status == 0, new.err
    same = cli(capsys, "drivers", str(tmp_path / "absent.jsonl"), "--journeys",
               str(out / "journeys.jsonl"), *options)
    assert same.out == new.out
    old = cli(capsys, "drivers", str(events), "--journeys", str(older / "journeys.jsonl"),
              *options)
    assert old.status == 0, old.err
    new_rows = [json.loads(line) for line in new.out.splitlines()]
    old_rows = [json.loads(line) for line in old.out.splitlines()]
    assert len(new_rows) == len(old_rows) > 2
    for n, o in zip(new_rows, old_rows, strict=True):
        assert n.keys() == o.keys()
        for key, value in o.items():
            if isinstance(value, float):
                assert n[key] == pytest.approx(value, abs=TOLERANCE), key
            else:
                assert n[key] == value, key
    missing = cli(capsys, "drivers", "--journeys", str(older / "journeys.jsonl"))
    assert missing.status == 2 and "give the events file" in missing.one_line_error()


def test_a_damaged_columns_file_is_one_line_naming_it(
        replayed: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = replayed
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / driver_inputs.EVENTS_FILE).write_bytes(b"not parquet\n")
    result = cli(capsys, "drivers", "--journeys", str(copy / "journeys.jsonl"))
    assert result.status == 2
    assert result.one_line_error().startswith(
        f"peakend drivers: cannot read {copy / driver_inputs.EVENTS_FILE}: ")


def test_columns_beside_another_runs_journeys_are_refused(
        replayed: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A replay older than the Parquet inputs rewrote the directory and left them: they are
    not used (their journeys.jsonl had another size), one line says why."""
    _, out = replayed
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with (copy / "journeys.jsonl").open("ab") as handle:
        handle.write(b"\n")
    result = cli(capsys, "drivers", "--journeys", str(copy / "journeys.jsonl"))
    assert result.status == 2
    assert "drivers_journeys.parquet is not from the replay that wrote" in (
        result.one_line_error())


def test_a_replay_applying_no_event_writes_empty_columns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"not": "an event"}\n')
    out = tmp_path / "out"
    assert main(["replay", str(events), "--output", str(out), "--now", NOW]) == 0
    paths = drivers.replay_inputs(str(out / "journeys.jsonl"))
    assert paths is not None
    builder = drivers.features_from_replay(paths, drivers.FeatureBuilder())
    assert not builder.journeys and not builder.drivers
    result = cli(capsys, "drivers", "--journeys", str(out / "journeys.jsonl"))
    assert result.status == 2 and "no drivers" in result.one_line_error()

"""Parquet round trip, and backfill = replay (through the same table mapping), resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from backfill_util import CORE, EVENTS, RecordingWarehouse, final, replay_tables, write_both

from jobs.backfill import Backfill, BackfillOptions, Checkpoint, Interrupted, run_backfill
from jobs.generate import generate_records, write_parquet
from jobs.parquet_schema import SCHEMA, check_schema, read_event_dicts
from pipeline.cli import main
from pipeline.contract import Rejected, parse_dict
from pipeline.core.timefmt import format_ms, parse_ms


def test_parquet_round_trip_gives_the_same_event_dicts(tmp_path: Path) -> None:
    records = [r for r in generate_records(replace(EVENTS, events=3000), json_only=False)
               if isinstance(r, dict)]
    _, parquet, count = write_both(replace(EVENTS, events=3000), tmp_path)
    assert count == len(records)
    back = list(read_event_dicts(parquet, batch_rows=700))
    assert back == records
    assert pq.ParquetFile(parquet).schema_arrow.equals(SCHEMA, check_metadata=False)


def test_cli_parquet_output_is_reproducible(tmp_path: Path) -> None:
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    for path in paths:
        assert main(["generate", "--to", "parquet", "--output", str(path), "--events", "3000",
                     "--invalid-fraction", "0.05", "--quiet"]) == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert pq.ParquetFile(paths[0]).metadata.num_rows > 3000


def test_check_schema_names_what_is_wrong(tmp_path: Path) -> None:
    other = pa.schema([pa.field("event_id", pa.int64()), pa.field("colour", pa.string())])
    with pytest.raises(ValueError, match=r"event_id is int64.*missing column occurred_at.*colour"):
        check_schema(other, "x.parquet")


def test_invalid_rows_get_the_stream_verdict(tmp_path: Path) -> None:
    """Rows the contract rejects become dead letters with the contract's reason and text."""
    config = replace(EVENTS, events=2000, invalid_fraction=0.2)
    _, parquet, _ = write_both(config, tmp_path)
    backfill = Backfill(CORE)
    source = pq.ParquetFile(parquet)
    row = 1
    for batch in source.iter_batches(batch_size=512):
        backfill.batch("events.parquet", row, batch)
        row += batch.num_rows
    letters = backfill.pending.dead_letters
    assert len(letters) > 300
    for letter in letters:
        with pytest.raises(Rejected) as info:
            parse_dict(json.loads(letter.original))
        assert (letter.reason, letter.error) == (info.value.reason, info.value.error)


def test_too_large_rows_are_rejected_like_the_stream(tmp_path: Path) -> None:
    record = next(r for r in generate_records(EVENTS) if isinstance(r, dict))
    big = {**record, "event_id": "big", "touchpoint": "x" * 70_000}
    write_parquet([record, big], tmp_path / "big.parquet")
    backfill = Backfill(CORE)
    backfill.batch("big.parquet", 1, next(pq.ParquetFile(tmp_path / "big.parquet")
                                        .iter_batches()))
    assert [d.reason for d in backfill.pending.dead_letters] == ["too_large"]


@pytest.mark.parametrize("partitions", [3])
def test_backfill_writes_what_replay_outputs(tmp_path: Path, partitions: int) -> None:
    jsonl, parquet, _ = write_both(EVENTS, tmp_path)
    expected = replay_tables(jsonl, CORE, partitions)
    warehouse = RecordingWarehouse()
    result = run_backfill([str(parquet)], warehouse, CORE,
                          BackfillOptions(partitions=partitions, batch_rows=1000))
    assert result.counts["dead_letters"] > 50
    for table, want in expected.items():
        got = final(table, warehouse.inserted.get(table, []))
        assert got == want, table
    assert expected["alerts"], "the injected drop should fire an alert"
    assert len(final("touchpoint_events", warehouse.inserted["touchpoint_events"])) == \
        result.counts["events"]


def test_resume_after_interruption_gives_the_same_tables(tmp_path: Path) -> None:
    _, parquet, rows = write_both(EVENTS, tmp_path)
    whole = RecordingWarehouse()
    run_backfill([str(parquet)], whole, CORE,
                 BackfillOptions(partitions=2, batch_rows=1000))
    broken = RecordingWarehouse()
    checkpoint = tmp_path / "ck.json"
    with pytest.raises(Interrupted):
        run_backfill([str(parquet)], broken, CORE,
                     BackfillOptions(partitions=2, batch_rows=1000, checkpoint_path=checkpoint,
                                     stop_after_rows=3000))
    saved = Checkpoint.load(checkpoint, json.loads(checkpoint.read_text())["fingerprint"])
    assert saved is not None and (saved.file_index, saved.row, saved.complete) == (0, 3000,
                                                                                   False)
    written_before = sum(len(v) for v in broken.inserted.values())
    result = run_backfill([str(parquet)], broken, CORE,
                          BackfillOptions(partitions=2, batch_rows=1000,
                                          checkpoint_path=checkpoint))
    assert result.resumed_from == (0, 3000)
    assert result.written < sum(len(v) for v in whole.inserted.values()) - written_before + 1
    for table in whole.inserted:
        assert final(table, broken.inserted[table]) == final(table, whole.inserted[table]), table
    again = run_backfill([str(parquet)], broken, CORE,
                         BackfillOptions(partitions=2, batch_rows=1000, checkpoint_path=checkpoint))
    assert again.rows == 0  # complete: nothing to do
    with pytest.raises(ValueError, match="another backfill"):
        run_backfill([str(parquet)], broken, CORE,
                     BackfillOptions(partitions=3, batch_rows=1000, checkpoint_path=checkpoint))
    assert rows > 6000


def test_bad_clocks_and_changed_copies_get_the_verdicts_replay_gives(tmp_path: Path) -> None:
    """A row dated two days ahead of `--now` is `future` and does not move stream time, a row
    sent again with other content is a `conflict`: backfill from Parquet and replay of the same
    rows give the same tables (the rule is declared once, in the core)."""
    from jobs.generate import encode_record

    records = [r for r in generate_records(replace(EVENTS, events=1500), json_only=False)
               if isinstance(r, dict)]
    last = max(r["occurred_at"] for r in records if isinstance(r.get("occurred_at"), str))
    now_ms = parse_ms(last) + 60_000
    ahead = {**records[0], "event_id": "clock-ahead", "customer_id": "c-ahead",
             "occurred_at": format_ms(now_ms + 2 * 86_400_000)}
    ahead.pop("journey_id", None)
    surveys = [r for r in records if r.get("type") == "survey" and "nps" in (r.get("survey") or {})
               and not r["event_id"].endswith("-bad")]  # the generator's invalid rows
    changed = [{**r, "survey": {"nps": (r["survey"]["nps"] + 4) % 11}} for r in surveys[:10]]
    rows_in = [records[0], ahead, *records[1:], *changed]
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_bytes(b"".join(encode_record(r) + b"\n" for r in rows_in))
    parquet = tmp_path / "events.parquet"
    write_parquet(rows_in, parquet, batch_rows=500)
    config = replace(CORE, clock=replace(CORE.clock, now_ms=now_ms))
    expected = replay_tables(jsonl, config, 3)
    warehouse = RecordingWarehouse()
    result = run_backfill([str(parquet)], warehouse, config,
                          BackfillOptions(partitions=3, batch_rows=400))
    for table, want in expected.items():
        assert final(table, warehouse.inserted.get(table, [])) == want, table
    letters = warehouse.inserted["dead_letters"]
    reasons = [row["reason"] for row in letters]
    assert reasons.count("future") == 1 and reasons.count("conflict") == 10
    assert "late" not in reasons  # the clock ahead moved no stream time
    # touchpoint_events holds each changed event once, as the copy the core keeps (the smaller
    # content digest), also where that copy came second and replaced the first
    from pipeline.contract import parse_dict
    from pipeline.core.event import content_digest
    from pipeline.storage.tables import digest_version

    stored: dict[str, dict[str, Any]] = {}
    for row in warehouse.inserted["touchpoint_events"]:
        if row["version"] > stored.get(row["event_id"], {"version": -1})["version"]:
            stored[row["event_id"]] = row
    replaced = 0
    for original, copy in zip(surveys[:10], changed, strict=True):
        digests = [content_digest(parse_dict(dict(r))) for r in (original, copy)]
        assert stored[original["event_id"]]["version"] == digest_version(min(digests))
        replaced += digests[1] < digests[0]
    assert replaced  # the case that matters: the winner arrived second
    assert result.counts["events"] + result.counts["duplicates"] + len(letters) == len(rows_in)

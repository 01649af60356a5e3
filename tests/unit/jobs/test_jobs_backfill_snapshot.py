"""A backfill resumed from the engine's saved state (jobs/backfill/checkpoint.py): it reads no row
before the state's position, writes what was not written yet, and the tables equal an
uninterrupted run; checkpoints of another run, format or core are refused in one line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from backfill_util import CORE, EVENTS, RecordingWarehouse, final, write_both

from jobs.backfill import Backfill, BackfillOptions, Interrupted, run_backfill
from jobs.backfill.serial import _batches_from
from jobs.parquet_schema import event_batches

OPTIONS = BackfillOptions(partitions=2, batch_rows=1000, workers=1)


def _run(parquet: Path, warehouse: RecordingWarehouse, checkpoint: Path | None = None,
         **options: Any) -> Any:
    from dataclasses import replace

    return run_backfill([str(parquet)], warehouse, CORE,
                        replace(OPTIONS, checkpoint_path=checkpoint, **options))


def _tables(warehouse: RecordingWarehouse) -> dict[str, list[Any]]:
    return {table: final(table, rows) for table, rows in warehouse.inserted.items()}


def _concat(*warehouses: RecordingWarehouse) -> RecordingWarehouse:
    out = RecordingWarehouse()
    for warehouse in warehouses:
        for table, rows in warehouse.inserted.items():
            out.inserted.setdefault(table, []).extend(rows)
    return out


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # `backfill_util` comes from this directory (on sys.path under pytest): Any to mypy
    return cast(Path, write_both(EVENTS, tmp_path_factory.mktemp("snapshot"))[1])


@pytest.fixture(scope="module")
def whole(parquet: Path) -> RecordingWarehouse:
    warehouse = RecordingWarehouse()
    _run(parquet, warehouse)
    return warehouse


@pytest.fixture(scope="module")
def interrupted(parquet: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Path, RecordingWarehouse]:
    """A run interrupted after 2000 rows, saving its state after every batch: its checkpoint
    (the state file beside it) and what it wrote."""
    checkpoint = tmp_path_factory.mktemp("interrupted") / "ck.json"
    warehouse = RecordingWarehouse()
    with pytest.raises(Interrupted):
        _run(parquet, warehouse, checkpoint, snapshot_seconds=0, stop_after_rows=2000)
    return checkpoint, warehouse


def _copy(interrupted: Path, directory: Path) -> Path:
    """The interrupted run's checkpoint and state file copied into `directory`."""
    state = json.loads(interrupted.read_text())["state_file"]
    for saved in (interrupted, interrupted.with_name(state)):
        shutil.copy(saved, directory / saved.name)
    return directory / interrupted.name


def test_resumed_run_reads_no_row_before_the_saved_state(
        parquet: Path, whole: RecordingWarehouse, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = tmp_path / "ck.json"
    first = RecordingWarehouse()
    with pytest.raises(Interrupted):
        _run(parquet, first, checkpoint, snapshot_seconds=0, stop_after_rows=3000)
    saved = json.loads(checkpoint.read_text())
    assert (saved["row"], saved["state_at"]) == (3000, [0, 3000])
    assert [p.name for p in tmp_path.glob("ck.state-*")] == ["ck.state-0-3000.json"]

    read: list[tuple[int, int]] = []  # (first row, rows) of every batch the core ran
    batch = Backfill.batch

    def counting(self: Backfill, source: str, first_row: int, records: pa.RecordBatch) -> None:
        read.append((first_row, records.num_rows))
        batch(self, source, first_row, records)

    monkeypatch.setattr(Backfill, "batch", counting)
    second = RecordingWarehouse()
    # --workers not given: a run with engine state continues in one process
    result = _run(parquet, second, checkpoint, workers=None)
    total = pq.ParquetFile(parquet).metadata.num_rows
    assert result.restored_from == (0, 3000) and result.resumed_from == (0, 3000)
    assert min(first for first, _ in read) == 3001
    assert sum(rows for _, rows in read) == result.rows == result.counts["rows"] == total - 3000
    assert _tables(_concat(first, second)) == _tables(whole)
    # each batch written once: the two runs insert as many rows as the uninterrupted one
    for table, rows in whole.inserted.items():
        if table in ("touchpoint_events", "dead_letters"):
            assert len(first.inserted[table]) + len(second.inserted[table]) == len(rows), table
    assert not list(tmp_path.glob("ck.state-*"))  # complete: no state kept


@pytest.mark.parametrize("rewound", [False, True])
def test_rows_written_ahead_of_the_state_are_not_lost_or_doubled(
        parquet: Path, whole: RecordingWarehouse, interrupted: tuple[Path, RecordingWarehouse],
        tmp_path: Path, rewound: bool) -> None:
    """State at row 2000, rows written up to 4000 (a run that saved no state after 2000): the
    resumed run recomputes 2000-4000 without writing them, writes from 4000. `rewound`: the
    crashed run had inserted 2000-4000 but not recorded it (killed between insert and
    checkpoint): they are written again, with the same versions, and the tables still equal."""
    checkpoint = _copy(interrupted[0], tmp_path)
    runs = [interrupted[1], RecordingWarehouse(), RecordingWarehouse()]
    with pytest.raises(Interrupted):  # 2000 more rows read after the state, no state saved
        _run(parquet, runs[1], checkpoint, snapshot_seconds=None, stop_after_rows=2000)
    saved = json.loads(checkpoint.read_text())
    assert (saved["row"], saved["state_at"]) == (4000, [0, 2000])
    if rewound:
        saved["row"] = 2000
        checkpoint.write_text(json.dumps(saved))
    result = _run(parquet, runs[2], checkpoint)
    assert result.restored_from == (0, 2000)
    assert result.resumed_from == (0, 2000 if rewound else 4000)
    assert _tables(_concat(*runs)) == _tables(whole)
    raw = [len(run.inserted["touchpoint_events"]) for run in runs]
    if rewound:
        assert sum(raw) > len(whole.inserted["touchpoint_events"])
    else:
        assert sum(raw) == len(whole.inserted["touchpoint_events"])


def test_a_parallel_run_resumes_a_serial_checkpoint_by_recomputing(
        parquet: Path, whole: RecordingWarehouse, interrupted: tuple[Path, RecordingWarehouse],
        tmp_path: Path) -> None:
    checkpoint = _copy(interrupted[0], tmp_path)
    rest = RecordingWarehouse()
    result = _run(parquet, rest, checkpoint, workers=2)
    assert (result.resumed_from, result.restored_from) == ((0, 2000), None)
    assert result.rows == pq.ParquetFile(parquet).metadata.num_rows  # every row read again
    assert _tables(_concat(interrupted[1], rest)) == _tables(whole)


def _edit_header(state: Path, **fields: Any) -> None:
    header, _, body = state.read_bytes().partition(b"\n")
    state.write_bytes(orjson.dumps({**orjson.loads(header), **fields}) + b"\n" + body)


@pytest.mark.parametrize(("spoil", "names", "why"), [
    ("partitions", "checkpoint", "another backfill"),
    ("format", "checkpoint", "state format 0, this backfill reads format 1"),
    ("not json", "checkpoint", "not a backfill checkpoint"),
    ("state format", "state", "state format 2"),
    ("state core", "state", "another version of the core"),
    ("state run", "state", "engine state of another backfill"),
    ("state cut", "state", "unreadable engine state"),
    ("state gone", "state", "engine state file missing"),
])
def test_a_checkpoint_of_another_run_format_or_core_is_refused_in_one_line(
        parquet: Path, interrupted: tuple[Path, RecordingWarehouse], tmp_path: Path,
        spoil: str, names: str, why: str) -> None:
    checkpoint = _copy(interrupted[0], tmp_path)
    state = tmp_path / json.loads(checkpoint.read_text())["state_file"]
    options: dict[str, Any] = {}
    if spoil == "partitions":
        options["partitions"] = 3
    elif spoil == "format":
        saved = json.loads(checkpoint.read_text())
        del saved["format"]
        checkpoint.write_text(json.dumps(saved))
    elif spoil == "not json":
        checkpoint.write_text("{ no")
    elif spoil == "state format":
        _edit_header(state, format=2)
    elif spoil == "state core":
        _edit_header(state, core="0" * 64)
    elif spoil == "state run":
        _edit_header(state, fingerprint="another")
    elif spoil == "state cut":
        state.write_bytes(state.read_bytes()[:-100])
    elif spoil == "state gone":
        state.unlink()
    with pytest.raises(ValueError) as info:
        _run(parquet, RecordingWarehouse(), checkpoint, **options)
    message = str(info.value)
    assert "\n" not in message and why in message and "--restart" in message
    assert str(checkpoint if names == "checkpoint" else state) in message


def test_cli_refuses_a_checkpoint_of_another_format_in_one_line(
        parquet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import pipeline.storage.migrate
    import pipeline.storage.warehouse
    from pipeline.cli import main

    monkeypatch.setattr(pipeline.storage.warehouse, "connect",
                        lambda *a, **k: RecordingWarehouse())
    monkeypatch.setattr(pipeline.storage.migrate, "migrate", lambda warehouse: None)
    checkpoint = tmp_path / "old.json"
    checkpoint.write_text(json.dumps({"fingerprint": "x", "file_index": 0, "row": 1000,
                                      "complete": False, "now_ms": None}))
    assert main(["backfill", str(parquet), "--checkpoint", str(checkpoint), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(checkpoint) in err and "state format 0" in err
    assert main(["backfill", str(parquet), "--snapshot-every", "soon", "--quiet"]) == 2
    assert "--snapshot-every" in capsys.readouterr().err


def _rows_from(batches: Iterator[pa.RecordBatch]) -> list[str]:
    return [event_id for batch in batches for event_id in batch.column(0).to_pylist()]


def test_batches_from_a_row_skip_whole_row_groups_and_cut_the_first(parquet: Path) -> None:
    file = pq.ParquetFile(parquet)
    assert file.metadata.num_row_groups > 3  # write_both: groups of 1000 rows
    every = _rows_from(event_batches(file, 700))
    for first_row in (0, 1, 699, 999, 1000, 1001, 2450, len(every) - 1, len(every)):
        assert _rows_from(_batches_from(file, 700, first_row)) == every[first_row:], first_row

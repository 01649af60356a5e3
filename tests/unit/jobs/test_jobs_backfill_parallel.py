"""`run_backfill(workers=N)` (jobs/backfill/parallel.py) writes what one process writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from backfill_util import CORE, EVENTS, RecordingWarehouse, final, write_both

from jobs.backfill import BackfillOptions, Interrupted, run_backfill
from pipeline.privacy import PersonalData


@pytest.mark.parametrize(("partitions", "workers", "personal"), [
    (5, 2, PersonalData()),
    (4, 3, PersonalData(key=b"secret")),
    (12, 2, PersonalData(keep_comments=True)),
])
def test_workers_write_what_one_process_writes(tmp_path: Path, partitions: int, workers: int,
                                               personal: PersonalData) -> None:
    _, parquet, _ = write_both(replace(EVENTS, invalid_fraction=0.05), tmp_path)
    tables = []
    results = []
    for n in (1, workers):
        warehouse = RecordingWarehouse()
        results.append(run_backfill([str(parquet)], warehouse, CORE,  # type: ignore[arg-type]
                                    BackfillOptions(partitions=partitions, batch_rows=700,
                                                    workers=n, personal=personal)))
        tables.append({t: final(t, rows) for t, rows in warehouse.inserted.items()})
    one, many = tables
    assert one.keys() == many.keys()
    for table in one:
        assert many[table] == one[table], table
    assert one["alerts"], "the injected drop should fire an alert"
    assert results[0].counts == results[1].counts
    assert results[0].rows == results[1].rows


def test_a_failing_worker_fails_the_run(tmp_path: Path) -> None:
    _, parquet, _ = write_both(replace(EVENTS, events=500), tmp_path)
    with pytest.raises(RuntimeError, match="worker failed"):
        run_backfill([str(parquet)], None, CORE, BackfillOptions(
            partitions=2, batch_rows=100, workers=2,
            max_bytes="not a number"))  # type: ignore[arg-type]


def test_resume_with_another_worker_count(tmp_path: Path) -> None:
    _, parquet, _ = write_both(EVENTS, tmp_path)
    whole = RecordingWarehouse()
    run_backfill([str(parquet)], whole, CORE,  # type: ignore[arg-type]
                 BackfillOptions(partitions=4, batch_rows=1000, workers=1))
    broken = RecordingWarehouse()
    checkpoint = tmp_path / "ck.json"
    with pytest.raises(Interrupted):
        run_backfill([str(parquet)], broken, CORE,  # type: ignore[arg-type]
                     BackfillOptions(partitions=4, batch_rows=1000, checkpoint_path=checkpoint,
                                     stop_after_rows=3000, workers=2))
    result = run_backfill([str(parquet)], broken, CORE,  # type: ignore[arg-type]
                          BackfillOptions(partitions=4, batch_rows=1000, checkpoint_path=checkpoint,
                                          workers=3))
    assert result.resumed_from == (0, 3000)
    for table in whole.inserted:
        assert final(table, broken.inserted[table]) == final(table, whole.inserted[table]), table


def test_cli_refuses_zero_workers(tmp_path: Path) -> None:
    from pipeline.cli import main

    assert main(["backfill", str(tmp_path / "x.parquet"), "--workers", "0", "--dry-run"]) == 2


def test_python_m_jobs_backfill_is_peakend_backfill(tmp_path: Path) -> None:
    """The package runs as a module, through the same command line (`jobs/backfill/__main__.py`)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "jobs.backfill", str(tmp_path / "x.parquet"),
                           "--workers", "0", "--dry-run"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("peakend backfill: --partitions, --batch-rows and --workers "
                                   "must be at least 1")

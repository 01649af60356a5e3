"""`run_backfill(workers=N)` (jobs/backfill/parallel.py) writes what one process writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

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
        results.append(run_backfill([str(parquet)], warehouse, CORE,
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
    run_backfill([str(parquet)], whole, CORE,
                 BackfillOptions(partitions=4, batch_rows=1000, workers=1))
    broken = RecordingWarehouse()
    checkpoint = tmp_path / "ck.json"
    with pytest.raises(Interrupted):
        run_backfill([str(parquet)], broken, CORE,
                     BackfillOptions(partitions=4, batch_rows=1000, checkpoint_path=checkpoint,
                                     stop_after_rows=3000, workers=2))
    result = run_backfill([str(parquet)], broken, CORE,
                          BackfillOptions(partitions=4, batch_rows=1000, checkpoint_path=checkpoint,
                                          workers=3))
    assert result.resumed_from == (0, 3000)
    for table in whole.inserted:
        assert final(table, broken.inserted[table]) == final(table, whole.inserted[table]), table


def test_cli_refuses_zero_workers(tmp_path: Path) -> None:
    from pipeline.cli import main

    assert main(["backfill", str(tmp_path / "x.parquet"), "--workers", "0", "--dry-run"]) == 2


def test_copies_of_one_event_id_across_workers_are_judged_as_in_one_process(
        tmp_path: Path) -> None:
    """One event_id, one journey (issue 13, item 4) in a parallel run: copies of an event_id
    under journey keys of partitions that would fall to different workers are judged by one
    engine's claims (their partitions run in one worker), so the tables, dead letters and
    counts equal a one-process run; without repeated event_ids the partitions are shared out
    as before."""
    import copy
    import random

    from jobs.backfill import Backfill
    from jobs.backfill.parallel import linked_partitions, share_out
    from jobs.generate import generate_records, write_parquet
    from pipeline.core.partitioner import partition_for

    config = replace(EVENTS, events=3000, invalid_fraction=0.0)
    records = [r for r in generate_records(config, json_only=False) if isinstance(r, dict)]
    plain = tmp_path / "plain.parquet"
    write_parquet(records, plain, batch_rows=500)
    partitions = 6
    alone = linked_partitions([str(plain)], 500, Backfill(
        CORE, BackfillOptions(partitions=partitions)))
    assert sorted(map(sorted, alone)) == [[p] for p in range(partitions)]

    rnd = random.Random(5)
    answers = [i for i, r in enumerate(records) if "nps" in r.get("survey", {})]
    extra: dict[int, list[dict[str, Any]]] = {}
    pairs: list[tuple[str, str]] = []  # the journey keys of an original and its copy
    for n, i in enumerate(rnd.sample(answers, 30)):
        twin = copy.deepcopy(records[i])
        twin["journey_id"] = f"other-{n}"
        if n % 2:
            twin["survey"] = {"nps": (twin["survey"]["nps"] + 5) % 11}
        extra.setdefault(min(len(records) - 1, i + rnd.randint(1, 150)), []).append(twin)
        original = records[i].get("journey_id") or records[i]["customer_id"]
        pairs.append((original, twin["journey_id"]))
    mixed = [r for i, r in enumerate(records) for r in [r, *extra.get(i, [])]]
    parquet = tmp_path / "copies.parquet"
    write_parquet(mixed, parquet, batch_rows=500)
    groups = linked_partitions([str(parquet)], 500, Backfill(
        CORE, BackfillOptions(partitions=partitions)))
    group_of = {p: g for g in groups for p in g}
    for original, twin_key in pairs:  # every copy's partition is in its original's group
        assert partition_for(twin_key, partitions) in group_of[partition_for(original,
                                                                             partitions)]
    assert any(len(g) > 1 for g in groups)
    assert sorted(p for g in share_out(groups, 3) for p in g) == list(range(partitions))

    tables, results = [], []
    for workers in (1, 3):
        warehouse = RecordingWarehouse()
        results.append(run_backfill([str(parquet)], warehouse, CORE,
                                    BackfillOptions(partitions=partitions, batch_rows=500,
                                                    workers=workers)))
        tables.append({t: final(t, rows) for t, rows in warehouse.inserted.items()})
    one, many = tables
    assert sum(1 for r in one["dead_letters"] if "conflict" in repr(r)) >= 15
    for table in one:
        assert many[table] == one[table], table
    assert results[0].counts == results[1].counts


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

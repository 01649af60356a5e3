"""`peakend backfill` (and `python -m jobs.backfill`): arguments, the run, the summary."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from jobs.backfill.checkpoint import fingerprint
from jobs.backfill.options import BackfillOptions
from jobs.backfill.run import run_backfill
from pipeline.privacy import PersonalData
from pipeline.replay import add_now_argument
from pipeline.settings import Settings
from pipeline.storage.warehouse import Warehouse
from pipeline.urls import warehouse_url_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE.parquet",
                        help="event files in the jobs/parquet_schema.py layout, in order")
    parser.add_argument("--url", default=None, type=warehouse_url_argument,
                        help="clickhouse://user:password@host:port/db (default "
                             "PEAKEND_CLICKHOUSE_URL; empty: embedded chdb at PEAKEND_CHDB_PATH)")
    parser.add_argument("--partitions", type=int, default=1,
                        help="spread events over N partitions like Kafka's default partitioner "
                             "(as `peakend replay --partitions`); default 1")
    parser.add_argument("--batch-rows", type=int, default=65_536,
                        help="rows per record batch, write and checkpoint (default 65536)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes running the partitions' core, at most --partitions "
                             "(default: one per CPU; 1: a single process; docs/jobs.md)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint file (default .stack/backfill/<run fingerprint>.json)")
    parser.add_argument("--restart", action="store_true",
                        help="ignore an existing checkpoint and start from the first row")
    parser.add_argument("--snapshot-every", default="600", metavar="SECONDS",
                        help="save the engine's state with the checkpoint at most every SECONDS "
                             "(wall clock; 0: after every batch; 'never': a resumed run "
                             "recomputes from the first row); default 600 (docs/jobs.md)")
    parser.add_argument("--no-checkpoint", action="store_true", help="do not resume or record")
    parser.add_argument("--no-raw-events", action="store_true",
                        help="do not write the validated events to touchpoint_events")
    parser.add_argument("--dry-run", action="store_true",
                        help="run the core only and report; write nothing to ClickHouse")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_now_argument(parser)


def run(args: argparse.Namespace) -> int:
    workers = 1 if args.workers is None else args.workers
    if min(args.partitions, args.batch_rows, workers) < 1:
        print("peakend backfill: --partitions, --batch-rows and --workers must be at least 1",
              file=sys.stderr)
        return 2
    snapshot_seconds = _snapshot_seconds(args.snapshot_every)
    if isinstance(snapshot_seconds, str):
        print(f"peakend backfill: {snapshot_seconds}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    config = settings.core_config()
    if args.now is not None:
        config = replace(config, clock=replace(config.clock, now_ms=args.now))
    url = settings.clickhouse_url if args.url is None else args.url
    warehouse: Warehouse | None = None
    target = "dry-run"
    if not args.dry_run:
        from pipeline.storage.migrate import migrate
        from pipeline.storage.warehouse import connect

        warehouse = connect(url, chdb_path=settings.chdb_path,
                            database=settings.clickhouse_database,
                            ca_file=settings.clickhouse_ssl_cafile)
        migrate(warehouse)
        target = f"{warehouse.engine}:{_mask(url) or settings.chdb_path}:{warehouse.database}"
    checkpoint_path: Path | None = None
    if not args.no_checkpoint and not args.dry_run:
        if args.checkpoint:
            checkpoint_path = Path(args.checkpoint)
        else:
            key = fingerprint(args.files, args.partitions, args.batch_rows, config, target,
                              not args.no_raw_events)
            checkpoint_path = Path(".stack/backfill") / f"{key[:16]}.json"
    options = BackfillOptions(
        partitions=args.partitions, batch_rows=args.batch_rows,
        max_bytes=settings.max_event_bytes, keep_comments=settings.keep_comments,
        raw_events=not args.no_raw_events, checkpoint_path=checkpoint_path, target=target,
        restart=args.restart, snapshot_seconds=snapshot_seconds, progress=not args.quiet,
        personal=PersonalData.from_settings(settings), workers=args.workers)
    try:
        result = run_backfill(args.files, warehouse, config, options)
    except (OSError, ValueError, pa.ArrowException) as exc:
        print(f"peakend backfill: {exc}", file=sys.stderr)
        return 1
    finally:
        if warehouse is not None:
            warehouse.close()
    if result.resumed_from is not None and result.rows == 0:
        print(f"peakend backfill: already complete (checkpoint {checkpoint_path}); "
              "--restart to run again")
        return 0
    counts = result.counts
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    lines = [f"read {result.rows:,} rows in {result.seconds:.2f} s ({rate:,.0f}/s), "
             f"{counts['events']:,} applied, {counts['duplicates']:,} duplicates dropped, "
             f"{counts['dead_letters']:,} dead letters"]
    if result.restored_from is not None:
        f_index, f_row = result.restored_from
        lines.append(f"resumed from the engine state after row {f_row:,} of file {f_index + 1} "
                     "(rows before it not read again)")
    elif result.resumed_from is not None:
        f_index, f_row = result.resumed_from
        lines.append(f"resumed after row {f_row:,} of file {f_index + 1} (no engine state "
                     "saved: rows before it were re-run through the core without writing)")
    lines.append(f"rows written: {result.written:,} ({counts['journey_rows']:,} journey, "
                 f"{counts['metric_rows']:,} metric, {counts['alert_rows']:,} alert updates)"
                 if warehouse is not None else "dry run: nothing written")
    print("\n".join(lines))
    return 0


def _snapshot_seconds(text: str) -> float | str | None:
    """`--snapshot-every`: seconds (>= 0), None for 'never', else the error message."""
    if text.strip().lower() == "never":
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        return f"--snapshot-every must be seconds (0 or more) or 'never', not {text!r}"
    return seconds


def _mask(url: str) -> str:
    """The URL without its password, for fingerprints and messages."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"


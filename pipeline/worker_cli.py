"""`peakend worker`: create topics and tables if missing, then run the Faust worker."""

from __future__ import annotations

import argparse
import logging

from pipeline.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info",
                                                               "debug"])
    parser.add_argument("--no-migrate", action="store_true",
                        help="do not apply ClickHouse migrations at start")


def run(args: argparse.Namespace) -> int:
    import faust

    from pipeline.app import create_app
    from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tune_gc
    from pipeline.storage.migrate import migrate
    from pipeline.storage.warehouse import connect
    from pipeline.stream.topics import ensure_topics

    settings = Settings.from_env()
    logging.basicConfig(level=logging.WARNING)
    created = ensure_topics(settings)
    if created:
        print(f"created topics: {', '.join(created)}", flush=True)
    if not args.no_migrate:
        warehouse = connect(settings.clickhouse_url, chdb_path=settings.chdb_path,
                            database=settings.clickhouse_database)
        applied = migrate(warehouse, cluster=settings.clickhouse_cluster)
        if applied:
            print(f"applied migrations: {', '.join(applied)}", flush=True)
        if warehouse.engine == "server":
            warehouse.close()
    # Journey state is long-lived: walking it in every collection costs more than it frees; the
    # stream policy still collects asyncio's cycles (pipeline/core/gcpolicy.py, docs/core.md).
    tune_gc(STREAM_THRESHOLDS, freeze=False)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG so that it can spin on every log
    # record: every debug call in aiokafka and Faust then builds a record that is dropped
    # (16% of the worker's CPU in docs/benchmarks.md's profile). No spinner, no such cost.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0

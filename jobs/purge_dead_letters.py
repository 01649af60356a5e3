"""`peakend purge-dead-letters`: the retention of the dead_letters table.

ClickHouse 18.16 has no table TTL (it came in 19.6), so retention is this job, run daily (cron,
a Kubernetes CronJob): it drops every monthly partition of `dead_letters` whose last day is more
than `--older-than-days` (default 30) behind today, as the writer. A partition is dropped whole
or not at all, so a letter lives between N and N + 31 days. `--dry-run` lists what it would drop.
The Kafka topic keeps its own retention (broker `log.retention.hours`, docs/privacy.md).
"""

from __future__ import annotations

import argparse
import calendar
import re
import sys
from datetime import UTC, date, datetime, timedelta

from pipeline.settings import Settings
from pipeline.storage.warehouse import Warehouse, connect
from pipeline.urls import warehouse_url_argument

TABLE = "dead_letters"
_MONTH = re.compile(r"(20[0-9]{2})(0[1-9]|1[0-2])")


def expired(partitions: list[str], today: date, older_than_days: int) -> list[str]:
    """The monthly partitions (`YYYYMM`) whose last day is before `today - older_than_days`.

    >>> expired(["202609", "202610", "202611"], date(2026, 11, 30), 30)
    ['202609']
    >>> expired(["202610"], date(2026, 12, 1), 30)
    ['202610']
    """
    cutoff = today - timedelta(days=older_than_days)
    out = []
    for partition in sorted(set(partitions)):
        match = _MONTH.fullmatch(partition)
        if not match:
            raise ValueError(f"{TABLE}: partition {partition!r} is not a month (YYYYMM)")
        year, month = int(match.group(1)), int(match.group(2))
        if date(year, month, calendar.monthrange(year, month)[1]) < cutoff:
            out.append(partition)
    return out


def purge(warehouse: Warehouse, older_than_days: int, *, today: date | None = None,
          dry_run: bool = False) -> list[str]:
    """Drop the expired partitions; returns them."""
    rows = warehouse.query(
        "SELECT DISTINCT partition FROM system.parts WHERE database = %(db)s AND table = %(t)s "
        "AND active", {"db": warehouse.database, "t": TABLE})
    months = expired([str(row[0]).strip("'") for row in rows],
                     today or datetime.now(UTC).date(), older_than_days)
    for month in months:
        if not dry_run:
            # `month` matched YYYYMM above: digits only, safe to place in the statement.
            warehouse.execute(f"ALTER TABLE {TABLE} DROP PARTITION {month}")
    return months


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than-days", type=int, default=30,
                        help="drop months whose last day is further back than this (default 30)")
    parser.add_argument("--url", default=None, type=warehouse_url_argument,
                        help="warehouse URL (default: PEAKEND_CLICKHOUSE_URL, the writer)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be dropped")


def run(args: argparse.Namespace) -> int:
    if args.older_than_days < 1:
        print("peakend purge-dead-letters: --older-than-days must be at least 1", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    url = args.url if args.url is not None else settings.clickhouse_url
    warehouse = connect(url, chdb_path=settings.chdb_path, database=settings.clickhouse_database,
                        ca_file=settings.clickhouse_ssl_cafile)
    try:
        months = purge(warehouse, args.older_than_days, dry_run=args.dry_run)
    finally:
        warehouse.close()
    verb = "would drop" if args.dry_run else "dropped"
    print(f"{TABLE}: {verb} {len(months)} monthly partition(s)"
          + (f": {', '.join(months)}" if months else ""))
    return 0

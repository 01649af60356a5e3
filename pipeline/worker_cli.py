"""`peakend worker`: create topics if missing, then run the Faust worker.

The ClickHouse migrations are not applied here: the sink applies them before its first insert and
retries while ClickHouse is away (pipeline/storage/sink.py), so the worker starts and runs its
Kafka-to-Kafka stages whether or not ClickHouse is up.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info",
                                                               "debug"])
    parser.add_argument("--no-migrate", action="store_true",
                        help="the sink does not apply ClickHouse migrations before inserting")


def run(args: argparse.Namespace) -> int:
    import faust

    from pipeline.app import build_worker
    from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tune_gc
    from pipeline.stream.topics import PartitionCountMismatch, ensure_topics

    settings = Settings.from_env()
    from pipeline.followup_rules import FollowupRulesError, load_rules
    try:
        load_rules(settings.followup_rules)  # a bad rules file stops the worker before it joins
    except FollowupRulesError as exc:
        print(f"peakend worker: {exc}", file=sys.stderr)
        return 2
    from pipeline.tls_preflight import tls_problems
    problems = tls_problems(settings)  # an untrusted certificate: one line, not a minute of retries
    for problem in problems:
        print(f"peakend worker: {problem}", file=sys.stderr)
    if problems:
        return 2
    logging.basicConfig(level=logging.WARNING)
    try:
        created = ensure_topics(settings)
    except PartitionCountMismatch as exc:
        print(f"peakend worker: {exc}", file=sys.stderr)
        return 2
    if created:
        print(f"created topics: {', '.join(created)}", flush=True)
    # Journey state is long-lived: walking it in every collection costs more than it frees; the
    # stream policy still collects asyncio's cycles (pipeline/core/gcpolicy.py, docs/core.md).
    tune_gc(STREAM_THRESHOLDS, freeze=False)
    built = build_worker(settings, migrate=not args.no_migrate)
    built.tasks.serve_metrics()  # a port taken: one line naming it (SettingsError), exit 2
    worker = faust.Worker(built.app, loglevel=args.loglevel, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG so that it can spin on every log
    # record: every debug call in aiokafka and Faust then builds a record that is dropped
    # (16% of the worker's CPU in docs/benchmarks.md's profile). No spinner, no such cost.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0

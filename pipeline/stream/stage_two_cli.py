"""`peakend stage-two`: stage two's Faust app (pipeline/stream/stage_two.py), as the worker
starts it unless PEAKEND_STAGE_TWO_PROCESS=false (apart from stage_two.py, which pipeline.app
imports: this module imports pipeline.app)."""

from __future__ import annotations

import argparse
import logging

from pipeline.child_process import die_with, watch_for_orphaning
from pipeline.settings import Settings
from pipeline.stream.stage_two import ORPHAN_GRACE_SECONDS, StageRole


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parent-pid", type=int, default=0,
                        help="stop when this process (the worker) is gone")
    parser.add_argument("--loglevel", default="warn",
                        choices=["crit", "error", "warn", "info", "debug"])


def run(args: argparse.Namespace) -> int:
    """`peakend stage-two`: the segments, follow-ups and claims agents in this process's own
    Faust app, until SIGTERM/SIGINT (with --parent-pid: SIGTERM when the worker is gone)."""
    if args.parent_pid:
        die_with(args.parent_pid)  # first: the worker may be killed while this one starts
        watch_for_orphaning(args.parent_pid, "stage-two process", ORPHAN_GRACE_SECONDS)
    import faust

    from pipeline.app import build_worker
    from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tune_gc

    logging.basicConfig(level=logging.WARNING)
    tune_gc(STREAM_THRESHOLDS, freeze=False)  # the worker's collector policy (gcpolicy.py)
    built = build_worker(Settings.from_env(), role=StageRole.TWO, migrate=False)
    built.tasks.serve_metrics()  # a port taken: one line naming it, and the worker starts it anew
    worker = faust.Worker(built.app, loglevel=args.loglevel, quiet=True)
    worker.spinner = None  # (pipeline/worker_cli.py: why)
    worker.execute_from_commandline()
    return 0

"""`peakend` command line: one sub-command per module, imported only when used.

Each sub-command lives in the module that owns the concept and exposes
`add_arguments(parser)` and `run(args) -> int`; this file only routes, and checks the `PEAKEND_*`
settings before any command starts: a bad variable is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pipeline.kafka_codecs import KAFKA_READERS, codec_problems
from pipeline.settings import Settings, SettingsError

# name -> (module, one-line help). Modules are imported lazily so `peakend validate` does not pay
# for Faust or chdb start-up.
COMMANDS: dict[str, tuple[str, str]] = {
    "settings": ("pipeline.settings_cli", "print the effective configuration (secrets masked)"),
    "replay": ("pipeline.replay", "run the core over a JSONL file of events, no servers needed"),
    "validate": ("pipeline.contract.validate_cli", "check a JSONL file of events offline"),
    "produce": ("pipeline.producer_cli", "send a JSONL file of events to Kafka"),
    "worker": ("pipeline.worker_cli", "run the streaming worker (Faust)"),
    "entry": ("pipeline.stream.entry_process", "touchpoints -> journey batches (the worker starts "
              "it)"),
    "sink": ("pipeline.storage.sink", "output topics -> ClickHouse (the worker starts it)"),
    "stage-two": ("pipeline.stream.stage_two_cli", "the segments, follow-ups and claims agents "
                  "(the worker starts it unless PEAKEND_STAGE_TWO_PROCESS=false)"),
    "demo": ("pipeline.demo", "start the stack, stream synthetic journeys, show the results"),
    "migrate": ("pipeline.storage.migrate", "apply the ClickHouse migrations"),
    "generate": ("jobs.generate", "write synthetic journeys to Parquet, JSONL or Kafka"),
    "backfill": ("jobs.backfill", "run the core over Parquet and write to ClickHouse"),
    "export": ("jobs.export", "export ClickHouse tables to Parquet"),
    "replay-dead-letters": ("jobs.replay_dead_letters", "re-send dead letters after a fix"),
    "drivers": ("jobs.drivers", "key drivers: importance x gap per touchpoint, offline or "
                "from ClickHouse"),
    "followups": ("pipeline.followups_cli", "post each new follow-up case to a webhook"),
    "report": ("pipeline.report_html", "write the HTML report (charts) from the ClickHouse views"),
    "purge-dead-letters": ("jobs.purge_dead_letters", "drop dead letters past their retention"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peakend", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            importlib.import_module(module_name).add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_list if not a.startswith("-")), None)
    only = chosen if chosen in COMMANDS else None
    args = build_parser(only).parse_args(args_list)
    if args.command is None:
        build_parser().print_help()
        return 2
    settings: Settings | None = None
    try:
        # Checked before the command does anything: a worker must not start, nor a replay run
        # for minutes, with a setting that cannot work. Commands that build settings later from
        # a changed environment (demo) raise the same error, caught here too.
        settings = Settings.from_env()
        if args.command in KAFKA_READERS:
            problems = codec_problems()  # a compressed record would stop the command
            for problem in problems:
                print(f"peakend {args.command}: {problem}", file=sys.stderr)
            if problems:
                return 2
        module = importlib.import_module(COMMANDS[args.command][0])
        return int(module.run(args))
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"peakend: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"peakend {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # The last guard: a user sees one line, never a traceback (PEAKEND_TRACEBACK=true
        # shows it for a bug report). Commands catch what they expect themselves.
        if settings is not None and settings.traceback:
            raise
        print(f"peakend {args.command}: {unexpected(exc)} (unexpected; PEAKEND_TRACEBACK=true "
              "shows the traceback for a bug report)", file=sys.stderr)
        return 1


def unexpected(exc: BaseException) -> str:
    """One line for an unexpected error: its type and the first line of its message, short.

    >>> unexpected(RuntimeError("Code: 252. DB::Exception: Too many partitions"))
    'RuntimeError: Code: 252. DB::Exception: Too many partitions'
    """
    first = (str(exc).strip().splitlines() or [""])[0]
    if len(first) > 300:
        first = first[:297] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())

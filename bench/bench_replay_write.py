"""What writing metrics.jsonl cost `peakend replay` per replayed event when it held every record
to the end, with the records encoded in key order (as replay wrote them before git a1a5f5d) and
in the order held, then sorted by key (`pipeline.replay._write_by_key`, which still writes
journeys.jsonl and followups.jsonl), alternating in one process over the same records (issue 13
item 5, docs/core.md "Cost over long histories"). Replay now spills old metric records to runs
on disk as it goes (`pipeline.metric_runs`); this script holds them all, as before.

    .venv/bin/python -m bench.bench_replay_write FILE.jsonl [--rounds 2]

FILE: e.g. `bench/bench_history.py --path replay`'s `history-90d-777600.jsonl` in its `--dir`.
The file is replayed in this process first (`Replay.line`, as the command drives it, its CPU
per event printed too); each round then encodes every metric record both ways, into memory.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.host import cpu_model, loadavg
from pipeline.core.gcpolicy import PACE_EVENTS, YoungPacer, tune_gc
from pipeline.followup_rules import load_rules
from pipeline.privacy import PersonalData
from pipeline.replay import Replay, _write_by_key
from pipeline.settings import Settings


class HoldNothing(dict[Any, Any]):
    """A mapping that keeps nothing (what holding no metric records would cost:
    `bench/replay_rusage.py --hold-all`)."""

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


def replayed(path: Path, hold_metrics: bool = True, *, spill: bool = False,
             lines: int | None = None) -> tuple[Replay, int, float]:
    """The file replayed as `peakend replay` does (4 partitions), its lines and CPU seconds;
    `hold_metrics` false: no metric record held; `spill`: old metric records go to runs on
    disk, as the command does; `lines`: stop after that many, the state as it then stands (the
    engine not finished)."""
    settings = Settings.from_env()
    replay = Replay(settings.core_config(), 4, path.name, settings.max_event_bytes,
                    PersonalData.from_settings(settings), load_rules(settings.followup_rules))
    if not hold_metrics:
        replay.metric_runs.held = replay.metrics = HoldNothing()
    tune_gc()
    pacer = YoungPacer()
    started = time.process_time()
    number = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            replay.line(number, raw.rstrip(b"\n"))
            if number % PACE_EVENTS == 0:
                pacer.pace(PACE_EVENTS)
                if spill:
                    replay.spill_metrics()
            if number == lines:
                return replay, number, time.process_time() - started
    replay.keep(replay.engine.finish())
    return replay, number, time.process_time() - started


def key_order(replay: Replay) -> bytes:
    """The earlier way: the records visited in key order, each encoded as it comes."""
    out = io.BytesIO()
    for _, record in sorted(replay.metrics.items()):
        out.write(orjson.dumps(record.to_dict()))
        out.write(b"\n")
    return out.getvalue()


def held_order(replay: Replay) -> bytes:
    out = io.BytesIO()
    _write_by_key(nullcontext(out), replay.metrics)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"bench_replay_write: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()}, "
          f"{cpu_model()}, Python {platform.python_version()}, load {loadavg()}")
    replay, lines, seconds = replayed(args.file)
    print(f"{args.file.name}: {lines:,} lines replayed, {seconds / lines * 1e6:.1f} us/line; "
          f"{len(replay.metrics):,} metric records held")
    ways: dict[str, Callable[[Replay], bytes]] = {"key order": key_order,
                                                  "held order, sorted after": held_order}
    outputs: dict[str, bytes] = {}
    for round_ in range(1, args.rounds + 1):
        for name, way in ways.items():
            started = time.process_time()
            outputs[name] = way(replay)
            spent = time.process_time() - started
            print(f"  round {round_}: {name:26s} {spent / lines * 1e6:6.2f} us per replayed "
                  f"event (load {loadavg()})", flush=True)
    same = len(set(outputs.values())) == 1
    print(f"the same bytes both ways: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

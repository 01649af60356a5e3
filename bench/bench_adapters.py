"""CPU per event of the worker's per-event paths in one process, without servers (issue 15), and
the same at two versions of the code, alternating, to compare builds.

    .venv/bin/python -m bench.bench_adapters [--events 30000] [--repeat 3]
    .venv/bin/python -m bench.bench_adapters --tree /tmp/base --tree . [--rounds 3]

The load generator's events (`bench.bench_pipeline.EventSource`, one day of event time) go
through the real classes, wired in memory as tests/unit/stream/test_agents.py wires them (fake
Faust, fake producer), and each path is timed per event (CPU seconds of the process, best of
`--repeat`), under the worker's collector policy (`STREAM_THRESHOLDS`):

- `entry`: `Router.route` over the raw records, 500 a read unless `--read` says (parse, scrub,
  batch records);
- `journeys`: the journeys agent over those batch records (decode_batch, stage one, claims
  items, the outbox, delivery);
- `claims`: the claims agent over the claims records that left;
- `segments`: the segments agent over the contributions records that left;
- `sink rows`: what the ClickHouse sink does per record before the insert: `decode_entries` of
  the batch records and `loads` of the output records, then `tables.touchpoint_columns` and
  `tables.columnar` per table, in chunks of 5,000.

It also prints the Kafka records each stage sent per event, by topic: what the next stage's
consumer pays its per-record cost on (Faust's, about 350 us a record, for the agents).

With `--tree`, each round runs this file once in each tree (a fresh process with that tree
on PYTHONPATH, so each runs its own sources and its own compiled build where current), one
after the other; the best per path over the rounds is printed. The outputs' digest must agree
between the trees (the same records out of both).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.cliargs import whole

READ = 500
CHUNK = 5_000


def workload(values: list[bytes], read: int = READ
             ) -> Callable[[], tuple[dict[str, float], str, dict[str, int]]]:
    """A run of every path over `values` (raw touchpoint records): the CPU seconds of each path
    and a digest of everything that left (batch records, dead letters, the agents' records,
    the sink's columns)."""
    import orjson

    import tests.unit.stream.test_agents as wiring
    from pipeline.privacy import PersonalData
    from pipeline.storage.tables import columnar, touchpoint_columns
    from pipeline.stream.batches import DIGEST_AT, EVENT_AT, OCCURRED_MS_AT, decode_entries
    from pipeline.stream.entry import Router
    from tests.unit.stream.fake_faust import Offsets

    wiring.PARTITIONS = 4

    class Record:
        __slots__ = ("offset", "partition", "timestamp", "timestamp_type", "value")

        def __init__(self, offset: int, value: bytes) -> None:
            self.partition: int = 0
            self.offset: int = offset
            self.value: bytes | None = value
            self.timestamp: int = 0
            self.timestamp_type: int = 0

    reads = [[Record(start + i, v) for i, v in enumerate(values[start:start + read])]
             for start in range(0, len(values), read)]

    def once() -> tuple[dict[str, float], str, dict[str, int]]:
        times: dict[str, float] = {}
        digests: dict[str, Any] = {}

        def digest(part: str) -> Any:
            return digests.setdefault(part, hashlib.sha256())
        router = Router(topic="cx.touchpoints", partitions=4, max_event_bytes=65536,
                        privacy=PersonalData(keep_comments=True))
        started = time.process_time()
        routed = [router.route(read, 1_900_000_000_000) for read in reads]
        times["entry"] = time.process_time() - started
        offsets = Offsets("app-journey-events")
        batch_values = [(p, v) for r in routed for p, vs in r.batches.items() for v in vs]
        for r in routed:
            for reason, letter in r.dead_letters:
                fields = orjson.loads(letter)
                del fields["received_at"]  # the wall clock at the rejection
                digest("entry dead letters").update(
                    reason.encode() + orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))
        for p, v in batch_values:
            digest("entry batch records").update(str(p).encode() + v)
        batch_events = [offsets.event(v, p) for p, v in batch_values]
        parts = wiring.Parts()
        parts.journeys.flush_every_events = 500
        started = time.process_time()
        parts.run(parts.journeys, [batch_events[i:i + 4] for i in range(0, len(batch_events), 4)])
        times["journeys"] = time.process_time() - started
        journeys_sent = list(parts.sent)
        claims = Offsets("app-claims")
        claim_events = [claims.event(value, partition) for topic, partition, items in
                        journeys_sent if topic == "app-claims" for _, value in items]
        started = time.process_time()
        parts.run(parts.claims, [claim_events[i:i + 25] for i in range(0, len(claim_events), 25)],
                  stage="claims", record="claims")
        times["claims"] = time.process_time() - started
        contributions = wiring.contribution_events(journeys_sent)
        parts.sent.clear()
        started = time.process_time()
        parts.run(parts.segments, contributions, stage="segments", record="contribution")
        times["segments"] = time.process_time() - started
        sent = journeys_sent + parts.sent
        tables = {"cx.journeys": "journeys", "cx.metrics": "metric_buckets", "cx.alerts": "alerts"}
        started = time.process_time()
        held: dict[str, list[Any]] = {}
        entries = [entry for _, value in batch_values for entry in decode_entries(value)]
        for topic, _, items in sent:
            if topic in tables:
                held.setdefault(tables[topic], []).extend(orjson.loads(v) for _, v in items)
        built = {table: [columnar(table, records[i:i + CHUNK])
                         for i in range(0, len(records), CHUNK)]
                 for table, records in held.items()}
        built["touchpoint_events"] = [
            touchpoint_columns(entries[i:i + CHUNK], EVENT_AT, OCCURRED_MS_AT, DIGEST_AT)
            for i in range(0, len(entries), CHUNK)]
        times["sink rows"] = time.process_time() - started
        for topic, partition, items in sent:
            for key, value in items:
                digest(topic).update(str(partition).encode() + (key or b"") + value)
        for table, chunks in built.items():
            digest(f"sink {table}").update(repr(chunks).encode())
        # Kafka records each stage sent, by topic: what the next stage's consumer pays its
        # per-record cost on (entry: the batch records)
        records = {"app-journey-events": len(batch_values)}
        for topic, _, items in sent:
            records[topic] = records.get(topic, 0) + len(items)
        return times, " ".join(f"{part}={d.hexdigest()[:16]}"
                               for part, d in sorted(digests.items())), records

    return once


def measure(events: int, repeat: int, read: int = READ) -> dict[str, Any]:
    import pipeline.core_build
    from bench.bench_pipeline import EventSource
    from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tune_gc

    # The collector policy of the processes whose paths these are (the worker, its entry
    # process and its sink: `pipeline/worker_cli.py`). Under CPython's default thresholds
    # (before 2026-12-02 here) the full collections walked this process's inputs and outputs
    # again and again: 110 against 50 us/event on `entry` in one run.
    tune_gc(STREAM_THRESHOLDS, freeze=False)

    source = EventSource(events_per_s=events / 86400)
    source.tag = "issue15"  # the same ids in every process: the digests compare
    once = workload(source.phase(events).values, read)
    best: dict[str, float] = {}
    digests = set()
    for _ in range(repeat):
        times, digest, records = once()
        digests.add(digest)
        for path, seconds in times.items():
            best[path] = min(best.get(path, float("inf")), seconds * 1e6 / events)
    best["total"] = sum(best.values())
    return {"us_per_event": best, "digests": sorted(digests),
            "records_per_event": {topic: n / events for topic, n in sorted(records.items())},
            "compiled": pipeline.core_build.COMPILED,
            "segments_module": sys.modules["pipeline.stream.segments"].__file__,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tree", action="append", default=[],
                        help="a checkout to run in (give two or more); none: this process")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--read", type=whole(1, 1_000_000), default=READ,
                        help="records per entry-stage read (the worker reads up to "
                             "PEAKEND_STREAM_BATCH_EVENTS, 4,000 by default)")
    args = parser.parse_args()
    if not args.tree:
        result = measure(args.events, args.repeat, args.read)
        if args.json:
            print(json.dumps(result))
        else:
            print(" ".join(f"{p} {us:.1f}" for p, us in result["us_per_event"].items()),
                  "us/event;", "compiled" if result["compiled"] else "interpreted",
                  f"({result['segments_module']}); load {result['load']}")
            print("records per event:", ", ".join(
                f"{topic} {n:.4f}" for topic, n in result["records_per_event"].items()))
        return
    best: dict[str, dict[str, float]] = {tree: {} for tree in args.tree}
    digests: dict[str, set[str]] = {tree: set() for tree in args.tree}
    records: dict[str, dict[str, float]] = {}
    for round_ in range(args.rounds):
        for tree in args.tree:
            root = Path(tree).resolve()
            done = subprocess.run(
                [sys.executable, __file__, "--events", str(args.events),
                 "--repeat", str(args.repeat), "--read", str(args.read), "--json"],
                cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True,
                text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{tree}: {done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            digests[tree].update(result["digests"])
            records[tree] = result.get("records_per_event", {})  # (a tree from before it: none)
            for path, us in result["us_per_event"].items():
                best[tree][path] = min(best[tree].get(path, float("inf")), us)
            print(f"round {round_ + 1} {tree}: " + " ".join(
                f"{p} {us:.1f}" for p, us in result["us_per_event"].items())
                + f" (compiled {result['compiled']}, {result['segments_module']}; "
                  f"load {result['load']})", flush=True)
    first = args.tree[0]
    paths = list(best[first])
    print("| path | " + " | ".join(args.tree) + " | ratio last/first |")
    print("|---|" + "---:|" * (len(args.tree) + 1))
    for path in paths:
        print(f"| {path} | " + " | ".join(f"{best[t][path]:.1f} us" for t in args.tree)
              + f" | {best[args.tree[-1]][path] / best[first][path]:.2f} |")
    topics = sorted(set().union(*(r.keys() for r in records.values())))
    if topics:
        print("\n| Kafka records per event | " + " | ".join(args.tree) + " |")
        print("|---|" + "---:|" * len(args.tree))
        for topic in topics:
            print(f"| {topic} | " + " | ".join(
                f"{records[t][topic]:.4f}" if topic in records[t] else "-" for t in args.tree)
                + " |")
    same = len(set().union(*digests.values())) == 1
    print("outputs identical across trees and repeats:", same)


if __name__ == "__main__":
    main()

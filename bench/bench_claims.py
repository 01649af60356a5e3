"""CPU the claims add to the stream's stage one, per event, without servers (issue 13, item 4).

    .venv/bin/python -m bench.bench_claims [--events 100000] [--partitions 4] [--repeat 3]
                                             [--digest computed|carried]

Events from `peakend generate` (parsed beforehand, not timed) go through one
`PartitionProcessor` per partition, placed by Kafka's partitioner, as the journeys agent runs
them. Timed per event (CPU seconds of this process, `time.process_time`, best of `--repeat`):

- `stage one`: `PartitionProcessor.process`, the work there is without claims;
- `claims`: what the claims add around it: the claim item of each applied event, its claims
  record (orjson, one per target partition and 500 events, as the outbox flushes), decoding it
  and `ClaimsStage.apply` + `dirty_state` in the claims agent.

Not included: Kafka (one more record per claims partition and flush), and the claims table's
RocksDB writes and changelog records (one per event, and one more when it is forgotten), which
`bench/worker_ab.py` measures end to end on the real servers.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
from datetime import UTC, datetime

import orjson

FLUSH = 500


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--digest", choices=("computed", "carried"), default="computed",
                        help="computed: stage one computes each event's content digest (as "
                        "replay does); carried: the events come with it, as the stream's batch "
                        "records bring it from the entry stage")
    args = parser.parse_args()

    from bench.bench_core import forget_digests
    from jobs.generate import GeneratorConfig, generate_events
    from pipeline.contract.parser import parse_dict
    from pipeline.core.claims import claims_partition
    from pipeline.core.config import CoreConfig
    from pipeline.core.event import content_digest
    from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tune_gc
    from pipeline.core.partitioner import partition_for
    from pipeline.scoring_rules import load_scoring_rules
    from pipeline.stream.claims import (
        ClaimsStage,
        claim_item,
        decode_claims,
        encode_claims,
    )
    from pipeline.stream.partition import PartitionProcessor

    events = [parse_dict(e) for e in generate_events(GeneratorConfig(events=args.events, seed=9))]
    raws = [orjson.dumps({"event_id": e.event_id, "pad": "x" * 300}) for e in events]
    placed = [partition_for(e.journey_key, args.partitions) for e in events]
    config = CoreConfig()
    rules = load_scoring_rules()  # the core reads no file: its caller passes the rules
    n = args.partitions
    tune_gc(STREAM_THRESHOLDS)  # the worker's collector policy
    best_one = best_claims = float("inf")
    for _ in range(args.repeat):
        forget_digests(events)  # nothing kept from the run before
        if args.digest == "carried":
            for event in events:
                content_digest(event)  # untimed: the entry stage computed it
        procs = [PartitionProcessor(p, config, rules) for p in range(n)]
        stages = [ClaimsStage(config, "cx.touchpoints") for _ in range(n)]
        outs = []
        gc.collect()
        started = time.process_time()
        for event, p in zip(events, placed, strict=True):
            outs.append(procs[p].process(event))
        one = time.process_time() - started
        started = time.process_time()
        pending: dict[int, list[list[object]]] = {}
        for i, (event, p, out) in enumerate(zip(events, placed, outs, strict=True)):
            if out.claim is not None:
                pending.setdefault(claims_partition(event.event_id, n), []).append(claim_item(
                    event.event_id, event.journey_key, out.claim, p, event.occurred_ms,
                    procs[p].watermark, p, i, raws[i]))
            if (i + 1) % FLUSH == 0 or i + 1 == len(events):
                for target, items in pending.items():
                    for record in encode_claims(items):
                        stages[target].apply(decode_claims(record))
                    stages[target].dirty_state()
                    stages[target].drain_forgotten()
                pending = {}
        claims = time.process_time() - started
        best_one, best_claims = min(best_one, one), min(best_claims, claims)
    per = 1e6 / len(events)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"bench_claims: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or 'cpu'}"
          f", nproc {os.cpu_count()}, Python {platform.python_version()}, core "
          f"{'interpreted' if os.environ.get('PEAKEND_PURE_CORE') else 'as built'}, "
          f"load {load}")
    print(f"{len(events):,} events, {n} partitions, digests {args.digest}, best of "
          f"{args.repeat}: stage one "
          f"{best_one * per:.1f} us/event, claims {best_claims * per:.1f} us/event "
          f"(+{100 * best_claims / best_one:.0f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

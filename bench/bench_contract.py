"""Parse-and-validate throughput of the contract on one core: `python -m bench.bench_contract`.

A realistic mix of schema-v1 records (mostly operational interactions, sparse surveys, a few
journey ends and outcomes, some invalid) is encoded up front; the timed loop is parse_event only.
Prints events/s, the machine (nproc, /proc/cpuinfo) and the date, for docs/contract.md.

Each round also times the strict parser alone (`parser.parse_strict`, what `parse_event` falls
back to for what the fast path declines, `pipeline/contract/fast.py`), alternating with
`parse_event`, and prints the ratio and how many records took the fast path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.contract import Rejected, parse_event
from pipeline.contract.fast import parse_valid
from pipeline.contract.parser import parse_strict

TOUCHPOINTS = ["checkout", "hotline", "delivery", "login", "search", "returns", "store_visit"]
CHANNELS = ["web", "app", "phone", "store", "email", "chat", "social", "other"]
STAGES = ["pre_purchase", "purchase", "use", "after_sales"]


def make_event(rng: random.Random, n: int, start: datetime) -> dict[str, Any]:
    kind = rng.choices(["interaction", "survey", "journey_end", "outcome"], [80, 10, 7, 3])[0]
    moment = start + timedelta(milliseconds=n * 37 + rng.randrange(1000))
    event: dict[str, Any] = {
        "event_id": f"bench-{n:09d}",
        "schema_version": 1,
        "occurred_at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "producer": "bench",
        "customer_id": f"cust-{rng.randrange(1_000_000)}",
        "type": kind,
        "touchpoint": rng.choice(TOUCHPOINTS),
        "channel": rng.choice(CHANNELS),
        "stage": rng.choice(STAGES),
    }
    if rng.random() < 0.7:
        event["journey_id"] = f"j-{rng.randrange(10_000_000)}"
    if kind == "interaction" and rng.random() < 0.8:
        event["signals"] = {"wait_seconds": round(rng.expovariate(1 / 60), 1),
                            "transfers": rng.choice([0, 0, 0, 1, 2, 4]),
                            "resolved": rng.random() < 0.8}
    if kind == "survey":
        event["survey"] = {"nps": rng.randrange(11)}
        if rng.random() < 0.5:
            event["survey"].update(ces=rng.randrange(1, 8), ces_scale=7)
    if kind == "outcome":
        event["outcome"] = rng.choice(["churn", "repurchase", "complaint", "referral"])
    if rng.random() < 0.3:
        event["valence"] = round(rng.uniform(-1, 1), 3)
    if rng.random() < 0.8:
        event["attributes"] = {"region": rng.choice(["eu", "us", "apac"]),
                               "tier": rng.choice(["gold", "silver", "basic"])}
    if rng.random() < 0.01:  # a trickle of bad input, as in production
        event["survey"] = {"nps": 11}
    return event


def machine() -> str:
    cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, nproc {cpus}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5, help="best of N timed passes")
    parser.add_argument("--target", type=float, default=100_000.0)
    args = parser.parse_args()

    host = machine()  # before pinning: nproc reports the affinity mask
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(42)
    start = datetime(2026, 11, 22, tzinfo=UTC)
    records = [json.dumps(make_event(rng, n, start), separators=(",", ":")).encode()
               for n in range(args.events)]
    size = sum(map(len, records)) / len(records)

    rates = {"parse_event": 0.0, "parse_strict": 0.0}
    rejected = 0
    for _ in range(args.rounds):
        for name, parse in (("parse_event", parse_event), ("parse_strict", parse_strict)):
            rejected = 0
            began = time.perf_counter()
            for record in records:
                try:
                    parse(record)
                except Rejected:
                    rejected += 1
            rates[name] = max(rates[name], len(records) / (time.perf_counter() - began))
    fast = sum(parse_valid(record) is not None for record in records)
    strict, best = rates["parse_strict"], rates["parse_event"]

    print(f"contract parse+validate: {best:,.0f} events/s on one core "
          f"({len(records):,} records, mean {size:.0f} bytes, {rejected} rejected per pass, "
          f"best of {args.rounds})")
    print(f"the strict parser alone: {strict:,.0f} events/s; parse_event / strict "
          f"{best / strict:.2f}x; {fast:,} of {len(records):,} records took the fast path "
          f"(the rest: rejected, or with an escape)")
    print(f"machine: {host}")
    print(f"date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    verdict = "meets" if best >= args.target else "MISSES"
    print(f"{verdict} the target of {args.target:,.0f} events/s")
    return 0 if best >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())

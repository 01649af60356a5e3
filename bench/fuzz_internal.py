"""Fuzzing of the worker's internal topics: no record may make an agent fail (issue 13: nothing
stalls; docs/streaming.md, thirty-seventh round).

    .venv/bin/python -m bench.fuzz_internal [--seconds 60] [--seed 1] [--events 300]

Each agent of the worker (journeys on `<app>-journey-events`, segments on `<app>-contributions`,
follow-ups on `<app>-followup-inputs`, claims on `<app>-claims`) reads records only the worker
writes, but another version during an upgrade, a tool or a person may write there too, and a
record an agent fails on is read again at every restart: the partition stops for good. Each
agent must apply a record or make it an `unreadable` dead letter (pipeline/stream/layout.py).

The records: what the stages send for `--events` generated events (the entry stage's batch
records, then stage one's contributions, follow-up inputs and claims), wired in memory as
tests/unit/stream/test_agents.py wires them (fake Faust, fake producers). Each round takes one,
mutates it as `bench.fuzz_fast_path` mutates records (bytes, JSON tokens, numbers of every size
and spelling, repeated slices) and runs it through its agent as a batch of its own; an
exception out of the agent's batch is a failure. Prints the failures by topic, exception and
place (with one record each) and exits 1 if there was one.
"""

from __future__ import annotations

import argparse
import random
import time
import traceback
from collections import Counter
from typing import Any

from bench.fuzz_fast_path import mutate
from bench.host import cpu_model, loadavg
from pipeline.cliargs import number, whole

# topic -> (the Parts agent that reads it, its `record` label)
AGENTS = {"app-journey-events": ("journeys", "event"),
          "app-contributions": ("segments", "contribution"),
          "app-followup-inputs": ("followups", "input"),
          "app-claims": ("claims", "claim")}


def records(events: int, at_seed: int) -> dict[str, list[bytes]]:
    """What the stages write to each internal topic for `events` generated events."""
    import tests.unit.stream.test_agents as wiring

    lines = wiring.generated(events=events, seed=at_seed)
    found = {"app-journey-events": [e.value for e in wiring.batch_records(lines, per_read=20)]}
    for topic, sent in wiring.stage_two_inputs(lines).items():
        found[topic] = [value for _, value in sent]
    return found


def main() -> int:
    import logging

    import tests.unit.stream.test_agents as wiring
    from tests.unit.stream.fake_faust import Offsets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=number(0, low_open=True), default=60.0)
    parser.add_argument("--seed", type=whole(0), default=1)
    parser.add_argument("--events", type=whole(1), default=300)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # each unreadable record logs a warning: not a failure
    rng = random.Random(args.seed)
    pool = records(args.events, args.seed)
    parts: dict[str, Any] = {topic: wiring.Parts(followups=True) for topic in AGENTS}
    offsets = {topic: Offsets(topic) for topic in AGENTS}
    failures: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], str] = {}
    tried: Counter[str] = Counter()
    load_before = loadavg()
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        topic = rng.choice(list(AGENTS))
        agent, label = AGENTS[topic]
        value = mutate(rng.choice(pool[topic]), rng)
        tried[topic] += 1
        event = offsets[topic].event(value, rng.randrange(wiring.PARTITIONS))
        try:
            parts[topic].run(getattr(parts[topic], agent), [[event]], stage=agent, record=label)
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            place = "/".join(where.filename.rsplit("/", 3)[-3:])
            key = (topic, type(exc).__name__, f"{place}:{where.lineno}")
            failures[key] += 1
            examples.setdefault(key, f"{str(exc)[:120]} on {value[:240]!r}")
            parts[topic] = wiring.Parts(followups=True)  # the agent as after a restart
    print(f"fuzz_internal: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, "
          f"seed {args.seed}, {args.seconds:g} s; load {load_before} before, {loadavg()} after")
    print("mutants by topic: " + ", ".join(f"{t} {n:,}" for t, n in sorted(tried.items()))
          + f"; {sum(failures.values())} made an agent fail")
    for key, count in failures.most_common():
        print(f"  {count} x {key[0]}: {key[1]} at {key[2]}: {examples[key]}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

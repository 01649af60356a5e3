"""What checking the records of the worker's internal topics costs (pipeline/stream/layout.py):
each stage-two reader against a bare `orjson.loads` of the same records, per generated event.

    .venv/bin/python -m bench.bench_internal_reads [--events 3000] [--repeat 5]

The records are what stage one sends for the generator's default mix over six hours, wired in
memory as tests/unit/stream/test_agents.py wires the agents; CPU time of the process, best of
`--repeat`, each reader over every record `--loops` times.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import orjson

from pipeline.cliargs import whole


def best_cpu(read: Callable[[bytes], Any], values: list[bytes], loops: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(loops):
            for value in values:
                read(value)
        best = min(best, time.process_time() - start)
    return best / loops


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=whole(1), default=3000)
    parser.add_argument("--repeat", type=whole(1), default=5)
    parser.add_argument("--loops", type=whole(1), default=20)
    args = parser.parse_args(argv)

    import tests.unit.stream.test_agents as wiring
    from pipeline.stream import messages
    from pipeline.stream.batches import raws_at, take_raws
    from pipeline.stream.claims import _CLAIMS_HEAD, _CLAIMS_RECORD, CLAIM_RAW_AT, decode_claims
    from pipeline.stream.followups import read as read_followup_inputs

    def unchecked_claims(value: bytes) -> list[list[Any]]:
        """`decode_claims` of a format-2 record as it was before the check."""
        at, end = raws_at(value, _CLAIMS_RECORD, len(_CLAIMS_HEAD))
        claims: list[list[Any]] = orjson.loads(memoryview(value)[len(_CLAIMS_HEAD) - 1:at - 1])
        take_raws(value, claims, CLAIM_RAW_AT, at, end, _CLAIMS_RECORD)
        return claims

    inputs = wiring.stage_two_inputs(wiring.generated(events=args.events, seed=7))
    # (topic: the reader before the check, the stage's reader now)
    readers: dict[str, tuple[Callable[[bytes], Any], Callable[[bytes], Any]]] = {
        "app-contributions": (orjson.loads, messages.read),
        "app-followup-inputs": (orjson.loads, read_followup_inputs),
        "app-claims": (unchecked_claims, decode_claims)}
    print(f"{args.events} generated events; load {os.getloadavg()[0]:.2f}; "
          "us per generated event, best of the repeats")
    print("| topic | records per event | decoding alone | the stage's reader (checked) | added |")
    print("|---|---:|---:|---:|---:|")
    for topic, (unchecked, read) in readers.items():
        values = [value for _, value in inputs[topic]]
        bare = best_cpu(unchecked, values, args.loops, args.repeat) / args.events * 1e6
        checked = best_cpu(read, values, args.loops, args.repeat) / args.events * 1e6
        print(f"| {topic} | {len(values) / args.events:.3f} | {bare:.2f} | {checked:.2f} "
              f"| {checked - bare:+.2f} |")


if __name__ == "__main__":
    main()

"""Differential fuzzing of the parser's fast path against the strict parser, for as long as asked
(issue 13: every event gets the strict verdict; issue 15: the fast path of the thirty-sixth round).

    .venv/bin/python -m bench.fuzz_fast_path [--seconds 60] [--seed 1] [--events 3000]

Seeds: the generator's default mix (`--events` records) and the test corpora (valid, invalid,
hostile and the adversarial cases of tests/unit/contract). Each round takes a seed and mutates
it one to three times at random places: bytes deleted, replaced or inserted, JSON tokens
inserted or put in place of bytes (literals, numbers spelled every way, keys of the contract,
escapes, brackets, invalid UTF-8 and lone surrogates), a slice of the record repeated elsewhere
(a repeated key, a nested copy), a digit turned into a long, fractional or exponent number. Every
mutant goes through `fast.parse_valid` and `parser.parse_strict`: the fast path must return the
strict parser's very event (every field with its type, the instant and its offset) or decline,
and neither may raise anything but the strict parser's `Rejected`.

Prints what was tried and how many mutants each parser accepted, then every disagreement (at
most 20), and exits 1 if there was one. `tests/unit/contract/test_fast_path.py` runs shorter,
Hypothesis-driven versions of the same check in `make test`; this is the long run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import orjson

from bench.host import cpu_model, loadavg
from pipeline.cliargs import number, whole
from pipeline.core.event import TouchpointEvent

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit" / "contract"))

# What a mutation may put in: literals, numbers spelled every way JSON allows (and some it does
# not), the contract's keys and enum words, escapes, brackets and separators, invalid UTF-8.
TOKENS = (
    b"null", b"true", b"false", b"0", b"-0", b"1e3", b"1.0", b"-1", b"99999999999999999999",
    b"1E+2", b"-0.0", b"0.5", b"1.5e-7", b"1e400", b"2", b"1", b'""', b'"x"', b"{}", b"[]",
    b'"\\u0000"', b'"\\ud800"', b'"a":1', b",", b":", b'"', b"{", b"}", b"[", b"]", b" ", b"\t",
    b"\n", b'"event_id"', b'"occurred_at"', b'"2026-11-22T17:10:09Z"',
    b'"2026-11-22T17:10:09.123456789+05:00"', b'"journey_id"', b'"survey"', b'"signals"',
    b'"attributes"', b'"nps"', b'"ces"', b'"ces_scale"', b'"valence"', b'"outcome"',
    b'"schema_version"', b'"type"', b'"journey_end"', b'"customer_id"', b"\xc3\xa9", b"\xff",
    b'"\xf0\x9f\x98\x80"', b'"\xed\xa0\x80"',
)
NUMBERS = (b"0", b"9", b"99", b".5", b"e2", b"-1", b"0000", b"1e400")


def seeds(events: int, at_seed: int) -> list[bytes]:
    """The generator's mix and the test corpora's records."""
    from adversarial import CASES
    from portable_corpus import cases

    from jobs.generate import GeneratorConfig, encode_record, generate_records

    made = [encode_record(r) for r in generate_records(GeneratorConfig(events=events,
                                                                       seed=at_seed))]
    return made + [data for _, data in cases()] + [line.data for case in CASES
                                                    for line in case.lines]


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.randrange(6)
        at = rng.randrange(len(out) + 1)
        if op == 0 and out:
            del out[at:at + rng.randrange(1, 6)]
        elif op == 1:
            out[at:at] = rng.choice(TOKENS)
        elif op == 2 and out:
            out[at:min(len(out), at + rng.randrange(1, 8))] = rng.choice(TOKENS)
        elif op == 3 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif op == 4 and out:  # a slice repeated elsewhere: a repeated key, a nested copy
            start = rng.randrange(len(out))
            out[at:at] = out[start:start + rng.randrange(1, 40)]
        elif out:
            k = rng.randrange(len(out))
            if 48 <= out[k] <= 57:
                out[k:k + 1] = rng.choice(NUMBERS)
    return bytes(out)


def exact(event: TouchpointEvent) -> bytes:
    """Everything an event holds, types included, with its instant and offset (as
    tests/unit/contract/test_fast_path.py compares them)."""
    from pipeline.contract import event_to_dict

    fields = event_to_dict(event)
    return orjson.dumps([fields, event.occurred_at.isoformat(),
                         [type(v).__name__ for v in fields.values()]])


def main() -> int:
    from pipeline.contract import Rejected
    from pipeline.contract.fast import parse_valid
    from pipeline.contract.parser import parse_strict

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=number(0, low_open=True), default=60.0)
    parser.add_argument("--seed", type=whole(0), default=1)
    parser.add_argument("--events", type=whole(1), default=3000,
                        help="records of the generator's mix among the seeds")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pool = seeds(args.events, args.seed)
    load_before = loadavg()
    tried = strict_accepted = fast_accepted = 0
    problems: list[str] = []
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        data = mutate(rng.choice(pool), rng)
        tried += 1
        try:
            fast = parse_valid(data)
        except Exception as exc:  # the fast path must decline, never raise
            problems.append(f"the fast path raised {exc!r}: {data[:300]!r}")
            continue
        try:
            strict = parse_strict(data)
        except Rejected:
            if fast is not None:
                problems.append(f"the fast path accepted what the strict parser rejects: "
                                f"{data[:300]!r}")
            continue
        except Exception as exc:
            problems.append(f"the strict parser raised {exc!r}: {data[:300]!r}")
            continue
        strict_accepted += 1
        if fast is not None:
            fast_accepted += 1
            if exact(fast) != exact(strict):
                problems.append(f"the two parsers' events differ: {data[:300]!r}")
    print(f"fuzz_fast_path: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{cpu_model()}, seed {args.seed}, {len(pool):,} seed records, {args.seconds:g} s; "
          f"load {load_before} before, {loadavg()} after")
    print(f"{tried:,} mutants: {strict_accepted:,} accepted by the strict parser, "
          f"{fast_accepted:,} of them by the fast path (the rest declined to it); "
          f"{len(problems)} disagreements")
    for problem in problems[:20]:
        print(f"  {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Two py-spy profiles of the worker side by side, in CPU microseconds per input event: where
the time of one run grew against the other (a first day against a steady state, a version
against another).

    .venv/bin/python -m bench.spy_diff /tmp/day1/worker.txt:100000:100 \\
        /tmp/day3/worker.txt:200000:50 [--top 30]

Each profile is given as `FILE:EVENTS:RATE`: py-spy's raw file (`bench.profile_worker`
writes one per process), the input events its run took, and py-spy's samples per second. A
sample is 1/RATE s of CPU, so a function's inclusive samples times 1e6 / (RATE x EVENTS) are
its microseconds per event (py-spy's own cost included in both). Stages and peakend functions
as `bench.spy_summary` counts them, sorted by how much they grew.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.spy_summary import Summary, read
from pipeline.cliargs import whole


@dataclass(frozen=True)
class Profile:
    summary: Summary
    us_per_sample: float  # CPU microseconds per input event that one sample stands for

    def us(self, counts: Counter[str], name: str) -> float:
        return counts[name] * self.us_per_sample


def profile_arg(text: str) -> Profile:
    """`FILE:EVENTS:RATE` (argparse's type: a bad value is a one-line error)."""
    path, sep, rest = text.rpartition(":")
    path, sep2, events = path.rpartition(":")
    try:
        rate, count = float(rest), int(events)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give FILE:EVENTS:RATE") from None
    if not sep or not sep2 or count <= 0 or not 0 < rate < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r}: give FILE:EVENTS:RATE, both positive")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path}: no such profile")
    return Profile(read(Path(path)), 1e6 / (rate * count))


def rows(a: Profile, b: Profile, which: str, top: int) -> list[str]:
    """`a b b-a name` lines for the stages or the functions, largest growth first."""
    ca = getattr(a.summary, which)
    cb = getattr(b.summary, which)
    names = sorted(set(ca) | set(cb), key=lambda n: (a.us(ca, n) - b.us(cb, n), n))
    return [f"{a.us(ca, n):8.1f} {b.us(cb, n):8.1f} {b.us(cb, n) - a.us(ca, n):+8.1f}  {n}"
            for n in names[:top]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=profile_arg, help="FILE:EVENTS:RATE")
    parser.add_argument("second", type=profile_arg, help="FILE:EVENTS:RATE")
    parser.add_argument("--top", type=whole(1), default=30)
    args = parser.parse_args()
    a, b = args.first, args.second
    print(f"us per event: all samples {a.summary.total * a.us_per_sample:.1f} -> "
          f"{b.summary.total * b.us_per_sample:.1f}")
    print("   first   second   growth  stage")
    print("\n".join(rows(a, b, "stages", args.top)))
    print("   first   second   growth  peakend function (inclusive)")
    print("\n".join(rows(a, b, "inclusive", args.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

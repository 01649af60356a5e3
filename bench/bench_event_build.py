"""What building the core's event classes costs, against the same fields in a slotted dataclass
with the `__init__` that `dataclass` generates and in a `frozen=True` one, in one run (issue 15,
docs/streaming.md "sixth round"; issue 19, docs/core.md "Native event classes").

    .venv/bin/python -m bench.bench_event_build [--repeat 5]
    PEAKEND_PURE_CORE=1 .venv/bin/python -m bench.bench_event_build

Every event the entry stage parses and every event stage one decodes is built once, as are
replay's and backfill's. The twins are made here from the classes' own fields
(`dataclasses.make_dataclass`): `slots=True` with the generated `__init__` (what the classes
were from 2026-12-01 to 2026-12-02) and `frozen=True, slots=True` (before that), so every side
builds the same fields from the same values. Best of `--repeat` timings of 200,000 builds each,
in microseconds per build.
"""

from __future__ import annotations

import argparse
import dataclasses
import timeit
from datetime import UTC, datetime
from typing import Any

import pipeline.core_build
from bench.host import cpu_model, loadavg
from pipeline.core.event import Signals, Survey, TouchpointEvent


def twin(cls: type[Any], frozen: bool) -> type[Any]:
    """`cls`'s fields in a slotted dataclass with a generated `__init__` (every init field
    required; `known_digest` defaults to -1), frozen or not."""
    fields: list[Any] = [(f.name, f.type) if f.init else
                         (f.name, f.type, dataclasses.field(init=False, default=-1))
                         for f in dataclasses.fields(cls)]
    namespace: dict[str, Any] = {}
    if any(f.name == "occurred_ms" for f in dataclasses.fields(cls)):
        def post_init(self: Any) -> None:  # the event's: derive occurred_ms when not given
            if self.occurred_ms == -1:
                object.__setattr__(self, "occurred_ms", int(self.occurred_at.timestamp() * 1000))
        namespace["__post_init__"] = post_init
    kind = "Frozen" if frozen else "Slotted"
    return dataclasses.make_dataclass(f"{kind}{cls.__name__}", fields, frozen=frozen, slots=True,
                                      namespace=namespace)


def per_build_us(build: Any, number: int, repeat: int) -> float:
    return min(timeit.repeat(build, number=number, repeat=repeat)) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    at = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    attrs = {"region": "eu", "tier": "gold"}
    cases = {
        "TouchpointEvent": (TouchpointEvent, ("e1", at, "p", "c1", "interaction", "search", "web",
                                              "use", "j1", 1, None, None, None, None, attrs,
                                              1795000000000)),
        "Signals": (Signals, (53.72208826811975, 316.3151592197641, 0, True, False)),
        "Survey": (Survey, (9, None, None, 4, "fine", None)),
    }
    core = "compiled" if pipeline.core_build.COMPILED else "interpreted"
    print(f"bench_event_build: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, core "
          f"{core}, load {loadavg()}; us per build, best of {args.repeat} x {args.number:,}")
    print("| class | written `__init__` | generated `__init__` | frozen=True | generated / written "
          "| frozen / written |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (cls, values) in cases.items():
        slotted, frozen = twin(cls, frozen=False), twin(cls, frozen=True)
        assert dataclasses.astuple(frozen(*values)) == dataclasses.astuple(cls(*values))
        assert dataclasses.astuple(slotted(*values)) == dataclasses.astuple(cls(*values))
        ours = per_build_us(lambda c=cls, v=values: c(*v), args.number, args.repeat)
        generated = per_build_us(lambda c=slotted, v=values: c(*v), args.number, args.repeat)
        froze = per_build_us(lambda c=frozen, v=values: c(*v), args.number, args.repeat)
        print(f"| {name} | {ours:.2f} | {generated:.2f} | {froze:.2f} | {generated / ours:.1f}x "
              f"| {froze / ours:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

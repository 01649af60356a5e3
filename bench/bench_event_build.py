"""What building the core's event classes costs, against the same classes made `frozen=True`, in
one run (issue 15, docs/streaming.md "sixth round"; `pipeline/core/value.py`).

    .venv/bin/python -m bench.bench_event_build [--repeat 5]
    PEAKEND_PURE_CORE=1 .venv/bin/python -m bench.bench_event_build

Every event the entry stage parses and every event stage one decodes is built once, as are
replay's and backfill's. The frozen twins are made here from the classes' own fields
(`dataclasses.make_dataclass`, `frozen=True, slots=True`: what the classes were before
`value_class`), so both sides build the same fields from the same values. Best of `--repeat`
timings of 200,000 builds each, in microseconds per build.
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


def frozen_twin(cls: type[Any]) -> type[Any]:
    """`cls`'s fields (init ones with their defaults) in a frozen slotted dataclass."""
    fields = []
    for f in dataclasses.fields(cls):
        spec: Any = dataclasses.field(init=f.init, default=f.default,
                                      default_factory=f.default_factory)
        fields.append((f.name, f.type, spec))
    namespace: dict[str, Any] = {}
    if hasattr(cls, "__post_init__"):  # the event's: derive occurred_ms when not given
        def post_init(self: Any) -> None:
            if self.occurred_ms == -1:
                object.__setattr__(self, "occurred_ms", int(self.occurred_at.timestamp() * 1000))
        namespace["__post_init__"] = post_init
    return dataclasses.make_dataclass(f"Frozen{cls.__name__}", fields, frozen=True, slots=True,
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
    print("| class | value_class | frozen=True | frozen / value_class |")
    print("|---|---:|---:|---:|")
    for name, (cls, values) in cases.items():
        twin = frozen_twin(cls)
        assert dataclasses.astuple(twin(*values)) == dataclasses.astuple(cls(*values))
        ours = per_build_us(lambda c=cls, v=values: c(*v), args.number, args.repeat)
        frozen = per_build_us(lambda c=twin, v=values: c(*v), args.number, args.repeat)
        print(f"| {name} | {ours:.2f} | {frozen:.2f} | {frozen / ours:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a process's time goes, from a py-spy profile: share of samples per component.

    py-spy record --pid PID --duration 60 --rate 50 --format raw --output worker.txt
    .venv/bin/python -m bench.spy_summary worker.txt [--top 25]

py-spy's raw format is one line per distinct stack, `frame;frame;...;leaf COUNT`, each frame
`function (file:line)`. Self time goes to the component of the leaf frame (the package its file
belongs to: asyncio, faust, mode, aiokafka, orjson...; peakend's own modules by their module
name); inclusive time to every peakend function on the stack, once per sample; and each sample
to the worker's stage it serves (`STAGES`: the first rule whose function is on the stack, in
rule order). Idle samples (py-spy records only active threads unless --idle is given) are not
in the file.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
PACKAGES = ("faust", "mode", "aiokafka", "kafka", "rocksdict", "orjson", "prometheus_client",
            "clickhouse_driver", "croniter", "yarl", "venusian", "opentracing", "intervaltree")


# (stage, function name or "" for any, file path part): a sample belongs to the first stage
# one of whose frames is on its stack, rules taken in this order.
FAUST_PRODUCER = "Faust producer: per-record sends and flushes"
EPOLL = "event loops: epoll (the main and Faust's consumer thread)"
STAGES = (
    ("entry stage: validate, place, encode (peakend)", "Router.route", "stream/entry.py"),
    ("entry stage: aiokafka consume, produce, commit", "EntryStage._run_once", "stream/entry.py"),
    ("state writes: dump state, Faust tables, RocksDB", "write_state", "stream/agent_loop.py"),
    ("state writes: dump state, Faust tables, RocksDB", "write_state", "stream/agents.py"),
    ("state writes: dump state, Faust tables, RocksDB", "", "stream/state_writer.py"),
    ("outputs: drain the outbox, encode records", "OutputFlusher.flush", "stream/flush.py"),
    ("stage one: decode batch records, core, outbox (peakend)", "JourneysAgent.process",
     "stream/agents.py"),
    ("segment stage (peakend)", "SegmentsAgent.process", "stream/agents.py"),
    ("follow-up stage (peakend)", "FollowupsAgent.process", "stream/agents.py"),
    ("claims stage (peakend)", "ClaimsAgent.process", "stream/agents.py"),
    ("outputs in batches (pipeline/stream/delivery.py)", "", "stream/delivery.py"),
    (FAUST_PRODUCER, "", "faust/transport/producer.py"),
    (FAUST_PRODUCER, "Producer.flush", "drivers/aiokafka.py"),
    (FAUST_PRODUCER, "Topic._on_published", "faust/topics.py"),
    (FAUST_PRODUCER, "Collection._on_changelog_sent", "faust/tables/base.py"),
    ("ClickHouse sink (in the worker)", "", "storage/sink.py"),
    ("Faust consumer: fetch, dispatch, acks, commits", "", "faust/transport/"),
    ("Faust consumer: fetch, dispatch, acks, commits", "", "faust/streams.py"),
    ("Faust consumer: fetch, dispatch, acks, commits", "", "faust/agents/"),
    ("aiokafka: network, fetcher, sender", "", "aiokafka/"),
    (EPOLL, "EpollSelector.select", "selectors.py"),
    (EPOLL, "_PollLikeSelector.select", "selectors.py"),
)
# py-spy names frames by qualified name (`JourneysAgent.process`) on Python 3.11: the rules
# above name classes where a bare function name would be ambiguous.


def stage_of(parsed: list[tuple[str, str]]) -> str:
    """The worker stage a sample serves (see STAGES); the rest is the event loop and Faust's
    services."""
    for stage, func, part in STAGES:
        for name, path in parsed:
            # py-spy names files from their package (`aiokafka/conn.py`) or in full
            # a rule's bare name also matches methods of that name (`SegmentsAgent.write_state`
            # computes the state it writes: without this its samples fell to Faust's agent frame)
            if (not func or name == func or name.endswith(f".{func}")) \
                    and f"/{part}" in f"/{path}":
                return stage
    return "event loop, Faust and mode services, other"


def component(path: str) -> str:
    """The component a source file belongs to."""
    parts = path.replace("\\", "/").split("/")
    if "pipeline" in parts:
        tail = parts[parts.index("pipeline"):]
        return ".".join(tail).removesuffix(".py")
    for package in PACKAGES:
        if package in parts:
            return package
    if "asyncio" in parts:
        return "asyncio"
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    name = parts[-1].removesuffix(".py")
    return f"stdlib {name}" if "python3" in path or "lib/python" in path else name


def summarise(lines: list[str]
              ) -> tuple[int, Counter[str], Counter[str], Counter[str], Counter[str]]:
    total = 0
    own: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [FRAME.match(f) for f in stack.split(";")]
        parsed = [(m.group("func"), m.group("file")) for m in frames if m is not None]
        if not parsed:
            continue
        own[component(parsed[-1][1])] += count
        func, path = parsed[-1]
        functions[f"{component(path)}.{func}"] += count
        stages[stage_of(parsed)] += count
        seen = set()
        for func, path in parsed:
            comp = component(path)
            if comp.startswith("pipeline") and (comp, func) not in seen:
                seen.add((comp, func))
                inclusive[f"{comp}.{func}"] += count
    return total, own, inclusive, stages, functions


@dataclass(frozen=True)
class Summary:
    """One profile: samples in all, and per component (self), peakend function (inclusive),
    worker stage and function (self: the frame a sample ends in; a call into C, the compiled
    core, orjson or RocksDB, counts under the Python function that makes it)."""

    total: int
    own: Counter[str]
    inclusive: Counter[str]
    stages: Counter[str]
    functions: Counter[str]


def read(path: Path) -> Summary:
    return Summary(*summarise(path.read_text().splitlines()))


PEAKEND_STAGES = ("(peakend)", "outputs:", "state writes:")


def peakend_share(summary: Summary) -> float:
    """The share of samples in peakend's own stage work (validation, the stages, outputs and
    state writes), against Faust, aiokafka and the event loop."""
    own = sum(n for stage, n in summary.stages.items()
              if any(mark in stage for mark in PEAKEND_STAGES))
    return own / summary.total if summary.total else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    total, own, inclusive, stages, functions = summarise(args.profile.read_text().splitlines())
    if not total:
        raise SystemExit(f"{args.profile}: no samples (is it py-spy's --format raw output?)")
    print(f"{total} samples")
    print("by stage:")
    for name, count in stages.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("self time by component:")
    for name, count in own.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("inclusive time, peakend functions:")
    for name, count in inclusive.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("self time by function (calls into C counted under their caller):")
    for name, count in functions.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()

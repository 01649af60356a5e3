"""`peakend generate`: synthetic customer journeys to JSONL, Parquet or Kafka.

    peakend generate --events 1000000 --span 7d --to parquet --output events.parquet \\
        --drop segment=channel:phone,at=5d,points=30 \\
        --decline segment=touchpoint:checkout,from=1d,points_per_week=20

Journeys come from the personas in `jobs.personas` (docs/design.md 1 scenarios). Journeys start as a
Poisson process over the event-time span; their events are merged in event time, a small
fraction is delayed (out of order, within `--max-delay`, well inside the allowed lateness), and
optionally invalid records are mixed in (`--invalid-fraction`) to exercise dead letters.

Reproducible: the same seed and options give byte-identical output. The valid events do not
depend on `--invalid-fraction` (invalid records draw from their own random stream).

Functions for tests and other jobs: `generate_events(config)` (valid event dicts, schema v1),
`generate_records(config)` (the same with invalid records mixed in), `write_jsonl`,
`write_parquet`.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from jobs.journey_builder import DAY, HOUR, MINUTE, SECOND, WEEK, JourneyBuilder, Shift, TimedEvent
from jobs.personas import PERSONAS
from jobs.progress import Progress
from pipeline.cliargs import number, whole
from pipeline.contract.limits import END_MS, FIRST_MS, FIRST_YEAR, LAST_YEAR
from pipeline.core.timefmt import format_ms, parse_ms
from pipeline.outputs import OutputError, atomic_file, atomic_path, check_file

# 2026-09-01T00:00:00Z: far enough back that the journeys of a default run (and of a month's
# --span) end before today, so the stream does not judge any generated event `future`.
DEFAULT_START_MS = 1_788_220_800_000
# The event contract accepts occurred_at in the years FIRST_YEAR-LAST_YEAR UTC (2000-2099,
# docs/contract.md). Journeys run on up to ~40 days after they start (the `invest` persona), so
# the last start, --start + --span, must leave that much room before the end.
EARLIEST_START_MS = FIRST_MS  # 2000-01-01T00:00:00Z
LATEST_START_MS = END_MS - 73 * DAY  # 2099-10-20T00:00:00Z
_CONTRACT_YEARS = f"the event contract accepts the years {FIRST_YEAR}-{LAST_YEAR} UTC"
ID_PREFIX_MAX = 64  # event ids are "<prefix>-<journey>-<k>", within the contract's length
REGIONS = ("eu", "us", "apac")
TIERS = ("standard", "standard", "standard", "plus", "plus", "gold")
SEGMENT_DIMS = ("all", "touchpoint", "channel", "stage", "region", "tier")


# configuration


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    events: int = 10_000  # valid events to generate
    seed: int = 1
    start_ms: int = DEFAULT_START_MS
    span_ms: int = DAY  # journeys start over [start, start + span)
    mix: tuple[tuple[str, float], ...] = tuple((k, v[2]) for k, v in PERSONAS.items())
    late_fraction: float = 0.01  # share of events delivered out of order
    max_delay_ms: int = 10 * MINUTE  # ... by at most this much (keep well under the lateness)
    invalid_fraction: float = 0.0  # invalid records added per valid event
    shifts: tuple[Shift, ...] = ()
    id_prefix: str = ""  # event/journey id prefix; empty: "s<seed>"
    producer: str = "peakend-generate"

    @property
    def prefix(self) -> str:
        return self.id_prefix or f"s{self.seed}"


# the stream


class _Journeys:
    """Starts journeys one after another: persona, keying, ids, attributes."""

    def __init__(self, config: GeneratorConfig, rng: random.Random) -> None:
        unknown = [name for name, _ in config.mix if name not in PERSONAS]
        if unknown:
            raise ValueError(f"unknown persona(s) {', '.join(unknown)}; "
                             f"known: {', '.join(PERSONAS)}")
        weights = [(name, w) for name, w in config.mix if w > 0]
        if not weights:
            raise ValueError("the persona mix has no positive weight")
        total = sum(w for _, w in weights)
        self.names = [name for name, _ in weights]
        self.cumulative: list[float] = []
        acc = 0.0
        for _, w in weights:
            acc += w / total
            self.cumulative.append(acc)
        self.cumulative[-1] = 1.0
        self.config = config
        self.rng = rng
        self.number = 0
        self.customers = 1000

    def next(self, start_ms: int) -> Iterator[TimedEvent]:
        """The next journey, starting at `start_ms`: its events, made lazily in time order."""
        rng = self.rng
        config = self.config
        self.number += 1
        n = self.number
        u = rng.random()
        index = 0
        while self.cumulative[index] < u:
            index += 1
        name = self.names[index]
        persona, keyed, _ = PERSONAS[name]
        prefix = config.prefix
        by_customer = keyed == "customer" or (keyed == "either" and rng.random() < 0.5)
        if by_customer:
            # a visitor of its own: journeys are the idle-gap sessions of this customer
            customer_id, journey_id = f"{prefix}-v{n}", None
        else:
            customer_id = f"{prefix}-c{rng.randrange(self.customers)}"
            journey_id = f"{prefix}-j{n}"
        attributes = {"region": REGIONS[rng.randrange(3)], "tier": TIERS[rng.randrange(6)]}
        builder = JourneyBuilder(rng, start_ms, f"{prefix}-{n}", customer_id, journey_id,
                                 attributes, config.producer, config.shifts)
        return persona(builder)


def mean_events_per_journey(config: GeneratorConfig, samples: int = 2000) -> float:
    """Events a journey contributes within the span, estimated on a fixed sample."""
    journeys = _Journeys(config, random.Random(f"peakend-mean-{config.seed}"))
    total = 0
    for _ in range(samples):
        total += sum(1 for ms, _ in journeys.next(0) if ms < config.span_ms)
    return max(total / samples, 1.0)


def generate_events(config: GeneratorConfig) -> Iterator[dict[str, Any]]:
    """`config.events` valid schema-v1 event dicts, in delivery order (event time, except the
    delayed few). Dicts of one journey share their `attributes` dict: copy before mutating."""
    if config.events <= 0:
        return
    if config.span_ms <= 0:
        raise ValueError("span must be positive")
    rng = random.Random(config.seed)
    journeys = _Journeys(config, rng)
    estimate = max(1.0, config.events / mean_events_per_journey(config))
    journeys.customers = max(1000, int(estimate / 3))  # returning customers
    mean_gap = config.span_ms / estimate
    late = config.late_fraction
    max_delay = max(config.max_delay_ms, SECOND)
    # Heap of (time, seq, event, journey): event set -> deliver it at `time` (its event time, or
    # later for a delayed one); event None -> at `time` (the previous event's event time) ask
    # the journey for its next event. Journeys are generators, so nothing is made that the
    # stream will not deliver, and the heap holds about one entry per active journey.
    heap: list[tuple[int, int, dict[str, Any] | None, Iterator[TimedEvent]]] = []
    push, pop = heapq.heappush, heapq.heappop
    seq = 0
    next_start = float(config.start_ms)
    left = config.events

    def pull(journey: Iterator[TimedEvent]) -> None:
        nonlocal seq
        for ms, event in journey:
            due = ms + SECOND + int(rng.random() * (max_delay - SECOND)) \
                if late and rng.random() < late else ms
            push(heap, (due, seq, event, journey))
            push(heap, (ms, seq + 1, None, journey))
            seq += 2
            return

    while True:
        start = int(next_start)
        while heap and heap[0][0] <= start:
            _, _, event, journey = pop(heap)
            if event is None:
                pull(journey)
                continue
            event["occurred_at"] = format_ms(event["occurred_at"])
            yield event
            left -= 1
            if not left:
                return
        pull(journeys.next(start))
        next_start += rng.expovariate(1.0 / mean_gap)


# invalid records

def _copy(event: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(event)
    for key in ("signals", "survey", "attributes"):
        if key in out:
            out[key] = dict(out[key])
    out["event_id"] = f"{event['event_id']}-bad"
    return out


def _missing(e: dict[str, Any], rng: random.Random) -> None:
    del e[("customer_id", "producer", "touchpoint", "stage")[rng.randrange(4)]]


def _set(name: str, value: Any) -> Any:
    def apply(e: dict[str, Any], rng: random.Random) -> None:
        e[name] = value
    return apply


def _nps11(e: dict[str, Any], rng: random.Random) -> None:
    e["type"] = "survey"
    e["survey"] = {"nps": 11}
    e.pop("valence", None)


def _ces_no_scale(e: dict[str, Any], rng: random.Random) -> None:
    e["type"] = "survey"
    e["survey"] = {"ces": 5}


def _survey_without_answer(e: dict[str, Any], rng: random.Random) -> None:
    e["type"] = "survey"
    e.pop("survey", None)


def _negative_wait(e: dict[str, Any], rng: random.Random) -> None:
    e["signals"] = {"wait_seconds": -5.0}


def _outcome_on_interaction(e: dict[str, Any], rng: random.Random) -> None:
    e["type"] = "interaction"
    e["outcome"] = "churn"


def _bad_attribute_key(e: dict[str, Any], rng: random.Random) -> None:
    e["attributes"] = {"Region": "eu"}


# Corruptions that survive a Parquet round trip (typed columns can hold them).
_DICT_CORRUPTIONS = (
    _missing, _set("channel", "fax"), _set("touchpoint", ""), _set("valence", 1.5), _nps11,
    _ces_no_scale, _survey_without_answer, _negative_wait, _outcome_on_interaction,
    _set("schema_version", 2), _bad_attribute_key, _set("event_id", ""),
)
# Only in JSON: bad times, unknown fields, broken framing.
_JSON_CORRUPTIONS = (
    _set("occurred_at", "2026-02-30T10:00:00Z"), _set("occurred_at", "2026-11-01 10:00:00"),
    _set("nps", 9), _set("valence", "high"),
)


def _broken_bytes(line: bytes, rng: random.Random) -> bytes:
    u = rng.randrange(4)
    if u == 0:
        return line[: max(1, len(line) // 2)]  # truncated: not_json
    if u == 1:
        return b"[" + line + b"]"  # not_object
    if u == 2:
        return line[:-1] + b',"x":"\xff\xfe"}'  # not_utf8
    return line[:-1] + b',"type":"survey"}'  # duplicate key: not_json


def corrupt(event: Mapping[str, Any], rng: random.Random, *, json_only: bool = True
            ) -> dict[str, Any] | bytes:
    """An invalid record made from a valid event: a dict the contract rejects, or (when
    `json_only`) possibly raw bytes that are not a valid record at all."""
    choices = len(_DICT_CORRUPTIONS) + (len(_JSON_CORRUPTIONS) + 3 if json_only else 0)
    u = rng.randrange(choices)
    bad = _copy(event)
    if u < len(_DICT_CORRUPTIONS):
        _DICT_CORRUPTIONS[u](bad, rng)
        return bad
    u -= len(_DICT_CORRUPTIONS)
    if u < len(_JSON_CORRUPTIONS):
        _JSON_CORRUPTIONS[u](bad, rng)
        return bad
    return _broken_bytes(encode_event(bad), rng)


def generate_records(config: GeneratorConfig, *, json_only: bool = True
                     ) -> Iterator[dict[str, Any] | bytes]:
    """`generate_events` with invalid records mixed in at `config.invalid_fraction` per valid
    event (each just before the event it was made from). Bytes are records that are not even a
    JSON object; `json_only=False` restricts invalid records to dicts a Parquet file can hold."""
    fraction = config.invalid_fraction
    if fraction <= 0:
        yield from generate_events(config)
        return
    rng = random.Random(f"peakend-invalid-{config.seed}")
    for event in generate_events(config):
        if rng.random() < fraction:
            yield corrupt(event, rng, json_only=json_only)
        yield event


# outputs

# ASCII output (non-ASCII text as \u escapes): the C encoder's fastest path, and valid UTF-8.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as written to JSONL and Kafka."""
    return _encode(event).encode("utf-8")


def encode_record(record: Mapping[str, Any] | bytes) -> bytes:
    return record if isinstance(record, bytes) else encode_event(record)


def write_jsonl(records: Iterable[Mapping[str, Any] | bytes], out: BinaryIO,
                progress: Progress | None = None, chunk: int = 8192) -> int:
    """One record per line; the number of lines written."""
    lines: list[str] = []
    count = 0
    for record in records:
        if isinstance(record, bytes):
            if lines:
                out.write(("\n".join(lines) + "\n").encode("utf-8"))
                lines.clear()
            out.write(record + b"\n")
        else:
            lines.append(_encode(record))
        count += 1
        if len(lines) >= chunk:
            out.write(("\n".join(lines) + "\n").encode("utf-8"))
            lines.clear()
            if progress is not None:
                progress.update(count)
    if lines:
        out.write(("\n".join(lines) + "\n").encode("utf-8"))
    return count


def write_parquet(records: Iterable[Mapping[str, Any]], path: str | Path,
                  progress: Progress | None = None, batch_rows: int = 65_536) -> int:
    """Events (dicts) to a Parquet file in the flat schema of `jobs.parquet_schema`."""
    from jobs.parquet_schema import ParquetEventWriter

    count = 0
    with ParquetEventWriter(path) as writer:
        batch: list[Mapping[str, Any]] = []
        for record in records:
            batch.append(record)
            if len(batch) >= batch_rows:
                writer.write(batch)
                count += len(batch)
                batch = []
                if progress is not None:
                    progress.update(count)
        if batch:
            writer.write(batch)
            count += len(batch)
    return count


def send_kafka(records: Iterable[Mapping[str, Any] | bytes], *, bootstrap: str | None,
               topic: str | None, rate: float | None, progress: Progress | None = None) -> int:
    """Valid events through TouchpointProducer (validated, keyed by journey); invalid records,
    which it refuses by design, raw to the same topic so the worker dead-letters them. `rate`:
    events per wall-clock second (None: as fast as the broker takes them)."""
    from kafka import KafkaProducer

    from pipeline.contract import Rejected
    from pipeline.producer import TouchpointProducer
    from pipeline.settings import Settings

    settings = Settings.from_env()
    raw_producer: KafkaProducer | None = None
    count = 0
    started = time.monotonic()
    with TouchpointProducer(settings, bootstrap=bootstrap, topic=topic) as producer:
        try:
            for record in records:
                value = encode_record(record)
                try:
                    producer.send(value)
                except Rejected:
                    if raw_producer is None:
                        raw_producer = KafkaProducer(
                            bootstrap_servers=(bootstrap or settings.kafka_bootstrap).split(","),
                            **settings.kafka_client_options())
                    raw_producer.send(producer.topic, value=value, key=None)
                count += 1
                if rate and count % 100 == 0:
                    ahead = count / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                if progress is not None and count % 1000 == 0:
                    progress.update(count)
        finally:
            if raw_producer is not None:
                raw_producer.flush()
                raw_producer.close()
    return count


# command line


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d|w)?", re.ASCII)
_UNITS = {"ms": 1, "s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY, "w": WEEK, None: SECOND}
_LONGEST_MS = 100 * 366 * DAY  # the contract's whole range of event times


def parse_duration(text: str) -> int:
    """Milliseconds of '90s', '15m', '36h', '7d', '2w' or plain seconds; not negative, not
    longer than 100 years (anything longer is a typo: no event time could follow it).

    >>> parse_duration("36h"), parse_duration("90"), parse_duration("1.5d")
    (129600000, 90000, 129600000)
    >>> parse_duration("nan")
    Traceback (most recent call last):
    ValueError: 'nan' is not a duration (e.g. 90s, 15m, 36h, 7d, 2w)
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 15m, 36h, 7d, 2w)")
    ms = float(match[1]) * _UNITS[match[2]]
    if not math.isfinite(ms) or ms > _LONGEST_MS:
        raise ValueError(f"{text!r} is longer than 100 years")
    return round(ms)


def parse_span(text: str) -> int:
    """Milliseconds of an event-time span (`--span`): a duration longer than 0.

    >>> parse_span("3d")
    259200000
    >>> parse_span("0")
    Traceback (most recent call last):
    ValueError: must be longer than 0, not '0'
    """
    span = parse_duration(text)
    if span <= 0:
        raise ValueError(f"must be longer than 0, not {text!r}")
    return span


def parse_time(text: str, start_ms: int | None = None) -> int:
    """Epoch ms of an RFC 3339 time, 'now', or a duration after `start_ms` ('36h')."""
    if text == "now":
        return int(time.time()) * SECOND
    if start_ms is not None and "T" not in text.upper():
        return start_ms + parse_duration(text.lstrip("+"))
    try:
        return parse_ms(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time with offset "
                         "(e.g. 2026-11-01T00:00:00Z)") from None


def parse_shift(kind: str, text: str, start_ms: int) -> Shift:
    """`segment=DIM:VALUE,at=WHEN,points=P` (drop) or
    `segment=DIM:VALUE,from=WHEN,points_per_week=P` (decline); WHEN is an offset from --start
    (e.g. 36h) or an RFC 3339 time.

    >>> parse_shift("drop", "segment=channel:phone,at=36h,points=30", 0)
    Shift(kind='drop', dim='channel', value='phone', at_ms=129600000, points=30.0)
    """
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--{kind} {text!r}: expected key=value pairs, got {part!r}")
        fields[key.strip()] = value.strip()
    if len(fields) != len(text.split(",")):
        raise ValueError(f"--{kind} {text!r}: a key is given twice")
    segment = fields.pop("segment", "all:all")
    dim, _, value = segment.partition(":")
    if dim not in SEGMENT_DIMS:
        raise ValueError(f"--{kind}: segment dimension {dim!r} is not one of "
                         f"{', '.join(SEGMENT_DIMS)}")
    when = fields.pop("at" if kind == "drop" else "from", "0")
    points_key = "points" if kind == "drop" else "points_per_week"
    points_text = fields.pop(points_key, "30" if kind == "drop" else "10")
    if fields:
        raise ValueError(f"--{kind}: unknown key(s) {', '.join(fields)}")
    try:
        points = float(points_text)
    except ValueError:
        points = math.nan
    # A share of points/200 of the answers moves: more than 100 points (or less than 0) would
    # move more answers than there are.
    if not 0 <= points <= 100:
        raise ValueError(f"--{kind}: {points_key} must be a number from 0 to 100, "
                         f"not {points_text!r}")
    try:
        at_ms = parse_time(when, start_ms)
    except ValueError as exc:
        raise ValueError(f"--{kind}: {exc}") from None
    return Shift(kind, dim, value or "all", at_ms, points)


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """'ecommerce=0.6,bank=0.2' -> weights; personas not named get weight 0.

    >>> parse_mix("bank=2,hotel")
    (('bank', 2.0), ('hotel', 1.0))
    """
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in PERSONAS:
            raise ValueError(f"--mix: unknown persona {name!r}; known: {', '.join(PERSONAS)}")
        if name in out:
            raise ValueError(f"--mix: {name} is given twice")
        try:
            value = float(weight or 1)
        except ValueError:
            value = math.nan
        if not 0 <= value < math.inf:
            raise ValueError(f"--mix: the weight of {name} must be a number of at least 0, "
                             f"not {weight!r}")
        out[name] = value
    return tuple(out.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("personas: " + ", ".join(f"{k} ({v[2]:.2f})" for k, v in PERSONAS.items())
                     + "\nsegments for --drop/--decline: " + ", ".join(SEGMENT_DIMS))
    parser.add_argument("--events", type=whole(1), default=10_000,
                        help="valid events, at least 1 (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--start", default="2026-11-01T00:00:00Z",
                        help="event time of the first journey start (RFC 3339 or 'now'; "
                             f"{format_ms(EARLIEST_START_MS)[:10]} to "
                             f"{format_ms(LATEST_START_MS)[:10]} UTC)")
    parser.add_argument("--span", help="event-time span over which journeys start (e.g. 7d; "
                                       "default 1d, or events/rate)")
    parser.add_argument("--rate", type=number(0, low_open=True),
                        help="events per second: the event-time rate when --span is not given; "
                             "with --to kafka also the wall-clock send rate (default: max speed)")
    parser.add_argument("--to", choices=("jsonl", "parquet", "kafka"), default="jsonl")
    parser.add_argument("--output", help="output file (jsonl: '-' for stdout, the default)")
    parser.add_argument("--topic", help="Kafka topic (default PEAKEND_TOPIC_TOUCHPOINTS)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap (default PEAKEND_KAFKA_BOOTSTRAP)")
    parser.add_argument("--mix", help="persona weights by journeys, e.g. ecommerce=0.6,bank=0.4")
    parser.add_argument("--late-fraction", type=number(0, 1), default=0.01,
                        help="share of events delivered out of order (default 0.01)")
    parser.add_argument("--max-delay", default="10m",
                        help="largest delay of an out-of-order event (default 10m)")
    parser.add_argument("--invalid-fraction", type=number(0, 1), default=0.0,
                        help="invalid records added per valid event, for dead letters")
    parser.add_argument("--drop", action="append", default=[], metavar="SPEC",
                        help="sudden NPS drop: segment=channel:phone,at=36h,points=30 "
                             "(repeatable)")
    parser.add_argument("--decline", action="append", default=[], metavar="SPEC",
                        help="slow decline: segment=touchpoint:checkout,from=1d,"
                             "points_per_week=10 (repeatable)")
    parser.add_argument("--id-prefix", default="", help="id prefix (default s<seed>)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _option(name: str, parse: Callable[[str], int], text: str) -> int:
    """`parse(text)`, its ValueError prefixed with the option's name."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def config_from_args(args: argparse.Namespace) -> GeneratorConfig:
    """The generator's configuration; ValueError (naming the option) for a wrong value."""
    start = _option("--start", parse_time, args.start)
    if not EARLIEST_START_MS <= start <= LATEST_START_MS:
        raise ValueError(f"--start: {args.start} is outside {format_ms(EARLIEST_START_MS)[:10]}"
                         f" .. {format_ms(LATEST_START_MS)[:10]} ({_CONTRACT_YEARS}, and "
                         "journeys run on after their start)")
    if args.span and args.rate and args.to != "kafka":
        raise ValueError("give --span or --rate, not both (with --to kafka, --rate is the "
                         "wall-clock send rate and may be combined with --span)")
    if args.span:
        span = _option("--span", parse_span, args.span)
    elif args.rate:
        span = max(1, round(args.events / args.rate * SECOND))
    else:
        span = DAY
    if start + span > LATEST_START_MS:
        raise ValueError(f"--span: journeys would start until {format_ms(start + span)}, after "
                         f"{format_ms(LATEST_START_MS)} ({_CONTRACT_YEARS}); use an earlier "
                         "--start or a shorter span")
    if len(args.id_prefix) > ID_PREFIX_MAX:
        raise ValueError(f"--id-prefix: at most {ID_PREFIX_MAX} characters (event ids have a "
                         f"length limit), not {len(args.id_prefix)}")
    shifts = tuple(parse_shift("drop", s, start) for s in args.drop) + tuple(
        parse_shift("decline", s, start) for s in args.decline)
    config = GeneratorConfig(events=args.events, seed=args.seed, start_ms=start, span_ms=span,
                             late_fraction=args.late_fraction,
                             max_delay_ms=_option("--max-delay", parse_duration, args.max_delay),
                             invalid_fraction=args.invalid_fraction, shifts=shifts,
                             id_prefix=args.id_prefix)
    if args.mix:
        config = replace(config, mix=parse_mix(args.mix))
    return config


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        mean_events_per_journey(config, samples=10)  # validates the mix
    except ValueError as exc:
        print(f"peakend generate: {exc}", file=sys.stderr)
        return 2
    to_file = args.output not in (None, "-")
    if args.to == "parquet" and not to_file:
        print("peakend generate: --to parquet needs --output FILE", file=sys.stderr)
        return 2
    if args.to == "kafka" and args.output is not None:
        print("peakend generate: --output is not used with --to kafka (events go to --topic)",
              file=sys.stderr)
        return 2
    try:
        if to_file:
            check_file(Path(args.output))  # before generating: a bad path is found at once
    except OutputError as exc:
        print(f"peakend generate: {exc}", file=sys.stderr)
        return exc.status
    progress = Progress(f"generate -> {args.to}", config.events, enabled=not args.quiet)
    try:
        # Files are written under a temporary name and renamed at the end (pipeline.outputs):
        # a failed run leaves no partial file and an earlier file unchanged.
        if args.to == "jsonl":
            records = generate_records(config)
            if not to_file:
                count = write_jsonl(records, sys.stdout.buffer, progress)
                sys.stdout.buffer.flush()
            else:
                with atomic_file(Path(args.output)) as handle:
                    count = write_jsonl(records, handle, progress)
        elif args.to == "parquet":
            dicts = (r for r in generate_records(config, json_only=False)
                     if not isinstance(r, bytes))
            with atomic_path(Path(args.output)) as staged:
                count = write_parquet(dicts, staged, progress)
        else:
            rate = args.rate if args.rate and args.rate > 0 else None
            count = send_kafka(generate_records(config), bootstrap=args.bootstrap,
                               topic=args.topic, rate=rate, progress=progress)
    except OutputError as exc:
        print(f"peakend generate: {exc}", file=sys.stderr)
        return exc.status
    except BrokenPipeError:  # `peakend generate | head`: the reader has all it wanted
        # point stdout at /dev/null so the flush at exit does not fail a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"peakend generate: {exc}", file=sys.stderr)
        return 1
    progress.done = count
    seconds = progress.finish()
    if not args.quiet:
        where = args.output or ("stdout" if args.to == "jsonl" else args.topic or "topic")
        print(f"peakend generate: {count:,} records to {where} in {seconds:.2f} s "
              f"({count / max(seconds, 1e-9):,.0f}/s)", file=sys.stderr)
    return 0


__all__ = [
    "GeneratorConfig", "JourneyBuilder", "Shift", "add_arguments", "corrupt", "encode_event",
    "generate_events", "generate_records", "mean_events_per_journey", "run",
    "write_jsonl", "write_parquet",
]

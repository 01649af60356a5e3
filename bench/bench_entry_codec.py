"""What each step of an event's way through the batch records costs, in-process, on the
generator's default mix: parse and validate (entry), the batch entry (entry), the batch decoded
(stage one, another process), the sink's rows and columns of `touchpoint_events`.

    .venv/bin/python -m bench.bench_entry_codec [--events 20000] [--repeat 5]

Why: the end-to-end CPU per event is split by process in `bench/bench_pipeline.py` (worker,
entry, sink); this says which per-event step of the batch-record path is worth work, before any
(issue 15, docs/streaming.md "ninth round"). Also measured: batch records of format 1, which
carried each raw record (kept for dead letters) as an escaped JSON string inside the JSON,
against format 2, which appends the raw records' bytes after it (docs/streaming.md, thirteenth
round), and format 3, which carries each event as a flat row instead of a dict, so the sink
transposes a batch's rows into its touchpoint_events columns (fourteenth round). Claims
records likewise: format 1 (raw records as JSON strings, the whole flush encoded and then each
claim again) against format 2 (raws after the JSON, lists cut by a sample: fifteenth round),
and the claims stage's decoding of each. Best of
`--repeat` timings, microseconds per event; the cyclic collector
is off while timing (it would bill one step for garbage of another).
"""

from __future__ import annotations

import argparse
import gc
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

import pipeline.core_build
from bench.host import cpu_model, loadavg
from jobs.generate import GeneratorConfig, encode_record, generate_records
from pipeline.contract import Rejected, event_to_dict, parse_event
from pipeline.contract.decoding import decode_json
from pipeline.contract.encode import format_occurred_at
from pipeline.core import records as records_module
from pipeline.core.config import CoreConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import content_digest
from pipeline.core.eventdict import event_row
from pipeline.core.records import JourneyRecord, MetricRecord
from pipeline.scoring_rules import load_scoring_rules
from pipeline.storage.tables import DIGEST_KEY, OCCURRED_MS_KEY, columnar, touchpoint_columns
from pipeline.stream.batches import (
    DIGEST_AT,
    EVENT_AT,
    OCCURRED_MS_AT,
    decode_batch,
    decode_entries,
    encode_item,
    encode_rows,
    entry_row,
    join_items,
    join_rows,
)
from pipeline.stream.claims import CLAIM_RAW_AT, claim_item, decode_claims, encode_claims
from pipeline.stream.outbox import packed, to_json
from pipeline.stream.split import MAX_GATHERED_BYTES

BATCH_EVENTS = 100  # events per batch record (what the entry stage writes per partition read)
# Entries of one full batch record: the entry stage cuts them at 512 KiB (`MAX_BATCH_BYTES`),
# about 800 events of the default mix (a read is up to 4,000 events over the partitions).
RECORD_EVENTS = 800
CLAIMS_HEAD = b'{"c":['  # a claims record of format 1 (before the fifteenth round)
# Claims of one flush for one claims partition: a flush gathers up to 16 batch records of up to
# 512 KiB (about 14,000 events of the default mix), spread over 4 claims partitions.
FLUSH_CLAIMS = 3_600


def best_us(fn: Callable[[], Any], events: int, repeat: int) -> float:
    gc.disable()
    try:
        return min(timeit.repeat(fn, number=1, repeat=repeat)) / events * 1e6
    finally:
        gc.enable()


def format_1_item(source_partition: int, source_offset: int, arrival_ms: int, raw: bytes,
                  event: Any) -> bytes:
    """A batch entry of format 1 (before 2026-12-03): the raw record inside, a JSON string."""
    return orjson.dumps([source_partition, source_offset, arrival_ms, raw.decode("utf-8"),
                         event_to_dict(event), event.occurred_ms, content_digest(event)])


def format_1_join(items: list[bytes]) -> bytes:
    return b'{"f":1,"e":[' + b",".join(items) + b"]}"


def format_2_item(source_partition: int, source_offset: int, arrival_ms: int, raw: bytes,
                  event: Any) -> bytes:
    """A batch entry of format 2 (before git f55e3a3): the event as its dict."""
    return orjson.dumps([source_partition, source_offset, arrival_ms, len(raw),
                         event_to_dict(event), event.occurred_ms, content_digest(event)])


def format_2_join(items: list[bytes], raws: list[bytes]) -> bytes:
    tail = b"".join(raws)
    return b'{"f":2,"e":[' + b",".join(items) + b"]}" + tail + b"%08x" % len(tail)


def format_2_rows(value: bytes) -> list[dict[str, Any]]:
    """The sink's touchpoint records of a format 2 batch before format 3: each event's dict
    with its digest and ms (what `decode_rows` gave)."""
    end = len(value) - 8
    at = end - int(value[end:], 16)
    out = []
    for _sp, _offset, _arrival, _size, event, ms, digest in orjson.loads(value[:at])["e"]:
        event[DIGEST_KEY] = digest
        event[OCCURRED_MS_KEY] = ms
        out.append(event)
    return out


def gathered_format_1(items: list[Any], max_bytes: int = MAX_GATHERED_BYTES) -> list[bytes]:
    """Claims records as the worker wrote them before the fifteenth round: format 1, the whole
    list encoded once and, when it passed the limit, each claim again alone (`packed`)."""
    record = CLAIMS_HEAD + to_json(items)[1:] + b"}"
    if len(record) < max_bytes:
        return [record]
    return packed(CLAIMS_HEAD, [to_json(item) for item in items], max_bytes)


def measure(events: int, repeat: int) -> list[tuple[str, str, float]]:
    """(process, step, us per event) for each step."""
    raws = [encode_record(r) for r in generate_records(GeneratorConfig(events=events))]
    parsed = []
    for raw in raws:
        try:
            parsed.append((raw, parse_event(raw)))
        except Rejected:
            continue
    n = len(parsed)
    items = [encode_item(0, i, 0, raw, e) for i, (raw, e) in enumerate(parsed)]
    raw_of = [raw for raw, _ in parsed]
    batches = [join_items(items[i:i + BATCH_EVENTS], raw_of[i:i + BATCH_EVENTS])
               for i in range(0, n, BATCH_EVENTS)]
    entries = [entry for b in batches for entry in decode_entries(b)]
    items_1 = [format_1_item(0, i, 0, raw, e) for i, (raw, e) in enumerate(parsed)]
    batches_1 = [format_1_join(items_1[i:i + BATCH_EVENTS]) for i in range(0, n, BATCH_EVENTS)]
    items_2 = [format_2_item(0, i, 0, raw, e) for i, (raw, e) in enumerate(parsed)]
    batches_2 = [format_2_join(items_2[i:i + BATCH_EVENTS], raw_of[i:i + BATCH_EVENTS])
                 for i in range(0, n, BATCH_EVENTS)]
    rows_2 = [row for b in batches_2 for row in format_2_rows(b)]
    # the claim of each applied event (with its raw record), gathered per flush and claims
    # partition: FLUSH_CLAIMS a flush here
    claims = [claim_item(e.event_id, e.journey_key, 1234567 + i, 0, e.occurred_ms,
                         e.occurred_ms, 0, i, r) for i, (r, e) in enumerate(parsed)]
    claim_groups = [claims[i:i + FLUSH_CLAIMS] for i in range(0, n, FLUSH_CLAIMS)]
    claims_1 = [[*c[:CLAIM_RAW_AT], c[CLAIM_RAW_AT].decode()] for c in claims]
    claim_groups_1 = [claims_1[i:i + FLUSH_CLAIMS] for i in range(0, n, FLUSH_CLAIMS)]
    claim_records_1 = [r for g in claim_groups_1 for r in gathered_format_1(g)]
    claim_records = [r for g in claim_groups for r in encode_claims(g)]
    # the output records of these events (the core, one partition, batches of BATCH_EVENTS:
    # journeys coalesced per batch as the worker's flush does), each per record, timed per
    # input event like the rest
    engine = ExperienceEngine(CoreConfig(), load_scoring_rules())
    journeys: list[JourneyRecord] = []
    metrics: list[MetricRecord] = []
    for k in range(0, n, BATCH_EVENTS):
        emitted, _ = engine.process_many([e for _, e in parsed[k:k + BATCH_EVENTS]])
        journeys += emitted.journeys
        metrics += emitted.metrics
    journey_times = records_module._JOURNEY_TIMES
    metric_times = records_module._METRIC_TIMES
    steps: list[tuple[str, str, Callable[[], Any]]] = [
        ("entry", "parse_event (decode + validate)", lambda: [parse_event(r) for r, _ in parsed]),
        ("entry", "  of it: decode_json (framing, strict JSON)",
         lambda: [decode_json(r) for r, _ in parsed]),
        ("entry", "batch records, format 3 (events as flat rows)",
         lambda: [join_items([encode_item(0, i, 0, r, e) for i, (r, e) in
                              enumerate(parsed[k:k + BATCH_EVENTS])], raw_of[k:k + BATCH_EVENTS])
                  for k in range(0, n, BATCH_EVENTS)]),
        ("entry", f"batch records of {RECORD_EVENTS} entries, each entry encoded alone "
                  "(before git 24b5af0)",
         lambda: [join_items([encode_item(0, i, 0, r, e) for i, (r, e) in
                              enumerate(parsed[k:k + RECORD_EVENTS])],
                             raw_of[k:k + RECORD_EVENTS])
                  for k in range(0, n, RECORD_EVENTS)]),
        ("entry", f"batch records of {RECORD_EVENTS} entries, encoded in one call (the entry "
                  "stage since git 24b5af0)",
         lambda: [join_rows(encode_rows([entry_row(0, i, 0, r, e) for i, (r, e) in
                                         enumerate(parsed[k:k + RECORD_EVENTS])]),
                            raw_of[k:k + RECORD_EVENTS])
                  for k in range(0, n, RECORD_EVENTS)]),
        ("entry", "  of it: event_row", lambda: [event_row(e, []) for _, e in parsed]),
        ("entry", "    of it: format_occurred_at",
         lambda: [format_occurred_at(e.occurred_at) for _, e in parsed]),
        ("entry", "batch records, format 2 (events as dicts, raw records after the JSON)",
         lambda: [format_2_join([format_2_item(0, i, 0, r, e) for i, (r, e) in
                                 enumerate(parsed[k:k + BATCH_EVENTS])],
                                raw_of[k:k + BATCH_EVENTS])
                  for k in range(0, n, BATCH_EVENTS)]),
        ("entry", "  of it: event_to_dict", lambda: [event_to_dict(e) for _, e in parsed]),
        ("entry", "batch records, format 1 (each raw record a JSON string)",
         lambda: [format_1_join([format_1_item(0, i, 0, r, e) for i, (r, e) in
                                 enumerate(parsed[k:k + BATCH_EVENTS])])
                  for k in range(0, n, BATCH_EVENTS)]),
        ("worker", "decode_batch, format 3", lambda: [decode_batch(b) for b in batches]),
        ("worker", "decode_batch, format 2", lambda: [decode_batch(b) for b in batches_2]),
        ("worker", "decode_batch, format 1", lambda: [decode_batch(b) for b in batches_1]),
        ("worker", "claims records, format 1 (raws as JSON strings; the whole flush, then each "
                   "claim again: before the fifteenth round)",
         lambda: [gathered_format_1(g) for g in claim_groups_1]),
        ("worker", "claims records, format 2 (raws after the JSON, groups sized by a sample)",
         lambda: [encode_claims(g) for g in claim_groups]),
        ("claims", "decode claims records, format 1", lambda: [decode_claims(r)
                                                                for r in claim_records_1]),
        ("claims", "decode claims records, format 2", lambda: [decode_claims(r)
                                                                for r in claim_records]),
        ("worker", f"journey records to JSON, written-out dict ({len(journeys) / n:.2f} a event)",
         lambda: [to_json(j.to_dict()) for j in journeys]),
        ("worker", "journey records to JSON, generic dict (before 2026-12-03)",
         lambda: [to_json(records_module._to_dict(JourneyRecord._fields, j.astuple(),
                                                  journey_times)) for j in journeys]),
        ("worker", f"metric records to JSON, written-out dict ({len(metrics) / n:.2f} a event)",
         lambda: [to_json(m.to_dict()) for m in metrics]),
        ("worker", "metric records to JSON, generic dict (before 2026-12-03)",
         lambda: [to_json(records_module._to_dict(MetricRecord._fields, m, metric_times))
                  for m in metrics]),
        ("sink", "decode_entries, format 3 (the sink's path)",
         lambda: [decode_entries(b) for b in batches]),
        ("sink", "touchpoint_columns of format 3's rows (5,000-row inserts)",
         lambda: [touchpoint_columns(entries[i:i + 5000], EVENT_AT, OCCURRED_MS_AT, DIGEST_AT)
                  for i in range(0, n, 5000)]),
        ("sink", "format 2's dicts (the path before format 3)",
         lambda: [format_2_rows(b) for b in batches_2]),
        ("sink", "columnar touchpoint_events of format 2's dicts (5,000-row inserts)",
         lambda: [columnar("touchpoint_events", rows_2[i:i + 5000]) for i in range(0, n, 5000)]),
    ]
    return [(process, step, best_us(fn, n, repeat)) for process, step, fn in steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    load = loadavg()
    results = measure(args.events, args.repeat)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, core "
          f"{'compiled' if pipeline.core_build.COMPILED else 'interpreted'}, "
          f"{args.events:,} generated events, best of {args.repeat}; load {load} before, "
          f"{loadavg()} after")
    print("| process | step | us per event |")
    print("|---|---|---:|")
    for process, step, us in results:
        print(f"| {process} | {step} | {us:.2f} |")


if __name__ == "__main__":
    main()

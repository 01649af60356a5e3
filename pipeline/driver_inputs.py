"""What `peakend drivers` needs from a replay, written by `peakend replay` as two Parquet files
beside journeys.jsonl, so the analysis does not read and validate every event line again
(docs/benchmarks.md "Key drivers": that was ~70% of the command's time).

- drivers_events.parquet: one row per event replay applied (the dead letters and the duplicates
  it dropped are not there), in the order applied: what `jobs.drivers.FeatureBuilder.moment`
  takes: the event's journey key (journey_id, else customer_id and time), the three names a
  driver can be (touchpoint, stage, channel), its valence by the core's `moment_valence` (null
  for a marker and for a survey, which is no moment), and for a survey its NPS answer (with the
  event_id, the answer's tie-break).
- drivers_journeys.parquet: the journeys of journeys.jsonl (latest record each), the columns
  `FeatureBuilder.journey` takes, times as epoch milliseconds.

Only the inputs are written, not per-journey features: which journey an event belongs to is
known when the replay ends (a late event can merge two customer journeys), and the driver can be
any of the three dimensions. The features are made from these rows by `FeatureBuilder`, the one
definition, as from the events file and from ClickHouse. The events are spooled to an unnamed
temporary file while replay runs (memory stays flat) and copied into the output transaction
with the other files (`pipeline.outputs`: all or nothing).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from operator import itemgetter
from typing import IO, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.event import TouchpointEvent
from pipeline.core.records import JourneyRecord
from pipeline.core.scoring import ScoringRules
from pipeline.core.valence import moment_valence

EVENTS_FILE = "drivers_events.parquet"
JOURNEYS_FILE = "drivers_journeys.parquet"
FILES = (EVENTS_FILE, JOURNEYS_FILE)

EVENT_SCHEMA = pa.schema([
    ("journey_id", pa.string()),  # null: customer-keyed
    ("customer_id", pa.string()),
    ("occurred_ms", pa.int64()),
    ("event_id", pa.string()),  # NPS answers only (their tie-break); null otherwise
    ("survey", pa.bool_()),
    ("nps", pa.int8()),
    ("touchpoint", pa.string()),
    ("stage", pa.string()),
    ("channel", pa.string()),
    ("valence", pa.float64()),  # null: a marker or a survey (no moment)
])
JOURNEY_SCHEMA = pa.schema([
    ("journey_id", pa.string()),
    ("keyed_by", pa.string()),
    ("customer_id", pa.string()),
    ("started_ms", pa.int64()),
    ("ended_ms", pa.int64()),
    ("status", pa.string()),
    ("peak_end_score", pa.float64()),
    ("outcome", pa.string()),
])
# the names repeat (touchpoints, journeys' events): dictionary pages keep the file small
DICTIONARY_COLUMNS = ["journey_id", "customer_id", "touchpoint", "stage", "channel", "status",
                      "keyed_by", "outcome"]
BATCH_ROWS = 65_536  # rows buffered as Python lists before a Parquet row group
# Metadata key of drivers_journeys.parquet: the size of the journeys.jsonl of the same run. A
# journeys.jsonl of another size beside it is from another run (a replay older than these files
# rewrote the directory and left them): `peakend drivers` then does not use them.
JOURNEYS_JSONL_BYTES = "peakend.journeys_jsonl_bytes"


class DriverInputs:
    """`add(event)` for every event replay applies; `write_events` / `write_journeys` at the
    end, into the output transaction's handles."""

    def __init__(self, rules: ScoringRules, ces_5_more_effort: bool) -> None:
        self.rules = rules
        self.ces_5_more_effort = ces_5_more_effort
        self._columns: tuple[list[object], ...] = tuple([] for _ in EVENT_SCHEMA)
        self._spool: IO[bytes] | None = None
        self._writer: pq.ParquetWriter | None = None

    def add(self, event: TouchpointEvent) -> None:
        (journeys, customers, times, ids, surveys, answers, touchpoints, stages, channels,
         valences) = self._columns
        journeys.append(event.journey_id)
        customers.append(event.customer_id)
        times.append(event.occurred_ms)
        touchpoints.append(event.touchpoint)
        stages.append(event.stage)
        channels.append(event.channel)
        if event.type == "survey":
            nps = event.survey.nps if event.survey is not None else None
            ids.append(None if nps is None else event.event_id)
            surveys.append(True)
            answers.append(nps)
            valences.append(None)
        else:
            ids.append(None)
            surveys.append(False)
            answers.append(None)
            valences.append(moment_valence(event, self.rules, self.ces_5_more_effort))
        if len(journeys) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._writer is None:
            # unnamed, kept open across calls until write_events or close
            self._spool = tempfile.TemporaryFile(prefix="peakend-drivers-")  # noqa: SIM115
            self._writer = pq.ParquetWriter(self._spool, EVENT_SCHEMA,
                                            use_dictionary=DICTIONARY_COLUMNS, compression="zstd")
        self._writer.write_batch(pa.record_batch(
            [pa.array(values, type=f.type) for values, f in zip(self._columns, EVENT_SCHEMA,
                                                                 strict=True)],
            schema=EVENT_SCHEMA))
        for values in self._columns:
            values.clear()

    def write_events(self, handle: BinaryIO) -> None:
        """The events file (also when no event was applied: a file with no rows)."""
        if self._columns[0] or self._writer is None:
            self._flush()
        assert self._writer is not None and self._spool is not None
        self._writer.close()
        self._spool.seek(0)
        shutil.copyfileobj(self._spool, handle, 1 << 20)
        self.close()

    def close(self) -> None:
        """Drop the spool (the temporary file is unnamed: gone with the process anyway)."""
        if self._spool is not None:
            self._spool.close()
        self._spool = self._writer = None

    @staticmethod
    def write_journeys(handle: BinaryIO, journeys: Iterable[JourneyRecord],
                       journeys_jsonl_bytes: int) -> None:
        """The journeys file, rows by journey id (`journeys`: one record per id, in any order:
        read in the order held, sorted after, as `peakend replay` writes journeys.jsonl);
        `journeys_jsonl_bytes`, the size of the journeys.jsonl written with it, goes into its
        metadata (`JOURNEYS_JSONL_BYTES`)."""
        rows = [(r.journey_id, r.keyed_by, r.customer_id, r.started_at, r.ended_at, r.status,
                 r.peak_end_score, r.outcome) for r in journeys]
        rows.sort(key=itemgetter(0))
        columns = [pa.array([row[i] for row in rows], type=f.type)
                   for i, f in enumerate(JOURNEY_SCHEMA)]
        schema = JOURNEY_SCHEMA.with_metadata({JOURNEYS_JSONL_BYTES: str(journeys_jsonl_bytes)})
        pq.write_table(pa.table(columns, schema=schema), handle,
                       use_dictionary=DICTIONARY_COLUMNS, compression="zstd")

"""The claims stage: one event_id, one journey, across the partitions of the stream.

Stage one applies each event to its journey on the partition of the journey key, so two copies
of one event_id under two journey keys (two journey ids, or a journey id and none) land on two
partitions and no journey partition sees both. Stage one therefore *claims* every copy it
applies: a claim (event_id, journey key, journey partition, content digest, event time, that
partition's stream time, and where the copy came from) goes to the internal topic
`<app>-claims` on the partition of its event_id (`claims_partition`), in one record per target
partition and flush. This stage keeps the winning copy of each event_id (`EventClaims`: the
smallest content digest, the same rule as within a journey and as replay) while a copy could
still be applied, and for every copy that loses sends a *withdrawal* back to the loser's
journey partition, on the journey-events topic itself (so the partition's owner applies it in
order with the events: `batches.encode_withdrawals`), and makes the copy whose claim came
second a `conflict` dead letter. Stage one takes a withdrawn copy out of its journey exactly as
the `replaced` path does (`PartitionProcessor.withdraw`).

No Faust object here: tested without servers. State: one table entry per claimed event_id
(`dirty_state` / `restore_keys`), and the journey partitions' stream times under
`WATERMARKS_KEY`, from which claims are forgotten past the lateness horizon (the merged
stream time, as replay).
Redelivery is harmless: a claim seen again changes nothing, and a withdrawal of a copy no
longer held is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zlib import crc32

import orjson

from pipeline.contract.dead_letters import DeadLetter
from pipeline.core.claims import EventClaims, claims_horizon
from pipeline.core.clock import NEVER_MS, conflict_error
from pipeline.core.config import CoreConfig
from pipeline.core.journeys import CONFLICT
from pipeline.stream.batches import raws_at, take_raws, with_raws
from pipeline.stream.split import MAX_GATHERED_BYTES, encoded_groups

WATERMARKS_KEY = "__watermarks__"
NEVER = NEVER_MS  # a claims partition that has seen no claim


def claims_partition(event_id: str, partitions: int) -> int:
    """The claims partition of an event_id (any stable hash: only this stage reads it).

    >>> claims_partition("evt-1", 4) == claims_partition("evt-1", 4) < 4
    True
    """
    return crc32(event_id.encode("utf-8", "surrogatepass")) % partitions


def claim_item(event_id: str, key: str, digest: int, partition: int, at_ms: int,
               watermark_ms: int, source_partition: int, source_offset: int, raw: bytes
               ) -> list[Any]:
    """One claim (one per applied event): its fields, the raw record last (`encode_claims`
    writes it after the record's JSON)."""
    return [event_id, key, digest, partition, at_ms, watermark_ms, source_partition,
            source_offset, raw]


# Claims records, format 2 (since the fifteenth round of docs/streaming.md): the JSON
# `{"f":2,"c":[claim, ...]}`, each claim's raw record replaced by its length, then the raws
# (`batches.with_raws`). Format 1, `{"c":[claim, ...]}`, held each raw record inside the JSON
# as a string: about 1 KB of escaped JSON per applied event, which the worker encoded and the
# claims stage decoded. Format 1 records are still read (a topic may hold them after an
# upgrade); a worker from before this format cannot read one (upgrade the workers together).
CLAIM_RAW_AT = 8
_CLAIMS_HEAD = b'{"f":2,"c":['
_CLAIMS_RECORD = "a claims record"


def _raw_length(value: Any) -> int:
    """orjson's `default` for a claim: its raw record (the one value orjson does not write)
    written as its length."""
    if isinstance(value, bytes):
        return len(value)
    raise TypeError(f"a claim holds a {type(value).__name__}")


def _claims_record(claims: Sequence[list[Any]]) -> bytes:
    body = orjson.dumps(claims, default=_raw_length)
    return with_raws(_CLAIMS_HEAD + body[1:] + b"}", [claim[CLAIM_RAW_AT] for claim in claims])


def encode_claims(claims: list[list[Any]], max_bytes: int = MAX_GATHERED_BYTES) -> list[bytes]:
    """Claims records holding `claims` (from `claim_item`) in order, each, JSON and raws, under
    `max_bytes` (a claim larger than that alone in its record).

    >>> records = encode_claims([claim_item("e1", "j", 7, 0, 5, 5, 1, 9, b'{"a":"b"}')])
    >>> records
    [b'{"f":2,"c":[["e1","j",7,0,5,5,1,9,9]]}{"a":"b"}00000009']
    >>> decode_claims(records[0])
    [['e1', 'j', 7, 0, 5, 5, 1, 9, b'{"a":"b"}']]
    """
    return [record for _, record in encoded_groups(claims, max_bytes, _claims_record)]


def decode_claims(value: bytes) -> list[list[Any]]:
    """The claims of a claims record (format 2 or 1), each raw record as bytes."""
    if not value.startswith(_CLAIMS_HEAD):
        claims: list[list[Any]] = orjson.loads(value)["c"]  # format 1: raw records as strings
        for claim in claims:
            claim[CLAIM_RAW_AT] = claim[CLAIM_RAW_AT].encode("utf-8")
        return claims
    at, end = raws_at(value, _CLAIMS_RECORD, len(_CLAIMS_HEAD))
    try:
        claims = orjson.loads(memoryview(value)[len(_CLAIMS_HEAD) - 1:at - 1])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{_CLAIMS_RECORD} whose JSON part does not read: {exc}") from None
    take_raws(value, claims, CLAIM_RAW_AT, at, end, _CLAIMS_RECORD)
    return claims


@dataclass(slots=True)
class ClaimsOutput:
    # journey partition -> [[journey key, event_id, digest], ...] to withdraw there
    withdrawals: dict[int, list[list[Any]]] = field(default_factory=dict)
    letters: list[DeadLetter] = field(default_factory=list)


class ClaimsStage:
    """The claims of one partition of the claims topic."""

    def __init__(self, config: CoreConfig, source_topic: str) -> None:
        self.claims = EventClaims()
        self.source_topic = source_topic
        self.lateness_ms = config.windows.allowed_lateness_ms
        self.bucket_ms = config.windows.bucket_ms
        self.watermarks: dict[int, int] = {}  # journey partition -> its stream time
        self._dirty: set[str] = set()
        self._watermarks_dirty = False

    def restore_keys(self, states: Iterable[tuple[str, Any]]) -> None:
        for key, state in states:
            if key == WATERMARKS_KEY:
                self.watermarks = {int(p): int(w) for p, w in state.items()}
            else:
                self.claims.restore_key(key, state)

    def apply(self, items: Iterable[list[Any]]) -> ClaimsOutput:
        out = ClaimsOutput()
        claims = self.claims
        for (event_id, key, digest, partition, at_ms, watermark, source_partition,
             source_offset, raw) in items:
            if watermark > self.watermarks.get(partition, NEVER):
                self.watermarks[partition] = watermark
                self._watermarks_dirty = True
            withdrawal = claims.claim(event_id, digest, key, partition, at_ms)
            if claims.changed:
                self._dirty.add(event_id)
            if withdrawal is None:
                continue
            out.withdrawals.setdefault(withdrawal.partition, []).append(
                [withdrawal.key, event_id, withdrawal.digest])
            out.letters.append(DeadLetter.make(
                CONFLICT, conflict_error(event_id, not withdrawal.loser_is_new),
                original=raw, source_topic=self.source_topic,
                source_partition=source_partition, source_offset=source_offset,
                event_id=event_id))
        if self._watermarks_dirty and self.watermarks:
            horizon = claims_horizon(min(self.watermarks.values()), self.lateness_ms,
                                     self.bucket_ms)
            self._dirty.update(claims.forget_before(horizon))
        return out

    def dirty_state(self) -> list[tuple[str, Any]]:
        """(event_id, claim or None) for every claim changed since the last call."""
        pairs: list[tuple[str, Any]] = []
        for event_id in sorted(self._dirty):
            pairs.append((event_id, self.claims.snapshot_key(event_id)))
        self._dirty.clear()
        if self._watermarks_dirty:
            pairs.append((WATERMARKS_KEY, {str(p): w for p, w in self.watermarks.items()}))
            self._watermarks_dirty = False
        return pairs

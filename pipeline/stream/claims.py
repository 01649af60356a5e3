"""The claims stage: one event_id, one journey, across the partitions of the stream.

Stage one applies each event to its journey on the partition of the journey key, so two copies
of one event_id under two journey keys (two journey ids, or a journey id and none) land on two
partitions and no journey partition sees both. Stage one therefore *claims* every copy it
applies: a claim (event_id, journey key, journey partition, content digest, event time, that
partition's stream time, and where the copy came from) goes to the internal topic
`<app>-claims` on the partition of its event_id (`pipeline.core.claims.claims_partition`), in
one record per target partition and flush. This stage keeps the winning copy of each event_id
(`EventClaims`: the smallest content digest, the same rule as within a journey and as replay,
except that two copies further apart in event time than the lateness are two events) while a
copy could still be applied, and for every copy that loses sends a *withdrawal* back to the
loser's journey partition, on the journey-events topic itself (so the partition's owner applies
it in order with the events: `batches.encode_withdrawals`), and makes the copy whose claim came
second a `conflict` dead letter. Stage one takes a withdrawn copy out of its journey exactly as
the `replaced` path does (`PartitionProcessor.withdraw`).

No Faust object here: tested without servers. State: one table entry per claimed event_id
(`dirty_state` / `restore_keys`), and the journey partitions' stream times under
`WATERMARKS_KEY`, from which claims are forgotten past the lateness horizon (the merged
stream time, as replay).

Claims are forgotten *by time*, without a removal entry each: the horizon reached so far is
state of its own (`FORGOTTEN_KEY`), claims past it are forgotten after every claim judged
(`EventClaims.advance`, as replay: not after a record's last claim, which kept claims replay
had forgotten when the event that put them out of reach came in the same record), the table is
told which keys went (`drain_forgotten`: the journal stops carrying them and they leave the
changelog with their chunks), and a restore forgets again what the chunks still hold from
before the horizon. A removal per claim was a second
journal entry per applied event once a day of claims is held (docs/streaming.md, nineteenth
round). The horizon only moves forward: a journey partition first heard from after the
others have moved a day on has its older claims judged against what is held and then
forgotten at once, where they were held until the horizon fell back to them before; so the
claims held after a restore are exactly the claims held before it.

Redelivery: the claims agent stores the offset after its last claims record with the state
and passes over the records below it that a restart or a move reads again (as the journeys
agent does). A record read again beyond it (a batch a crash overtook before its state was
written) is judged again: a winning claim seen again changes nothing, a losing one sends its
withdrawal and `conflict` letter again; the withdrawal of a copy no longer held changes nothing
(stage one counts it under `not_held`), and the letter replaces its twin in ClickHouse
(`dead_letters` is keyed by the source record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.contract.dead_letters import DeadLetter
from pipeline.core.claims import EventClaims, claims_reach
from pipeline.core.clock import NEVER_MS, conflict_error
from pipeline.core.config import CoreConfig
from pipeline.core.journeys import CONFLICT
from pipeline.stream.batches import raws_at, take_raws, with_raws
from pipeline.stream.layout import INT, STR, Kinds, check_row
from pipeline.stream.split import MAX_GATHERED_BYTES, encoded_groups

WATERMARKS_KEY = "__watermarks__"
FORGOTTEN_KEY = "__forgotten_before__"  # the claims horizon reached: every claim before it went
NEVER = NEVER_MS  # a claims partition that has seen no claim


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


# A claim's fields as `claim_item` writes them, the raw record as a format 2 record holds it
# before its raws are taken (its length) and as format 1 held it (a string).
_CLAIM_KINDS: tuple[Kinds, ...] = (STR, STR, INT, INT, INT, INT, INT, INT)


def decode_claims(value: bytes) -> list[list[Any]]:
    """The claims of a claims record (format 2 or 1), each raw record as bytes; checked whole
    before the stage applies any (pipeline/stream/layout.py: why): a ValueError names what
    does not read."""
    what = _CLAIMS_RECORD
    if not value.startswith(_CLAIMS_HEAD):
        what = "a claims record of format 1"
        claims = _claims_of(value, what, lambda found: found["c"])
        _check_claims(claims, STR, what)
        for claim in claims:  # format 1: raw records as strings
            claim[CLAIM_RAW_AT] = claim[CLAIM_RAW_AT].encode("utf-8")
        return claims
    at, end = raws_at(value, what, len(_CLAIMS_HEAD))
    claims = _claims_of(memoryview(value)[len(_CLAIMS_HEAD) - 1:at - 1], what, lambda found: found)
    _check_claims(claims, INT, what)
    take_raws(value, claims, CLAIM_RAW_AT, at, end, what)
    return claims


def _claims_of(json_part: bytes | memoryview, what: str, pick: Callable[[Any], Any]
               ) -> list[list[Any]]:
    try:
        claims = pick(orjson.loads(json_part))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what} whose JSON part does not read: {exc}") from None
    except (KeyError, TypeError, IndexError):
        raise ValueError(f'{what} that is not {{"c": [claim, ...]}}') from None
    if type(claims) is not list:
        raise ValueError(f"{what} whose claims are not a list")
    return claims


def _check_claims(claims: list[Any], raw: Kinds, what: str) -> None:
    kinds = (*_CLAIM_KINDS, raw)
    for i, claim in enumerate(claims):
        check_row(claim, kinds, f"{what} (claim {i})")


@dataclass(slots=True)
class ClaimsOutput:
    # journey partition -> [[journey key, event_id, digest], ...] to withdraw there
    withdrawals: dict[int, list[list[Any]]] = field(default_factory=dict)
    letters: list[DeadLetter] = field(default_factory=list)


class ClaimsStage:
    """The claims of one partition of the claims topic."""

    def __init__(self, config: CoreConfig, source_topic: str) -> None:
        self.source_topic = source_topic
        self.lateness_ms = config.windows.allowed_lateness_ms
        self.bucket_ms = config.windows.bucket_ms
        self.claims = EventClaims(reach_ms=claims_reach(self.lateness_ms, self.bucket_ms))
        self._dirty: set[str] = set()
        self._forgotten: list[str] = []
        self._watermarks_dirty = False
        self._horizon_dirty = False

    @property
    def watermarks(self) -> dict[int, int]:
        """Journey partition -> its stream time, as its claims carried it."""
        return self.claims.watermarks

    @property
    def forgotten_before(self) -> int:
        """The claims horizon reached (module docstring)."""
        return self.claims.forgotten_before

    def restore_keys(self, states: Iterable[tuple[str, Any]]) -> None:
        claims = self.claims
        for key, state in states:
            if key == WATERMARKS_KEY:
                claims.watermarks = {int(p): int(w) for p, w in state.items()}
            elif key == FORGOTTEN_KEY:
                claims.forgotten_before = int(state)
            else:
                claims.restore_key(key, state)
        # what the chunks still hold of the claims forgotten before the crash or the move
        self._forgotten.extend(claims.forget_before(claims.forgotten_before))

    def apply(self, items: Iterable[list[Any]]) -> ClaimsOutput:
        out = ClaimsOutput()
        claims = self.claims
        watermarks = claims.watermarks
        horizon = claims.forgotten_before
        for (event_id, key, digest, partition, at_ms, watermark, source_partition,
             source_offset, raw) in items:
            if watermark > watermarks.get(partition, NEVER):
                self._watermarks_dirty = True
            withdrawal = claims.claim(event_id, digest, key, partition, at_ms)
            if claims.changed:
                self._dirty.add(event_id)
            # one claim at a time, as replay: judged, then forget what no copy can reach (not
            # after the record's last claim: `EventClaims.advance`); a claim from before the
            # horizon (a journey partition far behind the others) goes at once, as a restore
            # would forget it
            gone = claims.advance(partition, watermark)
            if gone:
                self._dirty.difference_update(gone)
                self._forgotten.extend(gone)
            if withdrawal is None:
                continue
            out.withdrawals.setdefault(withdrawal.partition, []).append(
                [withdrawal.key, event_id, withdrawal.digest])
            out.letters.append(DeadLetter.make(
                CONFLICT, conflict_error(event_id, not withdrawal.loser_is_new),
                original=raw, source_topic=self.source_topic,
                source_partition=source_partition, source_offset=source_offset,
                event_id=event_id))
        if claims.forgotten_before != horizon:
            self._horizon_dirty = True
        return out

    def dirty_state(self) -> list[tuple[str, Any]]:
        """(event_id, claim) for every claim changed since the last call and still held, and
        the stream times and horizon when they moved (claims forgotten: `drain_forgotten`)."""
        pairs: list[tuple[str, Any]] = []
        snapshot_key = self.claims.snapshot_key
        for event_id in sorted(self._dirty):
            pairs.append((event_id, snapshot_key(event_id)))
        self._dirty.clear()
        if self._watermarks_dirty:
            pairs.append((WATERMARKS_KEY, {str(p): w for p, w in self.watermarks.items()}))
            self._watermarks_dirty = False
        if self._horizon_dirty:
            pairs.append((FORGOTTEN_KEY, self.forgotten_before))
            self._horizon_dirty = False
        return pairs

    def drain_forgotten(self) -> list[str]:
        """The event ids whose claims were forgotten by time since the last call (at the
        horizon, or on restore), for the table to forget without a removal each: the
        horizon, written by `dirty_state`, forgets them again on restore."""
        forgotten, self._forgotten = self._forgotten, []
        return forgotten

"""Stage two of the stream, for one partition of the contributions topic: segment totals and
drop detection.

`SegmentStage` keeps a `SegmentTotals` per segment it owns and one `DropDetector`. Contributions
update the totals (idempotent upserts) and produce merged metric records (cx.metrics); watermark
messages from every stage-one partition give the merged stream time (the slowest input partition
seen so far, as in `ExperienceEngine`), which advances the detector (cx.alerts) and evicts final
buckets. No Faust object: the worker persists `dirty_state()` in a table.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.core.clock import NEVER_MS
from pipeline.core.config import CoreConfig
from pipeline.core.drops import DropDetector, assemble
from pipeline.core.records import AlertRecord, MetricRecord
from pipeline.core.segment_totals import SegmentTotals, forget_start
from pipeline.stream import messages
from pipeline.stream.split import encoded_groups

log = logging.getLogger(__name__)

# State keys. A bucket is kept member by member: `member:` + JSON [segment, metric,
# bucket_start, member] -> {"v": the bucket's version, "d": changed since the last flush,
# "a": the member's value, absent once the member left the bucket; "k": 1 for a journey that
# moved on while this bucket was final and stays counted here, `SegmentTotals.is_kept`}.
# One record per changed member: a bucket written whole (the layout before,
# `bucket:<segment>|<metric>|<start>` -> every member, still read) grew with its members, and
# a live minute bucket of segment `all` passes the broker's 1 MiB record limit at about 2,500
# events/s (docs/streaming.md). A
# member that left keeps its key (without "a") until the bucket is evicted, so the bucket's
# version, the largest "v" of its members, never goes back.
MEMBER_PREFIX = "member:"
BUCKET_PREFIX = "bucket:"  # the whole-bucket layout: read at restore, rewritten as members
# A drop series is kept as a head (its cursor, window sums and alert state: small) and parts
# (`PART_BUCKETS` buckets each: an hour of minute buckets, a few KiB): `series-head:` + JSON
# [metric, dim, value] and `series-part:` + JSON [metric, dim, value, first start]. A series
# written whole (`series:<metric>|<dim>|<value>`, the layout before: a week of buckets, 632
# KiB, written at every save) is still read, and rewritten as a head and parts.
HEAD_PREFIX = "series-head:"
PART_PREFIX = "series-part:"
SERIES_PREFIX = "series:"
# The eviction horizon reached: buckets that end at or before it were evicted, and their
# members *forgotten by time*, without a removal each (the journal stops carrying them:
# `JournalTable.forget_keys`); a restore drops the members the chunks still hold of such a
# bucket. A bucket can be made again after its eviction (a withdrawal moves a journey's end
# back into it, which replay counts too), so a member written while its bucket is past the
# horizon carries that horizon (`"h"`), and a restore keeps the members written at the horizon
# it restores at: in the stream a bucket past the horizon is evicted at the next watermark, so
# those are the bucket made again since, and any member with an older `"h"` or none went.
EVICTED_KEY = "segments-evicted-before"
# A negative_end bucket past final, held for the journey idle time as its counts and journey ids
# (`SealedEnds`, docs/streaming.md point 5): `sealed:` + JSON [segment, bucket_start] -> {"v",
# "d", "n": journeys counted, "x": of them negative, "late": journey id -> negative for those
# counted since it was sealed, "p": how many pieces}, and the ids counted when it was sealed in
# pieces of at most SEALED_PIECE_BYTES of JSON (a piece of one id may pass it: ids are at most
# 200 characters), `sealed-ids:` + JSON [segment, bucket_start, piece] ->
# [journey ids], written once, when the bucket is sealed (its member keys forgotten in the same
# write: a journal write is whole or absent). All of them are forgotten by time at the end of
# the hold; a restore drops the member keys of a bucket it finds sealed.
SEALED_PREFIX = "sealed:"
SEALED_IDS_PREFIX = "sealed-ids:"
SEALED_PIECE_BYTES = 64 * 1024  # well within a journal chunk (CHUNK_BYTES)
_JOURNALED = (MEMBER_PREFIX, HEAD_PREFIX, PART_PREFIX, EVICTED_KEY, SEALED_PREFIX,
              SEALED_IDS_PREFIX)


def is_journaled_key(key: str) -> bool:
    """Whether a state key goes in the worker's journal chunks (pipeline/stream/journal.py):
    a bucket member's, a series head's or part's (each small; a journal write is whole or
    absent after a crash, so a series' head and the parts written with it are never read
    without each other). The whole-series keys of the layout before are not.

    >>> is_journaled_key(member_key("all", "nps", 0, "e1")), is_journaled_key("series:nps|all|")
    (True, False)
    """
    return key.startswith(_JOURNALED)


def head_key(series: tuple[str, str, str]) -> str:
    """The state key of a drop series' head.

    >>> head_key(("nps", "channel", "phone"))
    'series-head:["nps","channel","phone"]'
    """
    return HEAD_PREFIX + orjson.dumps(series).decode()


def part_key(series: tuple[str, str, str], first: int) -> str:
    """The state key of the part of a drop series that begins at bucket start `first`.

    >>> part_key(("nps", "all", ""), 3600000)
    'series-part:["nps","all","",3600000]'
    """
    return PART_PREFIX + orjson.dumps([*series, first]).decode()


def sealed_key(seg: str, bucket_start: int) -> str:
    """The state key of a sealed negative_end bucket's counts.

    >>> sealed_key("all=all", 60000), sealed_ids_key("all=all", 60000, 2)
    ('sealed:["all=all",60000]', 'sealed-ids:["all=all",60000,2]')
    """
    return SEALED_PREFIX + orjson.dumps([seg, bucket_start]).decode()


def sealed_ids_key(seg: str, bucket_start: int, piece: int) -> str:
    """The state key of one piece of a sealed negative_end bucket's journey ids."""
    return SEALED_IDS_PREFIX + orjson.dumps([seg, bucket_start, piece]).decode()


def member_key(seg: str, metric: str, bucket_start: int, member: str) -> str:
    """The state key of one bucket member (JSON: segment values and member ids may hold any
    character).

    >>> member_key("channel=phone", "nps", 60000, "e1")
    'member:["channel=phone","nps",60000,"e1"]'
    """
    return MEMBER_PREFIX + orjson.dumps([seg, metric, bucket_start, member]).decode()


@dataclass(slots=True)
class StageTwoOutput:
    metrics: list[MetricRecord] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)


class SegmentStage:
    """Segments of one contributions partition; see the module docstring."""

    def __init__(
        self,
        config: CoreConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        series_every_s: float = 30.0,
        sources: int | None = None,
    ) -> None:
        self.config = config
        # How many stage-one partitions send here. A bucket is evicted only once every one of
        # them has passed it: with the slowest partition *seen so far*, one partition's
        # watermarks could arrive (a large flush, a start-up) before another partition's first
        # message and evict buckets that partition still contributes to.
        self.sources = sources
        self.bucket_ms = config.windows.bucket_ms
        self.totals: dict[str, SegmentTotals] = {}
        self.detector = DropDetector(config.drops, self.bucket_ms, config.windows.rolling_ms,
                                     keep_parts=True)
        # Source-partition watermarks are not persisted: they come back with the next watermark
        # messages, and until then the detector simply waits.
        self.watermarks: dict[int, int] = {}
        self.merged = NEVER_MS
        self.evicted_before = NEVER_MS  # the eviction horizon reached (EVICTED_KEY)
        self._evicted_dirty = False
        self._forgotten: list[str] = []  # member keys forgotten by time: `drain_forgotten`
        self._dirty_segments: set[str] = set()
        self._unflushed: set[str] = set()
        # segment -> (metric, bucket_start) -> member -> its state key as written (to forget
        # them all when the bucket is evicted), and whole-bucket keys read at restore, to
        # delete once their members are written in the member layout
        self._written: dict[str, dict[tuple[str, int], dict[str, str]]] = {}
        # segment -> start of each sealed bucket written -> its pieces of ids (to forget its
        # keys at the end of the hold)
        self._sealed_written: dict[str, dict[int, int]] = {}
        self._legacy_keys: list[str] = []
        # series read whole (the layout before): written as a head and every part at the
        # next save, their whole key deleted after
        self._whole_series: set[tuple[str, str, str]] = set()
        self._whole_keys: list[str] = []
        self.clock = clock
        self.series_every_s = series_every_s
        self._series_saved_at = clock()
        self._series_saved_merged = self.merged

    def restore_keys(self, states: Iterable[tuple[str, Any]]) -> None:
        # Buckets are gathered first: a bucket's members come as separate keys, and a bucket
        # moved to the member layout may still have its whole-bucket key (a crash between the
        # two writes); the whole-bucket key is the older, members override it.
        buckets: dict[tuple[str, str, int], dict[str, Any]] = {}
        members: list[tuple[tuple[str, str, int], str, dict[str, Any], str]] = []
        heads: dict[tuple[str, str, str], dict[str, Any]] = {}
        parts: dict[tuple[str, str, str], list[tuple[int, dict[str, Any]]]] = {}
        wholes: dict[tuple[str, str, str], dict[str, Any]] = {}
        sealed: dict[tuple[str, int], tuple[dict[str, Any], str]] = {}
        sealed_ids: dict[tuple[str, int], dict[int, tuple[list[str], str]]] = {}
        for key, state in states:
            if key.startswith(SEALED_PREFIX):
                seg, start = orjson.loads(key[len(SEALED_PREFIX):])
                sealed[(seg, int(start))] = (state, key)
            elif key.startswith(SEALED_IDS_PREFIX):
                seg, start, piece = orjson.loads(key[len(SEALED_IDS_PREFIX):])
                sealed_ids.setdefault((seg, int(start)), {})[int(piece)] = (state, key)
            elif key.startswith(MEMBER_PREFIX):
                seg, metric, start, member = orjson.loads(key[len(MEMBER_PREFIX):])
                # one string per member id across segments, as `_apply` keeps them
                members.append(((seg, metric, int(start)), sys.intern(member), state, key))
            elif key == EVICTED_KEY:
                self.evicted_before = int(state)
            elif key.startswith(BUCKET_PREFIX):
                seg, metric, start = key[len(BUCKET_PREFIX) :].rsplit("|", 2)
                self._legacy_keys.append(key)
                if state is not None:
                    buckets[(seg, metric, int(start))] = {
                        "v": int(state["v"]), "m": dict(state["m"]), "d": bool(state.get("d")),
                        "k": set(state.get("k", ())), "legacy": True}
            elif key.startswith(HEAD_PREFIX):
                metric, dim, value = orjson.loads(key[len(HEAD_PREFIX):])
                heads[(metric, dim, value)] = state
            elif key.startswith(PART_PREFIX):
                metric, dim, value, first = orjson.loads(key[len(PART_PREFIX):])
                parts.setdefault((metric, dim, value), []).append((int(first), state))
            elif key.startswith(SERIES_PREFIX):
                metric, dim, value = key[len(SERIES_PREFIX) :].split("|", 2)
                self._whole_keys.append(key)
                if state is not None:
                    wholes[(metric, dim, value)] = state
        for series, head in heads.items():
            in_order = sorted(parts.pop(series, []), key=lambda part: part[0])
            self.detector.restore_key(series, assemble(head, (part for _, part in in_order)))
        for series, whole in wholes.items():
            if series not in heads:  # else written as a head and parts since: those are newer
                self.detector.restore_key(series, whole)
                self._whole_series.add(series)
        # parts without a head: not written by this layout (a head goes with every write of
        # its parts); kept out of the detector, deleted at the next write
        self._legacy_keys.extend(part_key(series, first)
                                 for series, orphans in parts.items() for first, _ in orphans)
        evicted, width = self.evicted_before, self.bucket_ms
        hold = self.config.windows.end_hold_ms
        held_sealed = self._restore_sealed(sealed, sealed_ids)
        for bucket, member, state, key in members:
            if forget_start(bucket[1], bucket[2], hold) + width <= evicted \
                    and state.get("h", NEVER_MS) < evicted:
                self._forgotten.append(key)  # evicted before the state was written (EVICTED_KEY)
                continue
            if bucket[1] == "negative_end" and (bucket[0], bucket[2]) in held_sealed:
                self._forgotten.append(key)  # a member from before its bucket was sealed
                continue
            held = buckets.setdefault(bucket, {"v": 0, "m": {}, "d": False})
            held["v"] = max(held["v"], int(state["v"]))
            held["d"] = held["d"] or bool(state.get("d"))
            if "a" in state:
                held["m"][member] = state["a"]
                if state.get("k"):
                    held.setdefault("k", set()).add(member)
                else:
                    held.get("k", set()).discard(member)
            else:
                held["m"].pop(member, None)
                held.get("k", set()).discard(member)
            self._written.setdefault(bucket[0], {}).setdefault(bucket[1:], {})[member] = key
        for (seg, metric, start), held in buckets.items():
            totals = self._totals(seg)
            totals.restore_key((metric, start), {"v": held["v"], "m": held["m"], "d": held["d"],
                                                 "k": held.get("k", ())})
            if held.get("legacy"):
                totals.mark_members_changed((metric, start))  # rewritten as members
                self._dirty_segments.add(seg)
        # Buckets changed but not flushed when the state was written are flushed again.
        self._unflushed.update(seg for seg, totals in self.totals.items() if totals.pending())
        # The detector may have missed partials flushed after its series were last written.
        for totals in self.totals.values():
            for record in totals.records():
                self.detector.apply_partial(record)

    def _restore_sealed(self, heads: dict[tuple[str, int], tuple[dict[str, Any], str]],
                        pieces: dict[tuple[str, int], dict[int, tuple[list[str], str]]]
                        ) -> set[tuple[str, int]]:
        """Sealed negative_end buckets back from their keys (SEALED_PREFIX); those past the
        hold (the eviction horizon, EVICTED_KEY) and pieces without a head are forgotten.
        Returns the (segment, start) restored."""
        restored: set[tuple[str, int]] = set()
        evicted, width = self.evicted_before, self.bucket_ms
        hold = self.config.windows.end_hold_ms
        for (seg, start), (head, key) in heads.items():
            parts = pieces.pop((seg, start), {})
            keys = [key, *(part_key for _, part_key in parts.values())]
            if forget_start("negative_end", start, hold) + width <= evicted:
                self._forgotten.extend(keys)
                continue
            missing = [i for i in range(int(head["p"])) if i not in parts]
            if missing:
                # A journal write is read whole or not at all (pipeline/stream/journal.py), so
                # only a damaged state gets here. The counts are in the head and stay exact; the
                # ids only tell a journey sent again from a new one. Stopping would stop every
                # segment of the partition for good, so the stage goes on and says what it lost.
                log.error("segments state: sealed bucket %s at %d lacks pieces %s of its journey "
                          "ids (a damaged state); its counts are restored, but a journey of "
                          "those pieces sent again would count twice", seg, start, missing)
            ids = [sys.intern(j) for i in range(int(head["p"])) if i in parts
                   for j in parts[i][0]]
            late = {sys.intern(j): bool(n) for j, n in head["late"].items()}
            self._totals(seg).restore_key(("negative_end", start), {
                "v": head["v"], "d": head["d"],
                "s": {"n": head["n"], "x": head["x"], "ids": ids, "late": late}})
            self._sealed_written.setdefault(seg, {})[start] = int(head["p"])
            restored.add((seg, start))
        for parts in pieces.values():  # not written by this layout without a head
            self._forgotten.extend(part_key for _, part_key in parts.values())
        return restored

    def _totals(self, seg: str) -> SegmentTotals:
        totals = self.totals.get(seg)
        if totals is None:
            dim, _, value = seg.partition("=")
            totals = self.totals[seg] = SegmentTotals(
                dim, value, self.bucket_ms, end_hold_ms=self.config.windows.end_hold_ms)
        return totals

    def process(self, message: dict[str, Any]) -> StageTwoOutput:
        return self.process_batch([message])

    def apply(self, message: dict[str, Any]) -> StageTwoOutput:
        """Take one message without flushing contributions (call `flush` later): a watermark
        that moves the merged stream time still flushes first, so the detector evaluates what
        has arrived until then."""
        out = StageTwoOutput()
        self._take(message, out)
        return out

    def flush(self) -> StageTwoOutput:
        out = StageTwoOutput()
        self._flush(out)
        return out

    def process_batch(self, batch: Iterable[dict[str, Any]]) -> StageTwoOutput:
        """Apply messages in order; metric records are flushed once per changed bucket, and
        before each watermark that moves the merged stream time, so the detector evaluates
        what has arrived until then."""
        out = StageTwoOutput()
        for message in batch:
            self._take(message, out)
        self._flush(out)
        return out

    def _take(self, message: dict[str, Any], out: StageTwoOutput) -> None:
        """One message of the contributions topic: a batch of contributions, one contribution,
        or a watermark (which flushes first when it moves the merged stream time)."""
        kind = message["t"]
        if kind == messages.BATCH:
            self._apply(message["items"])
            if "w" in message:  # the source partition's watermark after the items
                self._advance(int(message["p"]), int(message["w"]), out)
        elif kind == messages.WATERMARK:
            self._advance(int(message["p"]), int(message["w"]), out)
        else:
            self._apply((message,))

    def _apply(self, items: Iterable[dict[str, Any]]) -> None:
        """Apply contributions in order. A batch holds each segment's items together
        (`messages.batch`), so a segment's totals are looked up once per run of its items, not
        once per item (about 0.8 items per event on the generator's mix, most of them journey
        ends)."""
        dim = value = seg = None
        totals: SegmentTotals | None = None
        marked = False
        for item in items:
            if item["d"] != dim or item["s"] != value or totals is None:
                dim, value = item["d"], item["s"]
                seg = messages.segment_key(dim, value)
                totals = self._totals(seg)
                marked = False
            kind = item["t"]
            if kind == messages.END:
                c = item["c"]
                # One string per journey id, whichever segment's message brought it: a journey
                # ends in six segments on the generator's mix, each message decoded apart, and
                # its ids are held for the journey idle time past final (380 -> 320 bytes per
                # live member, `python -m bench.bench_segment_members`; docs/streaming.md,
                # Known limits)
                changed = totals.set_end(sys.intern(item["j"]),
                                         None if c is None else (int(c[0]), bool(c[1])),
                                         keep_previous=bool(item.get("k")))
            elif kind == messages.ANSWER:
                # interned: an answer counts in every segment of its event, each message
                # decoded apart (as the journey ids above)
                changed = totals.add_answer(item["m"], int(item["b"]), sys.intern(item["e"]),
                                            item["v"])
            elif kind == messages.RETRACT:
                changed = totals.remove_answer(item["m"], int(item["b"]), item["e"])
            else:
                raise ValueError(f"unknown contribution kind {kind!r}")
            if changed and not marked:
                assert seg is not None
                self._unflushed.add(seg)
                self._dirty_segments.add(seg)
                marked = True

    def _flush(self, out: StageTwoOutput) -> None:
        for seg in sorted(self._unflushed):
            for record in self.totals[seg].flush():
                self.detector.apply_partial(record)
                out.metrics.append(record)
        self._unflushed.clear()

    def _advance(self, source: int, watermark_ms: int, out: StageTwoOutput) -> None:
        if watermark_ms <= self.watermarks.get(source, NEVER_MS):
            return
        self.watermarks[source] = watermark_ms
        merged = min(self.watermarks.values())
        if merged <= self.merged:
            return
        # Flushed only here, where the detector moves: a watermark that leaves the merged
        # stream time where it was changes nothing the detector evaluates, and a bucket's
        # version counts its changes, not its flushes, so the records that leave (the latest
        # of each bucket per flush of the outputs) are the same. Most watermarks do not move
        # it (the slowest of the stage-one partitions sets it).
        self._flush(out)
        self.merged = merged
        out.alerts.extend(self.detector.advance(merged))
        if self.sources is not None:
            if len(self.watermarks) < self.sources:
                return  # a partition not heard from yet may still send to any bucket
            merged = min(self.watermarks.values())
        horizon = merged - self.config.windows.allowed_lateness_ms - self.bucket_ms
        for seg, totals in self.totals.items():
            # only a segment that lost a bucket has keys to forget (`dirty_state`): at every
            # watermark, most lose none
            if totals.evict(horizon):
                self._dirty_segments.add(seg)
        if horizon > self.evicted_before:
            self.evicted_before = horizon
            self._evicted_dirty = True

    def dirty_state(self) -> list[tuple[str, Any]]:
        """(table key, state or None) changed since the last call: one key per bucket member
        that changed (see MEMBER_PREFIX), the eviction horizon when it moved (the member keys
        of the buckets evicted: `drain_forgotten`), and now and then the drop series that
        changed: each one's head and changed parts (HEAD_PREFIX)."""
        pairs: list[tuple[str, Any]] = [(key, None) for key in self._legacy_keys]
        self._legacy_keys.clear()
        evicted = self.evicted_before
        for seg in sorted(self._dirty_segments):
            totals = self.totals[seg]
            written = self._written.setdefault(seg, {})
            # members of buckets evicted since are left out (their keys go below), and of
            # buckets sealed since (written whole below, their member keys forgotten)
            for metric, start, member, state in totals.drain_member_snapshots(evicted):
                key = member_key(seg, metric, start, member)
                pairs.append((key, state))
                written.setdefault((metric, start), {})[member] = key
            sealed_written = self._sealed_written.setdefault(seg, {})
            for start in totals.drain_sealed():
                pairs.extend(self._sealed_pairs(seg, totals, start, written, sealed_written))
            for bucket in totals.drain_changed():
                if totals.bucket_meta(bucket) is None:  # evicted: its members forgotten
                    self._forget_members(written, bucket)
                    pieces = sealed_written.pop(bucket[1], None) if bucket[0] == "negative_end" \
                        else None
                    if pieces is not None:  # a sealed bucket at the end of its hold
                        self._forgotten.append(sealed_key(seg, bucket[1]))
                        self._forgotten.extend(sealed_ids_key(seg, bucket[1], i)
                                               for i in range(pieces))
            if not totals.versions and seg not in self._unflushed:
                # everything evicted: nothing left whose version must keep growing
                del self.totals[seg]
                self._written.pop(seg, None)
                self._sealed_written.pop(seg, None)
        self._dirty_segments.clear()
        if self._evicted_dirty:
            pairs.append((EVICTED_KEY, self.evicted_before))
            self._evicted_dirty = False
        # Series (7 days of merged buckets each) are written now and then, not per batch. That is
        # exact: `restore_keys` re-applies every bucket still held (all that could have changed
        # since), and re-evaluating boundaries from an older cursor re-emits the same alert
        # versions.
        now = self.clock()
        horizon = self.config.windows.allowed_lateness_ms // 2
        if now - self._series_saved_at >= self.series_every_s or (
            self.merged - self._series_saved_merged >= horizon
        ):
            # A series' head and its parts changed since the last save: one journal write
            # with the members, whole or absent after a crash, so a restore reads a head with
            # the parts written beside it (and a series read whole gets every part once).
            dirty = self.detector.drain_dirty() | self._whole_series
            for series in sorted(dirty):
                pairs.append((head_key(series), self.detector.snapshot_head(series)))
                pairs.extend((part_key(series, first), part) for first, part in
                             self.detector.drain_parts(series, series in self._whole_series))
            # the whole keys go after the parts that replace them (the table writes its
            # journal chunks before its other keys)
            pairs.extend((key, None) for key in self._whole_keys)
            self._whole_series.clear()
            self._whole_keys.clear()
            self._series_saved_at = now
            self._series_saved_merged = self.merged
        return pairs

    def _sealed_pairs(self, seg: str, totals: SegmentTotals, start: int,
                      written: dict[tuple[str, int], dict[str, str]],
                      sealed_written: dict[int, int]) -> list[tuple[str, Any]]:
        """The keys of negative_end bucket `start`, sealed or counting a late journey since the
        last write: when sealed just now, its members' keys are forgotten and its ids written
        in pieces; its counts every time."""
        state = totals.snapshot_key(("negative_end", start))
        assert state is not None and "s" in state  # drained: sealed and held
        counts = state["s"]
        pairs: list[tuple[str, Any]] = []
        if start not in sealed_written:
            self._forget_members(written, ("negative_end", start))
            ids = counts["ids"]  # sorted, the late ones apart
            pieces = [list(group) for group, _ in encoded_groups(ids, SEALED_PIECE_BYTES,
                                                                  orjson.dumps)] if ids else []
            pairs.extend((sealed_ids_key(seg, start, i), piece) for i, piece in enumerate(pieces))
            sealed_written[start] = len(pieces)
        pairs.append((sealed_key(seg, start), {
            "v": state["v"], "d": state["d"], "n": counts["n"], "x": counts["x"],
            "late": counts["late"], "p": sealed_written[start]}))
        return pairs

    def _forget_members(self, written: dict[tuple[str, int], dict[str, str]],
                        bucket: tuple[str, int]) -> None:
        """Forget the member keys written for `bucket` (metric, start): evicted, or sealed.
        The keys as kept when written (building them again cost as much as the write)."""
        gone = written.pop(bucket, {})
        self._forgotten.extend(gone[member] for member in sorted(gone))

    def drain_forgotten(self) -> list[str]:
        """The member keys of the buckets evicted since the last call (and of those a restore
        found evicted), for the table to forget without a removal each (EVICTED_KEY)."""
        forgotten, self._forgotten = self._forgotten, []
        return forgotten

"""Exact bucket totals of one segment from idempotent contributions (the stream's stage two).

In the stream, stage one (per input partition) turns each accepted event into *contributions*
and sends them, keyed by segment, to stage two, which owns whole segments:

- a survey answer: (metric, bucket, event_id) -> answer; set semantics, so an answer sent twice
  (redelivery after a crash) counts once;
- a journey's negative-end contribution: journey_id -> (bucket, negative) or None; a later state
  replaces the earlier one, so re-sending the current state is harmless.

Because every contribution is an idempotent upsert, stage two's totals are exact under
at-least-once delivery, and a bucket's totals equal the sum of `SurveyBuckets` partials over all
source partitions (what `ExperienceEngine` and `peakend replay` compute).

>>> totals = SegmentTotals("channel", "phone", bucket_ms=60_000)
>>> totals.add_answer("nps", 0, "e1", 10)
True
>>> totals.add_answer("nps", 0, "e1", 10)  # the same answer again: no change
False
>>> totals.set_end("j1", (0, True))
True
>>> [(r.metric, r.n, r.version) for r in totals.flush()]
[('negative_end', 1, 1), ('nps', 1, 1)]
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from heapq import heappop, heappush
from typing import Any, Final

from pipeline.core.buckets import Partial, to_record
from pipeline.core.records import MetricRecord
from pipeline.core.surveys import (
    ANSWER_WINDOWS,
    WINDOW_TYPES,
    AnswerWindow,
    NegativeEndWindow,
    SurveyWindow,
)

Answer = int | float
EndContribution = tuple[int, bool]  # bucket_start, end valence < 0



COPY_SEPARATOR: Final = "\x1f"


def answer_key(event_id: str, journey_key: str) -> str:
    """The key of one copy's survey answer in a segment: copies of one event_id under two
    journey keys both count until the claims stage withdraws one (pipeline/stream/claims.py),
    and the withdrawal must take out that copy's answer, not the other's.

    >>> answer_key("e1", "j-1")
    'e1\\x1fj-1'
    """
    return f"{event_id}{COPY_SEPARATOR}{journey_key}"


def forget_start(metric: str, bucket_start: int, end_hold_ms: int) -> int:
    """The bucket start under which a bucket is evicted: its own, and `end_hold_ms` later for
    negative_end, into which a journey with a producer id closes days late
    (`WindowConfig.end_hold_ms`). A bucket goes at horizon `before_ms` once this start plus
    the bucket width is at or before it.

    >>> forget_start("negative_end", 0, 600_000), forget_start("nps", 0, 600_000)
    (600000, 0)
    """
    return bucket_start + end_hold_ms if metric == "negative_end" else bucket_start


class SealedEnds:
    """A final negative_end bucket held past final (`SegmentTotals.end_hold_ms`) as its counts
    and the ids of the journeys it counts, not as members with their flags and index entries:
    a journey closing late adds to it once (a restarted stage one may send a journey again),
    and nothing takes a journey out of a final bucket. `ids`: the journeys counted when it was
    sealed, a sorted tuple (8 bytes per id beside the shared string, a set several times that:
    `python -m bench.bench_segment_members`); `late`: those counted since, with their flags
    (written with it; None until one comes: most buckets of a segment hold a few journeys,
    and a week of them is held, so what a bucket costs counts as much as what an id costs).

    >>> sealed = SealedEnds(("j2", "j1"), 2, 1)
    >>> sealed.add("j1", True), sealed.add("j3", True), (sealed.n, sealed.negatives)
    (False, True, (3, 2))
    """

    __slots__ = ("ids", "late", "n", "negatives")

    def __init__(self, ids: Iterable[str], n: int, negatives: int,
                 late: dict[str, bool] | None = None) -> None:
        self.ids: tuple[str, ...] = tuple(sorted(ids))
        self.n = n
        self.negatives = negatives
        self.late: dict[str, bool] | None = late or None

    def counts(self, journey_id: str) -> bool:
        """Whether the journey is counted here."""
        if self.late is not None and journey_id in self.late:
            return True
        ids = self.ids
        i = bisect_left(ids, journey_id)
        return i < len(ids) and ids[i] == journey_id

    def add(self, journey_id: str, negative: bool) -> bool:
        """Count a journey that closes into this bucket; False when it is counted already."""
        if self.counts(journey_id):
            return False
        if self.late is None:
            self.late = {}
        self.late[journey_id] = negative
        self.n += 1
        self.negatives += negative
        return True

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "x": self.negatives, "ids": list(self.ids),
                "late": dict(sorted((self.late or {}).items()))}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SealedEnds:
        late = {str(j): bool(neg) for j, neg in state.get("late", {}).items()}
        return cls((str(j) for j in state["ids"] if j not in late), int(state["n"]),
                   int(state["x"]), late)


class SegmentTotals:
    """All buckets of one segment (segment_dim = segment_value), built from contributions.

    State is kept per bucket, so a flush folds one bucket's contributions only and the stream
    can persist just the buckets that changed (`drain_changed`, then `snapshot_key` /
    `restore_key` per (metric, bucket_start): the state contract, `pipeline.core.protocol`).
    """

    __slots__ = ("_changed", "_changed_members", "_dirty", "_due", "_negatives", "_sealed",
                 "_sealed_changed", "_to_seal", "_windows", "answers", "bucket_ms", "dim",
                 "end_buckets", "end_hold_ms", "ends", "value", "versions")

    def __init__(self, dim: str, value: str, bucket_ms: int, *, end_hold_ms: int = 0,
                 resume: dict[str, Any] | None = None) -> None:
        """`end_hold_ms`: how much longer than the others a negative_end bucket is held once
        final (`WindowConfig.end_hold_ms`; 0: as long). `resume`: a `snapshot()` of this
        segment to continue from."""
        self.dim = dim
        self.value = value
        self.bucket_ms = bucket_ms
        self.end_hold_ms = end_hold_ms
        # metric -> bucket_start -> event_id -> answer (CES already on the 1-7 scale)
        self.answers: dict[str, dict[int, dict[str, Answer]]] = {}
        # bucket_start -> journey_id -> negative, and its index journey_id -> (bucket, negative)
        self.end_buckets: dict[int, dict[str, bool]] = {}
        self.ends: dict[str, EndContribution] = {}
        # Each bucket's window kept folded as its members come and go (update / revert), so a
        # flush reads it instead of folding the whole bucket again: in a live stream the current
        # minute bucket of a segment grows all minute and is flushed at every batch, so folding it
        # then cost O(answers held) per flush (25-30 us per answer of segment `all` at a flush
        # every 0.1 s, docs/streaming.md). Exact: counts are ints, and CES answers are multiples
        # of 0.5 on the 1-7 scale (`valence.ces_on_7`), their sums and squares exact in a float,
        # so any order of updates and reverts gives the numbers a fold from scratch gives.
        self._windows: dict[tuple[str, int], AnswerWindow] = {}
        self._negatives: dict[int, int] = {}  # bucket_start -> negative members of end_buckets
        # Negative_end buckets past final, held `end_hold_ms` for journeys that close late, as
        # their counts and journey ids (`SealedEnds`): a week of members with their flags,
        # index entries and state keys cost about 330 bytes each (docs/streaming.md, Known
        # limits).
        # `_to_seal`: the starts of `end_buckets`, a min-heap (entries of buckets gone since are
        # skipped); `_sealed_changed`: sealed or counted a late journey since the last
        # `drain_sealed` (the stream writes a sealed bucket whole).
        self._sealed: dict[int, SealedEnds] = {}
        self._to_seal: list[int] = []
        self._sealed_changed: set[int] = set()
        # "metric@bucket_start" -> updates applied; grows only, so sinks can upsert on it
        self.versions: dict[str, int] = {}
        # (the start it is forgotten at: `forget_start`, metric, bucket_start) of every bucket in
        # `versions`, a min-heap (it may also hold buckets gone since, skipped when they come
        # up): `evict` runs at every watermark of every segment and pops only the buckets that
        # ended. Scanning every bucket held instead was 38% of the stream's segment stage on a
        # first day of events, and once a day of
        # buckets was held (a minute of event time ending a bucket at nearly every watermark) it
        # scanned them all each time: the stage's CPU per event 12 -> 24 us from the first day
        # to the third (docs/streaming.md, eighteenth round).
        self._due: list[tuple[int, str, int]] = []
        self._dirty: set[tuple[str, int]] = set()  # changed since the last flush
        self._changed: set[tuple[str, int]] = set()  # changed since the last drain_changed
        # (metric, bucket_start, member) whose value changed since the last drain_changed:
        # the stream persists a bucket member by member (pipeline/stream/segments.py), so a
        # bucket of tens of thousands of journeys is never written whole
        self._changed_members: set[tuple[str, int, str]] = set()
        if resume is not None:
            if (resume["dim"], resume["value"]) != (dim, value):
                raise ValueError(f"the snapshot of segment {resume['dim']}={resume['value']}"
                                 f" cannot resume segment {dim}={value}")
            for metric, start, bucket in resume["buckets"]:
                self.restore_key((str(metric), int(start)), bucket)
            self._changed = {(str(m), int(s)) for m, s in resume.get("changed", ())}

    def add_answer(self, metric: str, bucket_start: int, event_id: str, answer: Answer) -> bool:
        """Count one survey answer; False when this event's answer is already counted.
        `event_id`: the copy's `answer_key` (an answer counted under its bare event_id, by a
        worker from before the claims stage, is the same answer)."""
        bucket = self.answers.setdefault(metric, {}).setdefault(bucket_start, {})
        if event_id in bucket or event_id.partition(COPY_SEPARATOR)[0] in bucket:
            return False
        bucket[event_id] = answer
        key = (metric, bucket_start)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = ANSWER_WINDOWS[metric]()
        window.update(answer)  # type: ignore[arg-type]
        self._touch(metric, bucket_start)
        self._changed_members.add((metric, bucket_start, event_id))
        return True

    def remove_answer(self, metric: str, bucket_start: int, event_id: str) -> bool:
        """Take one event's answer back out (a copy with other content replaced it); False when
        it is not counted (the bucket is final and gone, or it never arrived)."""
        bucket = self.answers.get(metric, {}).get(bucket_start)
        if bucket is not None and event_id not in bucket:
            event_id = event_id.partition(COPY_SEPARATOR)[0]  # counted before the claims stage
        if bucket is None or event_id not in bucket:
            return False
        self._windows[(metric, bucket_start)].revert(bucket.pop(event_id))  # type: ignore[arg-type]
        self._touch(metric, bucket_start)
        self._changed_members.add((metric, bucket_start, event_id))
        return True

    def set_end(self, journey_id: str, contribution: EndContribution | None,
                keep_previous: bool = False) -> bool:
        """Set a journey's negative-end contribution (None: it counts nowhere, e.g. reopened).

        `keep_previous`: the previous bucket stays as it is, the journey counted there. Stage one
        says so when that bucket was final by its own partition's stream time when the journey
        moved: the rule `SurveyBuckets.apply_end` applies, which depends on the events of one
        partition only, not on when this stage (merging every partition) made the bucket final.
        """
        old = self.ends.get(journey_id)
        if contribution is not None:
            contribution = (int(contribution[0]), bool(contribution[1]))
        if old == contribution:
            return False
        sealed = None if contribution is None else self._sealed.get(contribution[0])
        if sealed is not None and old is None and sealed.counts(journey_id):
            return False  # counted there already (sent again by a restarted stage one)
        if old is not None and keep_previous:
            # the old bucket keeps its member, no longer the journey's contribution: written
            # again as such (`is_kept`), so a restore does not take it for the current one
            del self.ends[journey_id]
            self._changed_members.add(("negative_end", old[0], journey_id))
        elif old is not None:
            members = self.end_buckets[old[0]]
            if members.pop(journey_id):
                self._negatives[old[0]] -= 1
            if not members:
                del self.end_buckets[old[0]]
                del self._negatives[old[0]]
            del self.ends[journey_id]
            self._touch("negative_end", old[0])
            self._changed_members.add(("negative_end", old[0], journey_id))
        if sealed is not None and contribution is not None:
            # a journey that closes into a final bucket: counted once, not indexed (nothing
            # takes a journey out of a final bucket)
            start, negative = contribution
            if sealed.add(journey_id, negative):
                self._touch("negative_end", start)
                self._sealed_changed.add(start)
        elif contribution is not None:
            start, negative = contribution
            held = self.end_buckets.get(start)
            if held is None:
                held = self.end_buckets[start] = {}
                self._negatives[start] = 0
                heappush(self._to_seal, start)
            # a member a journey left in place (keep_previous) may be there already
            self._negatives[start] += int(negative) - int(held.get(journey_id, False))
            held[journey_id] = negative
            self.ends[journey_id] = contribution
            self._touch("negative_end", contribution[0])
            self._changed_members.add(("negative_end", contribution[0], journey_id))
        return True

    def _touch(self, metric: str, bucket_start: int) -> None:
        slot = f"{metric}@{bucket_start}"
        version = self.versions.get(slot)
        if version is None:
            self.versions[slot] = 1
            self._schedule(metric, bucket_start)
        else:
            self.versions[slot] = version + 1
        self._dirty.add((metric, bucket_start))
        self._changed.add((metric, bucket_start))

    def window(self, metric: str, bucket_start: int) -> SurveyWindow:
        """The accumulator of one bucket (a copy: the one kept is updated in place)."""
        window = self._window(metric, bucket_start)
        return window.merge(type(window)())  # type: ignore[arg-type]

    def _window(self, metric: str, bucket_start: int) -> SurveyWindow:
        if metric == "negative_end":
            members = self.end_buckets.get(bucket_start)
            if members is None:
                sealed = self._sealed.get(bucket_start)
                if sealed is not None:
                    return NegativeEndWindow(sealed.n, sealed.negatives)
                return NegativeEndWindow()
            return NegativeEndWindow(len(members), self._negatives[bucket_start])
        window = self._windows.get((metric, bucket_start))
        return WINDOW_TYPES[metric]() if window is None else window

    def flush(self) -> list[MetricRecord]:
        """Records of the buckets changed since the last flush (source_partition 0: this stage
        owns the whole segment), in a deterministic order."""
        out = [self.record(metric, start) for metric, start in sorted(self._dirty)]
        self._dirty.clear()
        return out

    def record(self, metric: str, bucket_start: int) -> MetricRecord:
        """The record of one bucket as it stands (source_partition 0)."""
        partial = Partial(self._window(metric, bucket_start),
                          (metric, self.dim, self.value, bucket_start),
                          self.versions[f"{metric}@{bucket_start}"])
        return to_record(partial, self.bucket_ms, 0)

    def forget_start(self, metric: str, bucket_start: int) -> int:
        """The bucket start under which a bucket is evicted (`forget_start`, module level)."""
        return forget_start(metric, bucket_start, self.end_hold_ms)

    def _schedule(self, metric: str, bucket_start: int) -> None:
        """Put a bucket new to `versions` in the eviction heap (`_due`)."""
        heappush(self._due, (self.forget_start(metric, bucket_start), metric, bucket_start))

    def evict(self, before_ms: int) -> bool:
        """Forget flushed buckets that end at or before `before_ms` (final: no acceptable event
        can reach them), emptied ones included, negative_end ones `end_hold_ms` later. Their
        versions go too; the records already emitted stay authoritative. Final negative_end
        buckets are sealed first (`_seal_final`). True when a bucket went (in `drain_changed`
        then) or was sealed (in `drain_sealed`)."""
        width = self.bucket_ms
        sealed = self._seal_final(before_ms)
        due = self._due
        unflushed: list[tuple[int, str, int]] = []
        evicted = False
        while due and due[0][0] + width <= before_ms:
            entry = heappop(due)
            _, metric, start = entry
            slot = f"{metric}@{start}"
            if slot not in self.versions:
                continue  # gone since it was pushed (a restore replaced it, or evicted twice)
            if (metric, start) in self._dirty:
                unflushed.append(entry)  # evicted once flushed, at a later call
                continue
            del self.versions[slot]
            self._changed.add((metric, start))
            evicted = True
            self._forget_contents(metric, start)
        for entry in unflushed:
            heappush(due, entry)
        return evicted or sealed

    def _seal_final(self, before_ms: int) -> bool:
        """Seal the flushed negative_end buckets that end at or before `before_ms` (final):
        their counts and journey ids stay for the hold, their members and index entries go.
        True when one was sealed."""
        width = self.bucket_ms
        to_seal = self._to_seal
        unflushed: list[int] = []
        sealed = False
        while to_seal and to_seal[0] + width <= before_ms:
            start = heappop(to_seal)
            members = self.end_buckets.get(start)
            if members is None:
                continue  # emptied, evicted or sealed since it was pushed
            if ("negative_end", start) in self._dirty:
                unflushed.append(start)  # sealed once flushed, at a later call
                continue
            negatives = self._take_members(start)
            self._sealed[start] = SealedEnds(members, len(members), negatives)
            self._sealed_changed.add(start)
            sealed = True
        for start in unflushed:
            heappush(to_seal, start)
        return sealed

    def is_sealed(self, bucket_start: int) -> bool:
        """Whether negative_end bucket `bucket_start` is held sealed (`SealedEnds`)."""
        return bucket_start in self._sealed

    def drain_sealed(self) -> list[int]:
        """Starts of the negative_end buckets sealed, or counting a journey more, since the
        last call (the stream writes each whole, `snapshot_key`; its members' keys go)."""
        out = sorted(s for s in self._sealed_changed if s in self._sealed)
        self._sealed_changed.clear()
        return out

    def records(self) -> list[MetricRecord]:
        """Records of every bucket held, as last flushed (for re-feeding a detector)."""
        keys = sorted(
            {(m, s) for m, b in self.answers.items() for s in b}
            | {("negative_end", s) for s in self.end_buckets}
            | {("negative_end", s) for s in self._sealed}
        )
        return [self.record(m, s) for m, s in keys]

    def pending(self) -> bool:
        """True when some bucket changed since the last flush (also after a restore)."""
        return bool(self._dirty)

    def is_empty(self) -> bool:
        return not self.ends and not any(self.answers.values()) and not self._sealed

    # -- persistence ----------------------------------------------------------------------------

    def drain_changed(self) -> list[tuple[str, int]]:
        """(metric, bucket_start) whose state changed since the last call, sorted."""
        out = sorted(self._changed)
        self._changed.clear()
        return out

    def drain_changed_members(self) -> list[tuple[str, int, str]]:
        """(metric, bucket_start, member) whose value (`member`) changed since the last call,
        sorted; a bucket evicted or replaced whole is in `drain_changed` only."""
        out = sorted(self._changed_members)
        self._changed_members.clear()
        return out

    def drain_member_snapshots(self, horizon_ms: int
                               ) -> list[tuple[str, int, str, dict[str, Any]]]:
        """`drain_changed_members` with each member's state, in the same order:
        (metric, bucket_start, member, {"v": the bucket's version, "d": changed since the last
        flush, "a": the member's value (absent: it left the bucket), "k": 1 for a journey kept
        in a bucket it left (`is_kept`), "h": `horizon_ms` when the bucket is past it (made
        again after the eviction horizon, `horizon_ms`, passed it)}). Left out: members of
        buckets evicted since (not held) and of negative_end buckets sealed since (a sealed
        bucket is kept whole, `snapshot_key`).

        Why here: the stream persists a bucket member by member, about 1.6 members per event
        at day 3 of the generator's mix; asking for each one's version, value, kept flag and
        horizon call by call was a third of the segment stage's state step (docs/streaming.md,
        thirty-fifth round)."""
        out: list[tuple[str, int, str, dict[str, Any]]] = []
        width = self.bucket_ms
        for metric, bucket_start, member in self.drain_changed_members():
            version = self.versions.get(f"{metric}@{bucket_start}")
            if version is None:
                continue
            key = (metric, bucket_start)
            state: dict[str, Any] = {"v": version, "d": key in self._dirty}
            if metric == "negative_end":
                if bucket_start in self._sealed:
                    continue
                negative = self.end_buckets.get(bucket_start, {}).get(member)
                if negative is not None:
                    state["a"] = negative
                    if self.is_kept(bucket_start, member):
                        state["k"] = 1
            else:
                answer = self.answers.get(metric, {}).get(bucket_start, {}).get(member)
                if answer is not None:
                    state["a"] = answer
            if forget_start(metric, bucket_start, self.end_hold_ms) + width <= horizon_ms:
                state["h"] = horizon_ms
            out.append((metric, bucket_start, member, state))
        return out

    def mark_members_changed(self, key: tuple[str, int]) -> None:
        """Count every member of bucket `key` as changed (and the bucket): the next drain
        writes them all, e.g. to move a bucket restored from a whole-bucket snapshot to the
        stream's member-by-member layout."""
        metric, bucket_start = key
        held = (self.end_buckets.get(bucket_start, {}) if metric == "negative_end"
                else self.answers.get(metric, {}).get(bucket_start, {}))
        self._changed_members.update((metric, bucket_start, m) for m in held)
        self._changed.add(key)

    def bucket_meta(self, key: tuple[str, int]) -> tuple[int, bool] | None:
        """(version, changed since the last flush) of bucket (metric, bucket_start); None when
        it is not held (evicted, or never counted)."""
        metric, bucket_start = key
        version = self.versions.get(f"{metric}@{bucket_start}")
        if version is None:
            return None
        return version, key in self._dirty

    def member(self, key: tuple[str, int], member: str) -> Answer | bool | None:
        """The value one member holds in bucket (metric, bucket_start): a survey answer (by its
        `answer_key`) or a journey's negative flag (by journey id); None when absent."""
        metric, bucket_start = key
        if metric == "negative_end":
            sealed = self._sealed.get(bucket_start)
            if sealed is not None:
                return None if sealed.late is None else sealed.late.get(member)
            return self.end_buckets.get(bucket_start, {}).get(member)
        return self.answers.get(metric, {}).get(bucket_start, {}).get(member)

    def is_kept(self, bucket_start: int, journey_id: str) -> bool:
        """Is the journey a member of negative_end bucket `bucket_start` that it has left (the
        bucket was final when it moved: `set_end(keep_previous=True)`)? Its contribution
        (`ends`) is elsewhere or nowhere, and moving on again must not take it out of here."""
        members = self.end_buckets.get(bucket_start)
        if members is None or journey_id not in members:
            return False
        held = self.ends.get(journey_id)
        return held is None or held[0] != bucket_start

    def snapshot_key(self, key: tuple[str, int]) -> dict[str, Any] | None:
        """JSON-able state of one bucket (metric, bucket_start), or None when it holds nothing
        (evicted or emptied). A negative_end bucket lists its kept members (`is_kept`) in "k"."""
        metric, bucket_start = key
        version = self.versions.get(f"{metric}@{bucket_start}")
        if version is None:
            return None
        state: dict[str, Any] = {"v": version, "d": (metric, bucket_start) in self._dirty}
        sealed = self._sealed.get(bucket_start) if metric == "negative_end" else None
        if sealed is not None:
            state["s"] = sealed.state()
        elif metric == "negative_end":
            held = self.end_buckets.get(bucket_start, {})
            state["m"] = dict(held)
            kept = sorted(j for j in held if self.is_kept(bucket_start, j))
            if kept:
                state["k"] = kept
        else:
            state["m"] = dict(self.answers.get(metric, {}).get(bucket_start, {}))
        return state

    def restore_key(self, key: tuple[str, int], state: dict[str, Any] | None) -> None:
        """Replace one bucket (metric, bucket_start) by `state` (from `snapshot_key`; None
        removes it)."""
        metric, bucket_start = key
        self._drop_bucket(metric, bucket_start)
        if state is None:
            return
        self.versions[f"{metric}@{bucket_start}"] = int(state["v"])
        self._schedule(metric, bucket_start)
        if "s" in state:
            self._sealed[bucket_start] = SealedEnds.from_state(state["s"])
        elif metric == "negative_end":
            members = {j: bool(n) for j, n in state["m"].items()}
            if members:
                self.end_buckets[bucket_start] = members
                self._negatives[bucket_start] = sum(members.values())
                heappush(self._to_seal, bucket_start)
            # A kept member's contribution is elsewhere: taking it for the journey's current
            # one, the journey's next move took it out of this bucket, which the engine keeps
            # (negative_end n 1 where replay counted 2 after worker kills, docs/reliability.md).
            kept = set(state.get("k", ()))
            for journey_id, negative in members.items():
                if journey_id not in kept:
                    self.ends[journey_id] = (bucket_start, negative)
        else:
            answers = self.answers.setdefault(metric, {})[bucket_start] = dict(state["m"])
            window = self._windows[(metric, bucket_start)] = ANSWER_WINDOWS[metric]()
            for answer in answers.values():
                window.update(answer)
        if state.get("d"):
            self._dirty.add((metric, bucket_start))

    def _drop_bucket(self, metric: str, bucket_start: int) -> None:
        self.versions.pop(f"{metric}@{bucket_start}", None)
        self._dirty.discard((metric, bucket_start))
        self._forget_contents(metric, bucket_start)

    def _forget_contents(self, metric: str, bucket_start: int) -> None:
        """Forget what bucket (metric, bucket_start) holds, sealed or not (its version and
        flags are the caller's)."""
        if metric == "negative_end":
            self._sealed.pop(bucket_start, None)
            self._sealed_changed.discard(bucket_start)
            self._take_members(bucket_start)
        else:
            self.answers.get(metric, {}).pop(bucket_start, None)
            self._windows.pop((metric, bucket_start), None)

    def _take_members(self, bucket_start: int) -> int:
        """Take negative_end bucket `bucket_start`'s members out, and out of the journey index
        where it is their current contribution (not where they moved on and are kept there);
        returns how many were negative."""
        for journey_id in self.end_buckets.pop(bucket_start, {}):
            held = self.ends.get(journey_id)
            if held is not None and held[0] == bucket_start:
                del self.ends[journey_id]
        return self._negatives.pop(bucket_start, 0)

    def snapshot(self) -> dict[str, Any]:
        """The whole segment: every bucket's `snapshot_key`, and the buckets changed since
        the last `drain_changed`."""
        buckets = sorted(
            {(m, s) for m, b in self.answers.items() for s in b}
            | {("negative_end", s) for s in self.end_buckets}
            | {("negative_end", s) for s in self._sealed}
            | {(m, int(s)) for m, _, s in (k.partition("@") for k in self.versions)}
        )
        return {
            "dim": self.dim,
            "value": self.value,
            "buckets": [[m, s, self.snapshot_key((m, s))] for m, s in buckets],
            "changed": [[m, s] for m, s in sorted(self._changed)],
        }

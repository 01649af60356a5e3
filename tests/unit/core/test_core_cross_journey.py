"""One event_id, one journey (issue 13, item 4): copies of an event_id under two journey keys.

Of all copies of an event_id the one with the smallest content digest is applied, whatever the
order and whichever journey key each copy names; the others are withdrawn from the journey that
applied them (`JourneyTracker.withdraw`) and one of them is a `conflict` dead letter. A
withdrawal that comes late (the stream's claims stage judges a copy after its journey stage
applied it) ends in the same journey records as one that comes at once (replay)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from scenarios import MIN, T0, event

from pipeline.cli import main
from pipeline.contract import event_to_json
from pipeline.core.claims import EventClaims, claims_horizon
from pipeline.core.config import CoreConfig, JourneyConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import Survey, TouchpointEvent, content_digest
from pipeline.core.journeys import CONFLICT, DUPLICATE, LATE, REPLACED, JourneyTracker
from pipeline.core.partitioner import partition_for
from pipeline.core.records import JourneyRecord
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()


def copies(first: str | None, second: str | None, nps: tuple[int, int] = (10, 0)
           ) -> tuple[TouchpointEvent, TouchpointEvent]:
    """Two copies of event `x`, one under each journey key (None: keyed by the customer),
    returned as (the copy that wins, the copy that loses)."""
    one = event("x", T0, journey=first, type="survey", survey=Survey(nps=nps[0]))
    two = event("x", T0 + MIN, journey=second, type="survey", survey=Survey(nps=nps[1]))
    return (one, two) if content_digest(one) < content_digest(two) else (two, one)


def run(events: list[TouchpointEvent], partitions: int = 4
        ) -> tuple[dict[str, JourneyRecord], dict[int, tuple[int, float]], list[str | None]]:
    """Journeys (latest version each), NPS (n, value) of segment all per bucket, verdicts."""
    engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
    journeys: dict[str, JourneyRecord] = {}
    nps: dict[int, tuple[int, float]] = {}
    verdicts: list[str | None] = []

    def keep(records: list[JourneyRecord], metrics: list) -> None:  # type: ignore[type-arg]
        for r in records:
            if r.journey_id not in journeys or r.version > journeys[r.journey_id].version:
                journeys[r.journey_id] = r
        for m in metrics:
            if m.metric == "nps" and m.segment_dim == "all":
                nps[m.window_start] = (m.n, m.value)

    for e in events:
        emitted, reason = engine.process(e, partition_for(e.journey_key, partitions))
        verdicts.append(reason)
        keep(emitted.journeys, emitted.metrics)
    done = engine.finish()
    keep(done.journeys, done.metrics)
    return journeys, {k: v for k, v in nps.items() if v[0] > 0}, verdicts


def test_the_smaller_digest_wins_across_journey_keys_in_either_order() -> None:
    for keys in (("j-a", "j-b"), ("j-a", None), (None, "j-b")):
        win, lose = copies(*keys)
        results = []
        for order, verdict in (((win, lose), CONFLICT), ((lose, win), REPLACED)):
            journeys, nps, verdicts = run(list(order))
            assert verdicts == [None, verdict], keys
            live = {j: r for j, r in journeys.items() if r.status != "superseded"}
            assert [r.events for r in live.values()] == [1], keys
            [kept] = live.values()
            assert kept.journey_id.split("@")[0] == win.journey_key
            # the losing copy's journey had no other event: it is left superseded
            assert {r.status for j, r in journeys.items() if j not in live} == {"superseded"}
            results.append((live, nps))
        assert results[0] == results[1], keys  # the same journey and answers whatever the order
        [(_, (n, value))] = results[0][1].items()
        assert (n, value) == (1, 100.0 if win.survey and win.survey.nps == 10 else -100.0)


def test_copies_further_apart_than_the_lateness_are_two_events_under_two_keys() -> None:
    """A copy sent again more than the lateness (and a bucket) after the first: under another
    journey key it is an event of its own, in either order and whatever the digests, as when
    the first copy's claim has been forgotten (a live stream's case: every partition's stream
    time has passed it by then). The stream could not withdraw either copy in time in a
    backlog (docs/streaming.md, thirty-third and fortieth rounds). Under one key the journey
    holds one copy of an id: the older stays, the newer is a `conflict` (thirty-fourth round).
    Within that reach the digest decides (the test above)."""
    config = CoreConfig()
    reach = config.windows.allowed_lateness_ms + config.windows.bucket_ms
    for keys in (("j-a", "j-b"), ("j-a", None), (None, "j-b"), ("j-a", "j-a"), (None, None)):
        same_key = keys[0] == keys[1]
        for apart, far in ((reach + 1, True), (reach, False)):
            one = event("x", T0, journey=keys[0], type="survey", survey=Survey(nps=10))
            two = event("x", T0 + apart, journey=keys[1], type="survey", survey=Survey(nps=0))
            smaller = one if content_digest(one) < content_digest(two) else two
            for order in ((one, two), (two, one)):
                journeys, nps, verdicts = run(list(order))
                live = {j: r for j, r in journeys.items() if r.status != "superseded"}
                # the older copy second is `late` where its partition's stream time has
                # passed it by the lateness: then it is never applied, and never claims
                if verdicts[1] == LATE:
                    kept_copies = [two]
                elif far:
                    kept_copies = [one] if same_key else [one, two]
                else:
                    kept_copies = [smaller]
                assert sorted(r.events for r in live.values()) == [1] * len(kept_copies), \
                    (keys, apart, order)
                assert sorted(r.journey_id.split("@")[0] for r in live.values()) == sorted(
                    c.journey_key for c in kept_copies), (keys, apart, order)
                # each kept copy's answer, in its own bucket
                assert sum(n for n, _ in nps.values()) == len(kept_copies)
                for copy in kept_copies:
                    at = copy.occurred_ms - copy.occurred_ms % config.windows.bucket_ms
                    assert copy.survey is not None
                    assert nps[at] == (1, 100 if copy.survey.nps == 10 else -100), (keys, apart)
                if len(kept_copies) == 1 and verdicts[1] != LATE:
                    assert verdicts[1] in (CONFLICT, REPLACED), (keys, apart, order)
                elif verdicts[1] != LATE:
                    assert verdicts[1] is None, (keys, apart, order)  # applied: no letter


def test_a_claim_written_before_the_kept_copys_time_was_held_restores() -> None:
    claims = EventClaims(reach_ms=100)
    claims.restore_key("x", [700, "j-a", 0, 1_000])  # [digest, key, partition, at_ms]: older
    assert claims.snapshot_key("x") == [700, "j-a", 0, 1_000, 1_000]
    assert claims.claim("x", 500, "j-b", 1, 1_099) is not None  # within the reach
    assert claims.snapshot_key("x") == [500, "j-b", 1, 1_099, 1_099]


def test_a_copy_beyond_the_reach_of_the_held_one_is_held_from_then_on() -> None:
    """Beyond the reach both copies stand, and the newer is the one later copies are judged
    against (they are nearer to it); an older one beyond the reach changes nothing held but
    the time the claim is remembered until."""
    claims = EventClaims(reach_ms=100)
    assert claims.claim("x", 700, "j-a", 0, 1_000) is None
    assert claims.claim("x", 900, "j-b", 1, 1_101) is None and claims.changed
    assert claims.snapshot_key("x") == [900, "j-b", 1, 1_101, 1_101]
    withdrawal = claims.claim("x", 800, "j-c", 2, 1_150)  # near the newer: digests
    assert withdrawal is not None and withdrawal.key == "j-b" and not withdrawal.loser_is_new
    assert claims.claim("x", 100, "j-d", 3, 1_000) is None  # beyond the held one, older
    assert claims.snapshot_key("x") == [800, "j-c", 2, 1_150, 1_150]
    assert claims.claim("x", 100, "j-d", 3, 1_000) is None and not claims.changed


def test_a_late_withdrawal_gives_the_journey_a_withdrawal_at_once_gives() -> None:
    """The stream withdraws a losing copy when its claim is judged, maybe after more events of
    the journey: the records (versions included) equal replay's, which withdraws at once."""
    for journey in ("j-b", None):
        loser = event("x", T0, journey=journey, valence=-0.9)
        later = [event(f"e{i}", T0 + i * MIN, journey=journey, valence=0.2) for i in (1, 2)]
        digest = content_digest(loser)
        records: list[dict[str, JourneyRecord]] = []
        for withdraw_after in (0, 1, 2):
            tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
            out: dict[str, JourneyRecord] = {}
            sequence: list[TouchpointEvent | None] = [loser, *later]
            sequence.insert(1 + withdraw_after, None)  # None: the withdrawal
            watermark = T0
            for item in sequence:
                if item is None:
                    got, held = tracker.withdraw(loser.journey_key, "x", digest, watermark)
                    assert held
                else:
                    watermark = max(watermark, item.occurred_ms)
                    got, reason = tracker.apply(item, watermark)
                    assert reason is None
                for r in got:
                    if r.journey_id not in out or r.version > out[r.journey_id].version:
                        out[r.journey_id] = r
            live = {k: v for k, v in out.items() if v.status != "superseded"}
            records.append(live)
            [j] = live.values()
            assert j.events == 2 and j.worst_valence == 0.2  # the withdrawn moment is gone
        assert records[0] == records[1] == records[2], journey


def test_a_withdrawal_before_or_after_a_replacement_in_its_journey_gives_one_version() -> None:
    """A copy of another event of the journey replaced by one with a smaller digest (under the
    same key) between the losing copy and its withdrawal: the stream withdraws after the
    replacement, replay before it, and the journey's last record, version included, is the
    same. The replacement counts in the version as a withdrawal does (`Journey.removed`); a
    version grown by one there ended a version apart (docs/streaming.md, fortieth round)."""
    for journey in ("j-b", None):
        loser = event("x", T0, journey=journey, valence=-0.9)
        copies_of_y = sorted((event("y", T0 + minutes * MIN, journey=journey, valence=0.2)
                              for minutes in (5, 9)), key=content_digest, reverse=True)
        held, replacing = copies_of_y  # the second has the smaller digest: it replaces
        digest = content_digest(loser)
        lasts: list[JourneyRecord] = []
        for withdraw_after in (0, 1, 2):
            tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
            sequence: list[TouchpointEvent | None] = [loser, held, replacing]
            sequence.insert(1 + withdraw_after, None)  # None: the withdrawal
            watermark = T0
            out: dict[str, JourneyRecord] = {}
            for item in sequence:
                if item is None:
                    got, _ = tracker.withdraw(loser.journey_key, "x", digest, watermark)
                else:
                    watermark = max(watermark, item.occurred_ms)
                    got, reason = tracker.apply(item, watermark)
                    assert reason == (REPLACED if item is replacing else None)
                for r in got:
                    if r.journey_id not in out or r.version > out[r.journey_id].version:
                        out[r.journey_id] = r
            [last] = [r for r in out.values() if r.status != "superseded"]
            assert last.events == 1 and last.end_event_id == "y"
            assert last.ended_at == replacing.occurred_ms  # the replacing copy
            lasts.append(last)
        assert lasts[0] == lasts[1] == lasts[2], (journey, [r.version for r in lasts])


def test_withdrawal_retracts_answers_and_negative_ends_from_the_loser_partition() -> None:
    win, lose = copies("j-a", "j-b", nps=(0, 1))
    closing = replace(lose, event_id="end", type="journey_end", survey=None,
                      occurred_at=lose.occurred_at, occurred_ms=lose.occurred_ms + 1)
    journeys, nps, verdicts = run([lose, closing, win])
    assert verdicts == [None, None, REPLACED]
    loser_journey = journeys[lose.journey_key]
    assert loser_journey.events == 1 and loser_journey.status == "closed"  # the end marker only
    assert sum(n for n, _ in nps.values()) == 1


def test_a_withdrawn_journey_id_takes_new_events_above_its_superseded_version() -> None:
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    lone = event("x", T0, journey="j-b")
    tracker.apply(lone, T0)
    [superseded], held = tracker.withdraw("j-b", "x", content_digest(lone), T0)
    assert held and superseded.status == "superseded" and superseded.events == 1
    [again], _ = tracker.apply(event("y", T0 + MIN, journey="j-b"), T0 + MIN)
    assert again.journey_id == "j-b" and again.version > superseded.version
    restored = JourneyTracker(JourneyConfig(), SCORING_RULES)
    restored.restore_key("j-b", json.loads(json.dumps(tracker.snapshot_key("j-b"))))
    assert restored.snapshot_key("j-b") == tracker.snapshot_key("j-b")



def test_a_journey_id_whose_first_event_is_withdrawn_names_its_next_events_customer() -> None:
    """A journey id's customer is its first event's; with that event withdrawn, the journey's
    record names the customer of the first event left, as replay's does (which withdrew it
    before the later event came: shrunk from a drawn stream, `bench.conflict_parity`,
    2026-12-08; the record kept the withdrawn copy's customer before)."""
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    first = event("x", T0, journey="j-b", customer="c2")
    tracker.apply(first, T0)
    tracker.apply(event("y", T0 + MIN, journey="j-b", customer="c0"), T0 + MIN)
    [record], held = tracker.withdraw("j-b", "x", content_digest(first), T0 + MIN)
    assert held and record.events == 1 and record.customer_id == "c0"
    replay = JourneyTracker(JourneyConfig(), SCORING_RULES)
    [only], _ = replay.apply(event("y", T0 + MIN, journey="j-b", customer="c0"), T0 + MIN)
    assert only.customer_id == record.customer_id

def test_a_withdrawn_customer_journey_takes_new_events_above_its_superseded_version() -> None:
    """A customer's only session emptied by a withdrawal is superseded; a later event starting
    at the same instant makes a session of the very same id. Its versions must continue above
    the superseded record's, or ClickHouse (and replay's latest-by-version) keeps the
    superseded record and the event vanishes: found by
    tests/unit/stream/test_stages_schema_streams.py, in replay and in the stream alike."""
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    lone = event("x", T0)
    [first], _ = tracker.apply(lone, T0)
    [superseded], held = tracker.withdraw(lone.journey_key, "x", content_digest(lone), T0)
    assert held and superseded.status == "superseded"
    assert superseded.journey_id == first.journey_id
    [again], _ = tracker.apply(event("y", T0), T0)
    assert again.journey_id == superseded.journey_id and again.status == "open"
    assert again.version > superseded.version


def test_a_withdrawal_of_a_copy_no_longer_held_changes_nothing() -> None:
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    tracker.apply(event("x", T0, journey="j-b"), T0)
    before = tracker.snapshot_key("j-b")
    assert tracker.withdraw("j-b", "x", 12345, T0) == ([], False)  # another copy's digest
    assert tracker.withdraw("j-zzz", "x", 12345, T0) == ([], False)
    assert tracker.snapshot_key("j-b") == before


def test_claims_are_forgotten_past_the_lateness_horizon() -> None:
    claims = EventClaims()
    claims.claim("a", 5, "j-a", 0, T0)
    claims.claim("b", 5, "j-a", 0, T0 + 10 * MIN)
    claims.claim("a", 3, "j-c", 1, T0 + 20 * MIN)  # a later copy keeps "a" for longer
    config = CoreConfig()
    lateness, width = config.windows.allowed_lateness_ms, config.windows.bucket_ms
    assert claims.forget_before(claims_horizon(T0 + 15 * MIN + lateness + width, lateness,
                                               width)) == ["b"]
    assert claims.get("a") is not None and len(claims) == 1



def test_claims_advance_forgets_after_each_claim_by_the_slowest_partition_heard() -> None:
    """`advance`: what replay and the claims stage call after every claim they judge."""
    claims = EventClaims(reach_ms=10 * MIN)
    claims.claim("a", 5, "j-a", 0, T0)
    assert claims.advance(0, T0) == [] and claims.forgotten_before == T0 - 10 * MIN
    claims.claim("b", 5, "j-b", 1, T0 + MIN)
    assert claims.advance(1, T0 + MIN) == []
    # partition 0 moves on alone: partition 1 could still send a copy of "a"
    claims.claim("c", 5, "j-a", 0, T0 + 30 * MIN)
    assert claims.advance(0, T0 + 30 * MIN) == [] and claims.get("a") is not None
    # partition 1 moves too: the slowest heard is past both claims' reach
    claims.claim("d", 5, "j-b", 1, T0 + 20 * MIN)
    assert claims.advance(1, T0 + 20 * MIN) == ["a", "b"]
    assert claims.forgotten_before == T0 + 10 * MIN
    # stream time never goes back, nor does the horizon
    assert claims.advance(1, T0 + 2 * MIN) == [] and claims.forgotten_before == T0 + 10 * MIN
    # a claim from before the horizon (a partition far behind) is judged, then goes at once
    assert claims.claim("a", 4, "j-c", 2, T0 + 5 * MIN) is None
    assert claims.advance(2, T0 + 5 * MIN) == ["a"] and claims.forgotten_before == T0 + 10 * MIN
    # the horizon is state: a snapshot carries it with the stream times heard
    resumed = EventClaims(resume=claims.snapshot(), reach_ms=10 * MIN)
    assert (resumed.watermarks, resumed.forgotten_before) == (claims.watermarks,
                                                              claims.forgotten_before)
    assert resumed.snapshot() == claims.snapshot()

def test_replay_dead_letters_one_conflict_and_counts_the_winner(tmp_path: Path) -> None:
    win, lose = copies("j-a", "j-b")
    for order in ((win, lose), (lose, win)):
        path = tmp_path / "e.jsonl"
        path.write_bytes(b"\n".join(event_to_json(e) for e in order) + b"\n")
        out = tmp_path / "out"
        assert main(["replay", str(path), "--output", str(out), "--partitions", "4",
                     "--now", "2027-01-01T00:00:00Z"]) == 0
        letters = [json.loads(x) for x in (out / "dead_letters.jsonl").read_text().splitlines()]
        assert [(d["reason"], d["event_id"]) for d in letters] == [("conflict", "x")]
        journeys = [json.loads(x) for x in (out / "journeys.jsonl").read_text().splitlines()]
        live = [j for j in journeys if j["status"] != "superseded"]
        assert [j["journey_id"] for j in live] == [win.journey_key]


def test_a_withdrawn_copy_sent_again_is_a_duplicate_in_any_order_of_the_verdict() -> None:
    """The losing copy sent again under its key after its withdrawal is a duplicate of the
    withdrawn copy (`KeyState.withdrawn`): replay withdraws at once and would otherwise apply,
    claim and withdraw it anew at every copy (a superseded record's version growing with each),
    where the stream, whose verdict comes later, met the copies as duplicates of the copy it
    still held. Its journey's record is the one after the first withdrawal."""
    for keys in (("j-a", None), (None, "j-b"), ("j-a", "j-b")):
        win, lose = copies(*keys)  # the digests decide which is which
        once, _, verdicts = run([lose, win])
        assert verdicts == [None, REPLACED], keys
        many, nps, verdicts = run([lose, win, lose, lose])
        assert verdicts[2:] == [DUPLICATE, DUPLICATE], keys
        assert many == once  # versions included
        assert sum(n for n, _ in nps.values()) == 1


def test_another_copy_under_the_key_of_a_withdrawn_one_is_judged_against_it() -> None:
    """After the losing copy's withdrawal its key still judges new copies of the id against it
    (`KeyState.withdrawn`), as the stream's stage one does while the verdict is on its way: a
    copy with a larger digest is a `conflict` there and changes nothing (no journey applied,
    claimed and withdrawn again, which the stream never had); a smaller one is applied and
    claimed as a copy of its own."""
    won = 0
    for keys in (("j-a", None), (None, "j-b"), ("j-a", "j-b")):
        win, lose = copies(*keys)
        once, _, _ = run([lose, win])
        third = {content_digest(c): c for c in (
            event("x", lose.occurred_ms, journey=lose.journey_id, type="survey",
                  survey=Survey(nps=n)) for n in range(11))}
        larger = third[min(d for d in third if d > content_digest(lose))]
        after, nps, verdicts = run([lose, win, larger])
        assert verdicts[2] == CONFLICT and after == once, keys
        assert sum(n for n, _ in nps.values()) == 1
        smaller = min(third)
        if smaller < content_digest(win):  # it wins the claims now
            after, nps, verdicts = run([lose, win, third[smaller]])
            assert verdicts[2] == REPLACED, keys
            assert sum(n for n, _ in nps.values()) == 1
            won += 1
    assert won  # the digests give one such copy (under "j-a")


def test_claims_by_claims_partition_forget_by_the_partitions_each_has_heard() -> None:
    """`claims_partitions`: the engine judges the claims of each claims partition apart, as the
    stream's claims stage does. A claims partition that has heard only from a journey partition
    a day and more ahead forgets an older claim from another partition at once, so a copy under
    a third key within the lateness of it counts too; with one part (which had heard the slow
    partition through another event's claim) the claim is held and the copy withdrawn."""
    from pipeline.core.claims import claims_partition

    day = 24 * 60 * MIN
    ids = [f"x{i}" for i in range(40)]
    # `ahead` and `copied` share a claims partition; `slow`'s is another
    slow = next(i for i in ids if claims_partition(i, 4) != claims_partition("x0", 4))
    ahead = next(i for i in ids[1:] if claims_partition(i, 4) == claims_partition("x0", 4))
    keys = {p: next(k for k in (f"k{n}" for n in range(99)) if partition_for(k, 4) == p)
            for p in range(4)}
    stream = [event(slow, T0, journey=keys[0]), event(ahead, T0 + day + 5 * 60 * MIN,
                                                      journey=keys[2]),
              event("x0", T0 + 2 * 60 * MIN, journey=keys[1]),
              event("x0", T0 - 8 * 60 * MIN, journey=keys[3], valence=0.9)]
    verdicts = {}
    for parts in (1, 4):
        engine = ExperienceEngine(CoreConfig(), SCORING_RULES, claims_partitions=parts)
        verdicts[parts] = [engine.process(e, partition_for(e.journey_key, 4))[1] for e in stream]
        assert len(engine.claims_parts) == parts
    assert verdicts[4] == [None] * 4  # two events: nothing withdrawn
    assert verdicts[1][:3] == [None] * 3 and verdicts[1][3] in (CONFLICT, REPLACED)
    try:
        ExperienceEngine(CoreConfig(), SCORING_RULES, claims_partitions=0)
    except ValueError as exc:
        assert "claims_partitions" in str(exc)
    else:
        raise AssertionError("0 claims partitions accepted")

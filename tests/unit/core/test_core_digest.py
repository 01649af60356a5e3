"""The content digest keeps its value (issue 19): it decides which copy of a duplicate event_id
wins in the stream, replay and backfill, and it is stored in state snapshots, in the stream's
Kafka records and as touchpoint_events.version in ClickHouse. `content_text` is the tuned form
of `content_text_reference` (the readable definition): for any event both give the same text,
and digests pinned below, computed before the tuned form existed (git 2b05984), stay what they
are. A change to them is a new `CONTENT_DIGEST_VERSION` and a migration of every stored digest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.event import (
    CHANNELS,
    CONTENT_DIGEST_VERSION,
    EVENT_TYPES,
    STAGES,
    Signals,
    Survey,
    TouchpointEvent,
    content_digest,
    content_text,
    content_text_reference,
)

T = datetime(2026, 11, 22, 9, 30, 15, 250000, tzinfo=UTC)


def golden_events() -> list[TouchpointEvent]:
    """Every optional part once: signals with a 17-digit float, attributes out of order, an
    instant given in another offset, a survey with CES direction and a comment needing escapes
    (quotes, backslash, a lone surrogate, a character outside the BMP)."""
    return [
        TouchpointEvent("e1", T, "p", "c1", "survey", "web", "web", "use", survey=Survey(nps=9)),
        TouchpointEvent("e-2", T, "crm", "cust-7", "interaction", "hotline", "phone",
                        "after_sales", journey_id="j-42",
                        signals=Signals(wait_seconds=53.72208826811975, handle_seconds=300.0,
                                        transfers=2, resolved=False, error=None),
                        attributes={"tier": "gold", "region": "eu"}),
        TouchpointEvent("e3", T.astimezone(timezone(timedelta(hours=5))), "p", "c1",
                        "interaction", "chat", "chat", "use", valence=-0.35),
        TouchpointEvent("e4", T, "p", "c'1", "survey", "app", "app", "purchase",
                        survey=Survey(nps=None, ces=4, ces_scale=5, csat=2,
                                      comment="n\u00e4h \"so\" \\ \ud800 \U0001f600",
                                      ces_higher_means="more_effort")),
        TouchpointEvent("e5", T, "p", "c1", "outcome", "store", "store", "use",
                        outcome="churn", attributes={}),
    ]


# content_digest of golden_events() at git 2b05984 (repr of the tuple, before content_text)
VERSION_1_DIGESTS = [3645097274, 975369445, 3752818690, 1299233340, 786197097]


def test_the_digests_of_version_1_stay_what_they_were() -> None:
    assert CONTENT_DIGEST_VERSION == 1, "a new version: pin its digests here"
    assert [content_digest(e) for e in golden_events()] == VERSION_1_DIGESTS


def test_the_golden_events_give_the_reference_text() -> None:
    for e in golden_events():
        assert content_text(e) == content_text_reference(e)


# Any text (lone surrogates included: `surrogatepass` encodes them), any float (NaN, infinities,
# -0.0, 17 significant digits) or None, and ints where a float is declared: the tuned text must
# equal the reference for values the contract would reject too, so it never depends on them.
text = st.text(st.characters(exclude_categories=()), max_size=12)
numbers = st.none() | st.floats() | st.integers(-(1 << 70), 1 << 70)
maybe_int = st.none() | st.integers(-(1 << 40), 1 << 40)
maybe_bool = st.none() | st.booleans()
signals = st.none() | st.builds(Signals, wait_seconds=numbers, handle_seconds=numbers,
                                transfers=maybe_int, resolved=maybe_bool, error=maybe_bool)
surveys = st.none() | st.builds(
    Survey, nps=maybe_int, ces=maybe_int, ces_scale=st.none() | st.sampled_from([5, 7]),
    csat=maybe_int, comment=st.none() | text,
    ces_higher_means=st.none() | st.sampled_from(["less_effort", "more_effort"]))
events = st.builds(
    TouchpointEvent,
    event_id=text, occurred_at=st.datetimes(timezones=st.just(UTC)), producer=text,
    customer_id=text, type=st.sampled_from(EVENT_TYPES), touchpoint=text,
    channel=st.sampled_from(CHANNELS), stage=st.sampled_from(STAGES),
    journey_id=st.none() | text, valence=numbers, signals=signals, survey=surveys,
    outcome=st.none() | text, attributes=st.dictionaries(text, text, max_size=4))


@settings(max_examples=500, deadline=None)
@given(events)
def test_the_tuned_text_is_the_reference_text(event: TouchpointEvent) -> None:
    assert content_text(event) == content_text_reference(event)


def test_the_digest_is_kept_with_the_event_and_never_carried_to_changed_content() -> None:
    """Computed once per event object (the stream's stages, replay and backfill all ask for it),
    never part of equality, and a copy with changed content (`dataclasses.replace`) computes
    its own."""
    from dataclasses import replace

    from pipeline.core.event import with_digest

    event = golden_events()[0]
    assert event.known_digest == -1
    assert content_digest(event) == VERSION_1_DIGESTS[0] == event.known_digest
    changed = replace(event, survey=Survey(nps=0))
    assert changed.known_digest == -1
    assert content_digest(changed) != VERSION_1_DIGESTS[0]
    # a digest sent along with the event (the entry stage's, in a batch record) is taken as is
    sent = with_digest(golden_events()[1], 12345)
    assert content_digest(sent) == 12345
    assert sent == golden_events()[1]  # the digest is no part of equality

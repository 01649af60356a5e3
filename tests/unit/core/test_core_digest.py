"""The content digest keeps its value (issue 19): it decides which copy of a duplicate event_id
wins in the stream, replay and backfill, and it is stored in state snapshots, in the stream's
Kafka records and as touchpoint_events.version in ClickHouse. Version 2 (`content_bytes`) is
pinned below, and so is version 1 (`content_digest_v1`, still asked when a copy meets one held
under version 1): `content_text` is the tuned form of `content_text_reference` (version 1's
readable definition), and for any event both give the same text. A change to either is a new
`CONTENT_DIGEST_VERSION` and a migration of every stored digest.
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
    content_bytes,
    content_digest,
    content_digest_v1,
    content_text,
    content_text_reference,
    digest_definition,
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
# content_digest of golden_events() when version 2 was made
VERSION_2_DIGESTS = [-362760969, -1486129765, -3366982485, -1967004400, -1431949832]


def test_the_digests_of_version_1_stay_what_they_were() -> None:
    assert [content_digest_v1(e) for e in golden_events()] == VERSION_1_DIGESTS


def test_the_digests_of_version_2_stay_what_they_were() -> None:
    assert CONTENT_DIGEST_VERSION == 2, "a new version: pin its digests here"
    assert [content_digest(e) for e in golden_events()] == VERSION_2_DIGESTS
    assert all(digest_definition(d) == 2 for d in VERSION_2_DIGESTS)
    assert all(digest_definition(d) == 1 for d in VERSION_1_DIGESTS)


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
    assert content_digest(event) == VERSION_2_DIGESTS[0] == event.known_digest
    changed = replace(event, survey=Survey(nps=0))
    assert changed.known_digest == -1
    assert content_digest(changed) != VERSION_2_DIGESTS[0]
    # a digest sent along with the event (the entry stage's, in a batch record) is taken as is
    sent = with_digest(golden_events()[1], 12345)
    assert content_digest(sent) == 12345
    assert sent == golden_events()[1]  # the digest is no part of equality


@settings(max_examples=500, deadline=None)
@given(events)
def test_version_2_digests_any_event_without_an_error_and_says_so(event: TouchpointEvent) -> None:
    """Any event the core can hold (values the contract would reject too) has a version 2
    digest, in its range."""
    assert digest_definition(content_digest(event)) == 2


# Every field as the contract allows it, to change one at a time (`_one_field_changes`).
def _base() -> TouchpointEvent:
    return golden_events()[1]


def _variants() -> list[TouchpointEvent]:
    from dataclasses import replace
    e = _base()
    sig = e.signals
    assert sig is not None
    survey = Survey(nps=3, ces=2, ces_scale=7, csat=4, comment="x")
    with_survey = replace(e, survey=survey)
    return [
        e, replace(e, event_id="e-3"),
        replace(e, occurred_at=T + timedelta(milliseconds=1), occurred_ms=-1),
        replace(e, producer="crm2"), replace(e, customer_id="cust-8"), replace(e, journey_id=None),
        replace(e, journey_id=""), replace(e, type="survey"), replace(e, touchpoint="chat"),
        replace(e, channel="web"), replace(e, stage="use"), replace(e, valence=0.5),
        replace(e, signals=None), replace(e, signals=replace(sig, wait_seconds=None)),
        replace(e, signals=replace(sig, wait_seconds=0.0)),
        replace(e, signals=replace(sig, handle_seconds=300.5)),
        replace(e, signals=replace(sig, transfers=None)),
        replace(e, signals=replace(sig, transfers=0)),
        replace(e, signals=replace(sig, resolved=None)),
        replace(e, signals=replace(sig, resolved=True)),
        replace(e, signals=replace(sig, error=False)), replace(e, signals=replace(sig, error=True)),
        with_survey, replace(with_survey, survey=replace(survey, nps=None)),
        replace(with_survey, survey=replace(survey, nps=0)),
        replace(with_survey, survey=replace(survey, ces=None)),
        replace(with_survey, survey=replace(survey, ces_scale=5)),
        replace(with_survey, survey=replace(survey, ces_scale=None)),
        replace(with_survey, survey=replace(survey, csat=None)),
        replace(with_survey, survey=replace(survey, comment=None)),
        replace(with_survey, survey=replace(survey, comment="")),
        replace(with_survey, survey=replace(survey, ces_higher_means="less_effort")),
        replace(with_survey, survey=replace(survey, ces_higher_means="more_effort")),
        replace(e, survey=Survey()),
        replace(e, outcome="churn"), replace(e, outcome=""),
        replace(e, attributes={}), replace(e, attributes={"tier": "gold"}),
        replace(e, attributes={"tier": "gold", "region": "us"}),
        replace(e, attributes={"tier": "gold", "regio": "neu"}),
        # strings that a plain join would run together
        replace(e, event_id="e-2\0x"), replace(e, producer="x\0crm"),
    ]


def test_every_field_and_its_absence_change_the_hashed_content() -> None:
    """Each variant differs from the others in one field (or its absence, or where one string
    ends): their hashed contents all differ, so their digests differ but for CRC-32 collisions."""
    contents = [content_bytes(v) for v in _variants()]
    assert len(set(contents)) == len(contents)
    digests = [content_digest(v) for v in _variants()]
    assert len(set(digests)) == len(digests)


def test_one_value_in_any_form_is_one_content() -> None:
    """The same instant in another offset, a number as an integer or a decimal, -0.0 and 0.0,
    and attributes in any order: the same content."""
    from dataclasses import replace
    e = _base()
    sig = e.signals
    assert sig is not None
    same = [
        replace(e, occurred_at=T.astimezone(timezone(timedelta(hours=-3))), occurred_ms=-1),
        replace(e, signals=replace(sig, handle_seconds=300)),
        replace(e, attributes={"region": "eu", "tier": "gold"}),
    ]
    assert {content_digest(v) for v in same} == {content_digest(e)}
    zero = replace(e, valence=0.0)
    assert content_digest(replace(e, valence=-0.0)) == content_digest(zero)

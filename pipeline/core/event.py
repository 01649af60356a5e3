"""The touchpoint event (schema v1) as the core sees it, after validation.

`pipeline.contract` turns bytes into these; the core never sees an invalid event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from zlib import crc32

from pipeline.core.value import value_class

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

EventType = Literal["interaction", "survey", "journey_end", "outcome"]
Channel = Literal["web", "app", "phone", "store", "email", "chat", "social", "other"]
Stage = Literal["pre_purchase", "purchase", "use", "after_sales"]

EVENT_TYPES: tuple[EventType, ...] = ("interaction", "survey", "journey_end", "outcome")
CHANNELS: tuple[Channel, ...] = ("web", "app", "phone", "store", "email", "chat", "social", "other")
STAGES: tuple[Stage, ...] = ("pre_purchase", "purchase", "use", "after_sales")
# Event types that, carrying no valence, survey answer or signals, are markers (they close a
# journey or record an outcome) rather than moments (docs/design.md, "Valence of a moment").
MARKER_TYPES: frozenset[str] = frozenset({"journey_end", "outcome"})
# Which way a CES scale runs, as the survey declares it (survey.ces_higher_means): a higher
# answer means less effort (CES 2.0, "made it easy") or more effort (the original CES wording).
CesDirection = Literal["less_effort", "more_effort"]
CES_DIRECTIONS: tuple[CesDirection, ...] = ("less_effort", "more_effort")


@value_class
class Signals:
    """Operational signals of a touchpoint; every field is optional."""

    wait_seconds: float | None = None
    handle_seconds: float | None = None
    transfers: int | None = None
    resolved: bool | None = None
    error: bool | None = None

    def is_empty(self) -> bool:
        return (
            self.wait_seconds is None
            and self.handle_seconds is None
            and self.transfers is None
            and self.resolved is None
            and self.error is None
        )


@value_class
class Survey:
    """Survey answers given at a touchpoint; every field is optional."""

    nps: int | None = None
    ces: int | None = None
    ces_scale: Literal[5, 7] | None = None
    csat: int | None = None
    comment: str | None = None
    # Declared by the event (None: not said; the scale's default applies, valence.ces_on_7).
    # Last, so positional construction by older callers keeps its meaning.
    ces_higher_means: CesDirection | None = None

    def has_score(self) -> bool:
        return self.nps is not None or self.ces is not None or self.csat is not None


@value_class
class TouchpointEvent:
    """One customer touchpoint interaction; field meanings in schemas/touchpoint-event.v1.json."""

    event_id: str
    occurred_at: datetime  # timezone-aware
    producer: str
    customer_id: str
    type: EventType
    touchpoint: str
    channel: Channel
    stage: Stage
    journey_id: str | None = None
    schema_version: int = 1
    valence: float | None = None
    signals: Signals | None = None
    survey: Survey | None = None
    outcome: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    # Event time as integer epoch milliseconds: the core compares and buckets on this, never on
    # datetime objects, which keeps the hot path cheap. Derived from occurred_at when not given.
    occurred_ms: int = -1
    # `content_digest(self)`, kept once computed (or once known: a stage that received the
    # event with its digest sets it, `with_digest`). -1: not computed yet. Not an init field,
    # so `dataclasses.replace` never carries a digest over to changed content.
    known_digest: int = field(default=-1, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.occurred_ms == -1:
            # Floored, in exact integer arithmetic (timedelta // timedelta): an answer at
            # 10:59:59.9996 belongs to the 10:59 bucket. round() of the float timestamp put it
            # in 11:00 (issue 16).
            ms = (self.occurred_at - _EPOCH) // _MS
            object.__setattr__(self, "occurred_ms", ms)

    @property
    def journey_key(self) -> str:
        """The Kafka key and state key: the journey id, else the customer id."""
        return self.journey_id if self.journey_id is not None else self.customer_id


# The definition of `content_digest`'s value. The digest is kept beyond one process: in the
# tracker's and the claims' state snapshots, in the stream's Kafka records (entry batches,
# claims, withdrawals) and as touchpoint_events.version in ClickHouse (`storage.tables`). Any
# change to the value for any event needs a new version here and a migration of all of those.
# 1: CRC-32 of the UTF-8 of `content_text_reference` (unchanged since issue 13).
CONTENT_DIGEST_VERSION: Final = 1


def content_digest(event: TouchpointEvent) -> int:
    """A digest of everything an event says, stable across processes and restarts (not
    Python's salted `hash`): two copies with one event_id are the same event when their digests
    are equal, else a `conflict`. The same instant in another offset is the same content.
    Version `CONTENT_DIGEST_VERSION`.

    >>> from datetime import UTC, datetime
    >>> e = TouchpointEvent("e1", datetime(2026, 11, 22, tzinfo=UTC), "p", "c1", "survey",
    ...                     "web", "web", "use", survey=Survey(nps=9))
    >>> content_digest(e) == content_digest(e), content_digest(e) == content_digest(
    ...     TouchpointEvent("e1", e.occurred_at, "p", "c1", "survey", "web", "web", "use",
    ...                     survey=Survey(nps=0)))
    (True, False)
    >>> content_digest(e)
    3971372064
    """
    digest = event.known_digest
    if digest < 0:
        # Computed once per event: the stream's entry stage, stage one's tracker and the row's
        # version (`storage.tables`), replay's and backfill's likewise, all ask for it.
        digest = crc32(content_text(event).encode("utf-8", "surrogatepass"))
        object.__setattr__(event, "known_digest", digest)
    return digest


def with_digest(event: TouchpointEvent, digest: int) -> TouchpointEvent:
    """`event`, its content digest set to `digest` without computing it: only for a digest
    that a peakend stage computed for this very event and sent along with it
    (`pipeline.stream.batches`).

    >>> from datetime import UTC, datetime
    >>> e = TouchpointEvent("e1", datetime(2026, 11, 22, tzinfo=UTC), "p", "c1", "survey",
    ...                     "web", "web", "use", survey=Survey(nps=9))
    >>> content_digest(with_digest(e, 7))
    7
    """
    object.__setattr__(event, "known_digest", digest)
    return event


def content_text_reference(event: TouchpointEvent) -> str:
    """What `content_digest` hashes, by definition: the `repr` of a tuple of every field.
    `content_text` builds the same string faster; this is the readable reference it is tested
    against (tests/unit/core/test_core_digest.py)."""
    sig = event.signals
    sur = event.survey
    return repr((
        event.event_id, event.occurred_ms, event.producer, event.customer_id, event.journey_id,
        event.type, event.touchpoint, event.channel, event.stage, event.valence,
        None if sig is None else (sig.wait_seconds, sig.handle_seconds, sig.transfers,
                                  sig.resolved, sig.error),
        None if sur is None else (
            (sur.nps, sur.ces, sur.ces_scale, sur.csat, sur.comment) if sur.ces_higher_means is None
            # appended only when declared, so the digests of every event without it (all
            # stored before the field existed) stay what they were
            else (sur.nps, sur.ces, sur.ces_scale, sur.csat, sur.comment, sur.ces_higher_means)),
        event.outcome, sorted(event.attributes.items()),
    ))


def content_text(event: TouchpointEvent) -> str:
    """`content_text_reference(event)`, character for character, without `repr` of tuples and
    lists: that guards every nested container against recursion (a dict lookup and a list
    append and remove per container) and grows its output piece by piece, which made the
    digest 80% of the tracker's instructions per event (docs/core.md, Performance). Each field
    goes through `repr` exactly as inside the tuple, so the text is the same for any value of
    any type; the separators are those of a tuple's and a list's repr.

    `{repr(x)}`, not `{x!r}` (ruff's RUF010 is off for this file): mypyc builds an f-string of
    str parts in one allocation, but turns a conversion into a `str.format` call that parses
    its format every time (slower than the tuple's repr)."""
    sig = event.signals
    signals = "None" if sig is None else (
        f"({repr(sig.wait_seconds)}, {repr(sig.handle_seconds)}, {repr(sig.transfers)}, "
        f"{repr(sig.resolved)}, {repr(sig.error)})")
    sur = event.survey
    if sur is None:
        survey = "None"
    else:
        answers = (f"{repr(sur.nps)}, {repr(sur.ces)}, {repr(sur.ces_scale)}, "
                   f"{repr(sur.csat)}, {repr(sur.comment)}")
        survey = (f"({answers})" if sur.ces_higher_means is None
                  else f"({answers}, {repr(sur.ces_higher_means)})")
    attributes = ", ".join([f"({repr(name)}, {repr(value)})"
                            for name, value in sorted(event.attributes.items())])
    return (f"({repr(event.event_id)}, {repr(event.occurred_ms)}, {repr(event.producer)}, "
            f"{repr(event.customer_id)}, {repr(event.journey_id)}, {repr(event.type)}, "
            f"{repr(event.touchpoint)}, {repr(event.channel)}, {repr(event.stage)}, "
            f"{repr(event.valence)}, {signals}, {survey}, {repr(event.outcome)}, "
            f"[{attributes}])")

"""The touchpoint event (schema v1) as the core sees it, after validation.

`pipeline.contract` turns bytes into these; the core never sees an invalid event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from struct import Struct
from struct import error as StructError
from typing import Final, Literal
from zlib import crc32 as _zlib_crc32

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)

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


# The event and its parts are read-only values. Each field is declared `Final` in the class
# body (mypy rejects any assignment to it, and the compiled build makes it read-only at run
# time) and set once in `__init__`, which is written out because a compiled `__init__` stores
# every field directly into the native object: the `__init__` that `dataclass` generates would
# set each field through a descriptor (docs/core.md, "Native event classes"). `dataclass` still
# gives `fields`, `replace`, `==` and `repr`; tests/unit/core/test_core_event_classes.py keeps
# the two lists in step (the same names in the same order, the same types, each field set
# once). A native class cannot be rebuilt by pickle or `copy` without being told how:
# `__reduce__` (`_rebuilt`) calls the class with its init fields.


def _rebuilt(value: Signals | Survey | TouchpointEvent
             ) -> tuple[Callable[..., object], tuple[object, ...]]:
    """How pickle and `copy` rebuild an event or a part: its class called with the values of
    its init fields (the digest is not one: a copy computes it again, to the same value)."""
    return type(value), tuple([getattr(value, f.name) for f in fields(value) if f.init])


@dataclass(slots=True)
class Signals:
    """Operational signals of a touchpoint; every field is optional."""

    wait_seconds: Final[float | None]
    handle_seconds: Final[float | None]
    transfers: Final[int | None]
    resolved: Final[bool | None]
    error: Final[bool | None]

    def __init__(self, wait_seconds: float | None = None, handle_seconds: float | None = None,
                 transfers: int | None = None, resolved: bool | None = None,
                 error: bool | None = None) -> None:
        self.wait_seconds = wait_seconds
        self.handle_seconds = handle_seconds
        self.transfers = transfers
        self.resolved = resolved
        self.error = error

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return _rebuilt(self)

    def is_empty(self) -> bool:
        return (
            self.wait_seconds is None
            and self.handle_seconds is None
            and self.transfers is None
            and self.resolved is None
            and self.error is None
        )


@dataclass(slots=True)
class Survey:
    """Survey answers given at a touchpoint; every field is optional."""

    nps: Final[int | None]
    ces: Final[int | None]
    ces_scale: Final[Literal[5, 7] | None]
    csat: Final[int | None]
    comment: Final[str | None]
    # Declared by the event (None: not said; the scale's default applies, valence.ces_on_7).
    # Last, so positional construction by older callers keeps its meaning.
    ces_higher_means: Final[CesDirection | None]

    def __init__(self, nps: int | None = None, ces: int | None = None,
                 ces_scale: Literal[5, 7] | None = None, csat: int | None = None,
                 comment: str | None = None,
                 ces_higher_means: CesDirection | None = None) -> None:
        self.nps = nps
        self.ces = ces
        self.ces_scale = ces_scale
        self.csat = csat
        self.comment = comment
        self.ces_higher_means = ces_higher_means

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return _rebuilt(self)

    def has_score(self) -> bool:
        return self.nps is not None or self.ces is not None or self.csat is not None


@dataclass(slots=True)
class TouchpointEvent:
    """One customer touchpoint interaction; field meanings in schemas/touchpoint-event.v1.json."""

    event_id: Final[str]
    occurred_at: Final[datetime]  # timezone-aware
    producer: Final[str]
    customer_id: Final[str]
    type: Final[EventType]
    touchpoint: Final[str]
    channel: Final[Channel]
    stage: Final[Stage]
    journey_id: Final[str | None]
    schema_version: Final[int]
    valence: Final[float | None]
    signals: Final[Signals | None]
    survey: Final[Survey | None]
    outcome: Final[str | None]
    attributes: Final[Mapping[str, str]]
    # Event time as integer epoch milliseconds: the core compares and buckets on this, never on
    # datetime objects, which keeps the hot path cheap. Derived from occurred_at when not given.
    occurred_ms: Final[int]
    # `content_digest(self)`, kept once computed (or once known: a stage that received the
    # event with its digest sets it, `with_digest`). -1 (`NOT_DIGESTED`): not computed yet.
    # Not an init field, so `dataclasses.replace` never carries a digest over to changed
    # content.
    known_digest: int = field(init=False, repr=False, compare=False)

    def __init__(self, event_id: str, occurred_at: datetime, producer: str, customer_id: str,
                 type: EventType, touchpoint: str, channel: Channel, stage: Stage,
                 journey_id: str | None = None, schema_version: int = 1,
                 valence: float | None = None, signals: Signals | None = None,
                 survey: Survey | None = None, outcome: str | None = None,
                 attributes: Mapping[str, str] | None = None, occurred_ms: int = -1) -> None:
        self.event_id = event_id
        self.occurred_at = occurred_at
        self.producer = producer
        self.customer_id = customer_id
        self.type = type
        self.touchpoint = touchpoint
        self.channel = channel
        self.stage = stage
        self.journey_id = journey_id
        self.schema_version = schema_version
        self.valence = valence
        self.signals = signals
        self.survey = survey
        self.outcome = outcome
        self.attributes = {} if attributes is None else attributes
        # Floored, in exact integer arithmetic (timedelta // timedelta): an answer at
        # 10:59:59.9996 belongs to the 10:59 bucket. round() of the float timestamp put it in
        # 11:00 (issue 16).
        self.occurred_ms = (occurred_at - _EPOCH) // _MS if occurred_ms == -1 else occurred_ms
        self.known_digest = NOT_DIGESTED

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return _rebuilt(self)

    @property
    def journey_key(self) -> str:
        """The Kafka key and state key: the journey id, else the customer id."""
        return self.journey_id if self.journey_id is not None else self.customer_id


# The definition of `content_digest`'s value. The digest is kept beyond one process: in the
# tracker's and the claims' state snapshots, in the stream's Kafka records (entry batches,
# claims, withdrawals) and as touchpoint_events.version in ClickHouse (`storage.tables`). Any
# change to the value for any event needs a new version here and a migration of all of those.
# 1: CRC-32 of the UTF-8 of `content_text_reference`, in [0, 2^32) (issue 13). Still read:
#    state, records and rows written before version 2 hold such digests.
# 2: CRC-32 of `content_bytes`, the numbers packed binary and the strings joined, minus
#    `DIGEST_2_OFFSET`, in [-2^32 - 1, -2] (issue 19: version 1 cost 4.4 of the core's ~14 us
#    per event, the shortest repr of every float). The values say their version, so nothing
#    stored needs rewriting, and they sit below every version 1 digest: across an upgrade the
#    copy digested by version 2 wins, in the core ("the smaller digest") as in ClickHouse (the
#    higher version, `2^32 - digest`). Whether a copy equals one held under version 1 is
#    decided by `content_digest_v1` (`JourneyTracker.apply_into`).
CONTENT_DIGEST_VERSION: Final = 2
DIGEST_2_OFFSET: Final = (1 << 32) + 1
NOT_DIGESTED: Final = -1  # `known_digest` before it is computed; no definition gives -1

# The numbers of an event by value, in a fixed layout: flags, occurred_ms and valence
# (`_HEAD`), then wait, handle and transfers when there are signals (`_SIGNALS`), then nps,
# ces, ces_scale and csat when there is a survey (`_ANSWERS`). A JSON 60 and 60.0 are one
# content, as they are one value in every output; the `_NONE_*` flags say what is absent.
# Signed 64-bit integers: the contract bounds every integer field far inside them
# (schemas/touchpoint-event.v1.json); an event built past them outside the contract is
# digested through `repr` instead (`_LAYOUT_REPR`), never an error.
_HEAD: Final = "qqd"
_SIGNALS: Final = "ddq"
_ANSWERS: Final = "qqqq"
# One `pack` per event: the layout's four shapes, each the concatenation of its parts (packed
# little-endian with "<", parts join without padding), bound once (a compiled call of a bound
# method skips the method lookup).
_PACK_HEAD: Final = Struct("<" + _HEAD).pack
_PACK_WITH_SIGNALS: Final = Struct("<" + _HEAD + _SIGNALS).pack
_PACK_WITH_ANSWERS: Final = Struct("<" + _HEAD + _ANSWERS).pack
_PACK_WITH_BOTH: Final = Struct("<" + _HEAD + _SIGNALS + _ANSWERS).pack
_crc32: Final = _zlib_crc32  # Final: a compiled call without a lookup in the module's dict
_NONE_JOURNEY_ID: Final = 1
_NONE_VALENCE: Final = 1 << 1
_NONE_SIGNALS: Final = 1 << 2
_NONE_WAIT: Final = 1 << 3
_NONE_HANDLE: Final = 1 << 4
_NONE_TRANSFERS: Final = 1 << 5
_RESOLVED_SHIFT: Final = 6  # two bits each: 0 None, 1 False, 2 True
_ERROR_SHIFT: Final = 8
_NONE_SURVEY: Final = 1 << 10
_NONE_NPS: Final = 1 << 11
_NONE_CES: Final = 1 << 12
_NONE_CES_SCALE: Final = 1 << 13
_NONE_CSAT: Final = 1 << 14
_NONE_COMMENT: Final = 1 << 15
_DIRECTION_SHIFT: Final = 16  # 0 None, 1 less_effort, 2 more_effort
_NONE_OUTCOME: Final = 1 << 18
_STRINGS_REPR: Final = 1 << 19  # a string holds NUL: the strings go as repr of their list
_LAYOUT_REPR: Final = 1 << 20  # a number outside the layout: the numbers go as their repr
_DIRECTION_CODE: Final = {"less_effort": 1, "more_effort": 2}


def _flag(value: bool | None, shift: int) -> int:
    return 0 if value is None else (2 if value else 1) << shift


def content_bytes(event: TouchpointEvent) -> bytes:
    """What version 2 of `content_digest` hashes: every field of the event, the numbers packed
    binary by value (`_packed_numbers`), then the strings joined by NUL in a fixed order, the
    attributes sorted by name last. Joined strings are read back unambiguously only when none
    holds a NUL: when one does (the contract allows it) the strings go as the `repr` of their
    list and a flag says so.

    >>> from datetime import UTC, datetime
    >>> e = TouchpointEvent("e1", datetime(2026, 11, 22, tzinfo=UTC), "p", "c1", "survey",
    ...                     "web", "web", "use", survey=Survey(nps=9))
    >>> content_bytes(e)[56:]
    b'e1\\x00p\\x00c1\\x00\\x00survey\\x00web\\x00web\\x00use\\x00\\x00'
    """
    # the flags of the absent strings go with the numbers (`_packed_numbers`)
    absent = 0
    journey_id = event.journey_id
    if journey_id is None:
        absent |= _NONE_JOURNEY_ID
        journey_id = ""
    outcome = event.outcome
    if outcome is None:
        absent |= _NONE_OUTCOME
        outcome = ""
    sur = event.survey
    comment = None if sur is None else sur.comment
    if sur is not None and comment is None:
        absent |= _NONE_COMMENT
    strings = [event.event_id, event.producer, event.customer_id, journey_id, event.type,
               event.touchpoint, event.channel, event.stage, outcome, comment or ""]
    attributes = event.attributes
    if attributes:
        for name in sorted(attributes) if len(attributes) > 1 else attributes:
            strings.append(name)
            strings.append(attributes[name])
    text = "\0".join(strings)
    layout = 0
    if text.count("\0") != len(strings) - 1:
        layout = _STRINGS_REPR
        text = repr(strings)
    try:
        numbers = _packed_numbers(event, layout | absent)
    except (StructError, OverflowError, TypeError, ValueError):
        sig = event.signals
        numbers = repr((
            layout | _LAYOUT_REPR, event.occurred_ms, event.journey_id is None, event.valence,
            None if sig is None else (sig.wait_seconds, sig.handle_seconds, sig.transfers,
                                      sig.resolved, sig.error),
            None if sur is None else (sur.nps, sur.ces, sur.ces_scale, sur.csat,
                                      comment is None, sur.ces_higher_means),
            event.outcome is None)).encode("ascii")
    return numbers + text.encode("utf-8", "surrogatepass")


def _packed_numbers(event: TouchpointEvent, flags: int) -> bytes:
    """The numbers of `content_bytes` with a flag word (`flags`, from the strings, and more)
    saying which optional part is absent (its slot then holds 0, and absent signals or survey
    take no bytes): their values, so -0.0 is 0.0 and an integer where a number is declared is
    that number. Raises for a number outside the layout. Each field is read once, here or in
    `content_bytes`."""
    absent, valence = _real(event.valence, _NONE_VALENCE)
    flags |= absent
    wait = handle = 0.0
    transfers = nps = ces = ces_scale = csat = 0
    sig = event.signals
    if sig is None:
        flags |= _NONE_SIGNALS
    else:
        absent, wait = _real(sig.wait_seconds, _NONE_WAIT)
        flags |= absent
        absent, handle = _real(sig.handle_seconds, _NONE_HANDLE)
        flags |= absent
        absent, transfers = _integer(sig.transfers, _NONE_TRANSFERS)
        flags |= absent | _flag(sig.resolved, _RESOLVED_SHIFT) | _flag(sig.error, _ERROR_SHIFT)
    sur = event.survey
    if sur is None:
        flags |= _NONE_SURVEY
    else:
        absent, nps = _integer(sur.nps, _NONE_NPS)
        flags |= absent
        absent, ces = _integer(sur.ces, _NONE_CES)
        flags |= absent
        absent, ces_scale = _integer(sur.ces_scale, _NONE_CES_SCALE)
        flags |= absent
        absent, csat = _integer(sur.csat, _NONE_CSAT)
        flags |= absent
        direction = sur.ces_higher_means
        if direction is not None:
            flags |= _DIRECTION_CODE[direction] << _DIRECTION_SHIFT
    ms = event.occurred_ms
    if sig is None:
        if sur is None:
            return _PACK_HEAD(flags, ms, valence)
        return _PACK_WITH_ANSWERS(flags, ms, valence, nps, ces, ces_scale, csat)
    if sur is None:
        return _PACK_WITH_SIGNALS(flags, ms, valence, wait, handle, transfers)
    return _PACK_WITH_BOTH(flags, ms, valence, wait, handle, transfers, nps, ces, ces_scale,
                           csat)


def _real(value: float | None, absent: int) -> tuple[int, float]:
    """(0, the value; -0.0 as 0.0), or (`absent`, 0.0) for no value."""
    return (absent, 0.0) if value is None else (0, value + 0.0)


def _integer(value: int | None, absent: int) -> tuple[int, int]:
    """(0, the value), or (`absent`, 0) for no value."""
    return (absent, 0) if value is None else (0, value)


def content_digest(event: TouchpointEvent) -> int:
    """A digest of everything an event says, stable across processes and restarts (not
    Python's salted `hash`): two copies with one event_id are the same event when their digests
    are equal, else a `conflict`. The same instant in another offset is the same content, and
    so is the same number written as an integer or a decimal. Version `CONTENT_DIGEST_VERSION`.

    >>> from datetime import UTC, datetime
    >>> e = TouchpointEvent("e1", datetime(2026, 11, 22, tzinfo=UTC), "p", "c1", "survey",
    ...                     "web", "web", "use", survey=Survey(nps=9))
    >>> content_digest(e) == content_digest(e), content_digest(e) == content_digest(
    ...     TouchpointEvent("e1", e.occurred_at, "p", "c1", "survey", "web", "web", "use",
    ...                     survey=Survey(nps=0)))
    (True, False)
    >>> content_digest(e), digest_definition(content_digest(e))
    (-3188491989, 2)
    """
    digest = event.known_digest
    if digest == NOT_DIGESTED:
        # Computed once per event: the stream's entry stage, stage one's tracker and the row's
        # version (`storage.tables`), replay's and backfill's likewise, all ask for it.
        digest = _crc32(content_bytes(event)) - DIGEST_2_OFFSET
        event.known_digest = digest
    return digest


def digest_definition(digest: int) -> int:
    """Which version of `content_digest` gave `digest` (its range says it); 0: none, the
    "unknown" of state written before digests were kept.

    >>> digest_definition(3971372064), digest_definition(-2), digest_definition(-1)
    (1, 2, 0)
    """
    if digest >= 0:
        return 1
    return 0 if digest == NOT_DIGESTED else 2


def content_digest_v1(event: TouchpointEvent) -> int:
    """Version 1 of `content_digest` (CRC-32 of `content_text`), for the copies whose event_id
    is held under a version 1 digest (state from before version 2): never stored by now.

    >>> from datetime import UTC, datetime
    >>> content_digest_v1(TouchpointEvent("e1", datetime(2026, 11, 22, tzinfo=UTC), "p", "c1",
    ...                                   "survey", "web", "web", "use", survey=Survey(nps=9)))
    3971372064
    """
    return _crc32(content_text(event).encode("utf-8", "surrogatepass"))


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
    event.known_digest = digest
    return event


def content_text_reference(event: TouchpointEvent) -> str:
    """What version 1 of `content_digest` hashed, by definition: the `repr` of a tuple of every
    field. `content_text` builds the same string faster; this is the readable reference it is
    tested against (tests/unit/core/test_core_digest.py)."""
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

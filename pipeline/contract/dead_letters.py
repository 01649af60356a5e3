"""Dead letters: a rejected input record with its reason, kept byte for byte (docs/records.md).

Nothing is dropped silently: whatever the contract or a later stage (`late`) turns away becomes
one of these, on the dead-letter topic or in dead_letters.jsonl, and can be replayed after a fix
(`peakend replay-dead-letters`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from pipeline.contract.rejected import Rejected
from pipeline.core.records import RecordField, names_of, text_or_empty

# The fields of a dead letter in order, declared as the output records declare theirs
# (`pipeline.core.records.RecordField`): the one declaration of their names and types, from
# which `from_dict`'s checks and the `dead_letters` table row (`pipeline.storage.tables`) are
# derived; tests/unit/storage/test_record_fields.py holds `DeadLetter`, the migrations and
# docs/records.md to it. `received_at` is a `datetime` in the letter (a core record's times are
# epoch ms), RFC 3339 text in its dict, DateTime plus `received_at_ms` in its table.
_REQUIRED: Final = (
    RecordField("reason", "str"), RecordField("error", "str"), RecordField("source_topic", "str"),
    RecordField("source_partition", "int"), RecordField("source_offset", "int"),
    RecordField("received_at", "time"), text_or_empty("event_id"),
    RecordField("original_b64", "str"))
# Added by issue 21 (pseudonymised dead letters, pipeline.privacy.PersonalData.seal; migration
# 007); optional on reading, so letters written before them still read (as `raw`).
_PROTECTION: Final = (
    RecordField("original_form", "str", or_empty=True, empty="raw"),
    text_or_empty("original_sha256"), text_or_empty("redacted"))
DEAD_LETTER_FIELDS: Final = (*_REQUIRED, *_PROTECTION)
FIELDS: Final = names_of(_REQUIRED)
PROTECTION_FIELDS: Final = names_of(_PROTECTION)
_ALL_NAMES: Final = names_of(DEAD_LETTER_FIELDS)
# What `from_dict` checks a letter's dict holds: text (str and time fields) or integers.
_TEXTS: Final = tuple(f.name for f in _REQUIRED if f.type != "int")
_INTEGERS: Final = tuple(f.name for f in _REQUIRED if f.type == "int")
# What `original_b64` holds: the record as received, AES-GCM ciphertext under the operators'
# PEAKEND_DEAD_LETTER_KEY, or nothing (only the redacted copy and the digest are kept).
ORIGINAL_FORMS = ("raw", "encrypted", "dropped")


def _to_ms(moment: datetime) -> datetime:
    """UTC, truncated to the millisecond: the precision records carry, so round trips are exact."""
    if moment.tzinfo is None:
        raise ValueError(f"received_at {moment.isoformat()} has no UTC offset")
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def format_time(moment: datetime) -> str:
    """RFC 3339, UTC, milliseconds, `Z` (the record convention).

    >>> format_time(datetime(2026, 11, 22, 17, 10, 9, 123456, tzinfo=UTC))
    '2026-11-22T17:10:09.123Z'
    """
    moment = _to_ms(moment)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# Below the 1 MiB a Kafka producer sends by default (and the broker's 2 MB message.max.bytes).
MAX_DEAD_LETTER_BYTES = 1_000_000

# A record on a topic the pipeline writes itself (an output topic, or the entry stage's
# journey-events) that the stage reading it cannot decode: another producer writing to the
# topic, or a newer version's format. A letter, not a stage that fails on it at every restart.
UNREADABLE_REASON = "unreadable"


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    error: str
    source_topic: str
    source_partition: int
    source_offset: int
    received_at: datetime
    event_id: str
    original_b64: str
    original_form: str = "raw"  # one of ORIGINAL_FORMS
    original_sha256: str = ""  # SHA-256 of the record as received (hex), when protected
    redacted: str = ""  # the record with its personal data pseudonymised or removed (JSON)

    @property
    def original(self) -> bytes:
        """The rejected record exactly as received (`raw` letters), else what `original_b64`
        holds (ciphertext or nothing: pipeline.privacy.PersonalData.reveal opens it)."""
        return base64.b64decode(self.original_b64, validate=True)

    @classmethod
    def make(
        cls,
        reason: str,
        error: str,
        *,
        original: bytes,
        source_topic: str,
        source_partition: int,
        source_offset: int,
        event_id: str = "",
        received_at: datetime | None = None,
    ) -> DeadLetter:
        """Any dead letter, e.g. `late` from the journey core.

        >>> letter = DeadLetter.make("late", "30 h behind stream time", original=b"{}",
        ...                          source_topic="cx.touchpoints", source_partition=3,
        ...                          source_offset=17)
        >>> (letter.original, DeadLetter.from_dict(letter.to_dict()) == letter)
        (b'{}', True)
        """
        return cls(
            reason=reason,
            error=error,
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
            received_at=_to_ms(received_at or datetime.now(UTC)),
            event_id=event_id,
            original_b64=base64.b64encode(original).decode("ascii"),
        )

    @classmethod
    def from_rejection(
        cls,
        rejected: Rejected,
        *,
        original: bytes,
        source_topic: str,
        source_partition: int,
        source_offset: int,
        received_at: datetime | None = None,
    ) -> DeadLetter:
        return cls.make(
            rejected.reason,
            rejected.error,
            original=original,
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
            event_id=rejected.event_id,
            received_at=received_at,
        )

    def bounded(self, max_bytes: int) -> DeadLetter:
        """This dead letter, or, when its JSON would exceed `max_bytes` (what one Kafka record
        may carry), a copy keeping the first `max_bytes // 2` bytes of the original and saying
        so, with the full length and SHA-256. The full record stays in the source topic at
        `source_partition`/`source_offset`.

        >>> big = DeadLetter.make("too_large", "record is 3000 bytes", original=b"x" * 3000,
        ...                       source_topic="cx.touchpoints", source_partition=1,
        ...                       source_offset=9)
        >>> small = big.bounded(2000)
        >>> (len(small.original), "truncated" in small.error, len(small.to_json()) <= 2000)
        (1000, True, True)
        >>> big.bounded(10_000) is big
        True
        """
        if len(self.original_b64) + len(self.error) + 1024 <= max_bytes:
            return self
        original = self.original
        keep = max_bytes // 2
        digest = hashlib.sha256(original).hexdigest()
        return replace(
            self,
            error=f"{self.error} [original of {len(original)} bytes, sha256 {digest}, "
                  f"truncated to its first {keep} bytes here; the full record is at "
                  f"{self.source_topic} partition {self.source_partition} offset "
                  f"{self.source_offset}]",
            original_b64=base64.b64encode(original[:keep]).decode("ascii"),
        )

    def to_dict(self) -> dict[str, Any]:
        # Every field is an atom: `asdict`'s recursive deep copy of each value cost more than
        # the JSON encoding of the letter, once per dead letter in the entry stage and stage one.
        out = {name: getattr(self, name) for name in _ALL_NAMES}
        out["received_at"] = format_time(self.received_at)
        return out

    def to_json(self) -> bytes:
        """One compact JSON line, as written to the dead-letter topic and dead_letters.jsonl."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeadLetter:
        """Inverse of `to_dict`; ValueError naming the field when a record is malformed."""
        missing = [name for name in FIELDS if name not in data]
        if missing:
            raise ValueError(f"dead letter: missing field(s) {', '.join(missing)}")
        for name in _TEXTS:
            if not isinstance(data[name], str):
                raise ValueError(f"dead letter: {name} must be a string, got {data[name]!r}")
        protection = {name: data.get(name, "") for name in PROTECTION_FIELDS}
        protection["original_form"] = protection["original_form"] or "raw"
        for name, value in protection.items():
            if not isinstance(value, str):
                raise ValueError(f"dead letter: {name} must be a string, got {value!r}")
        if protection["original_form"] not in ORIGINAL_FORMS:
            raise ValueError(f"dead letter: original_form must be one of "
                             f"{', '.join(ORIGINAL_FORMS)}, got {protection['original_form']!r}")
        for name in _INTEGERS:
            if type(data[name]) is not int:
                raise ValueError(f"dead letter: {name} must be an integer, got {data[name]!r}")
        try:
            received_at = datetime.fromisoformat(data["received_at"])
            base64.b64decode(data["original_b64"], validate=True)
        except (ValueError, binascii.Error) as exc:
            raise ValueError(f"dead letter: {exc}") from None
        return cls(
            reason=data["reason"],
            error=data["error"],
            source_topic=data["source_topic"],
            source_partition=data["source_partition"],
            source_offset=data["source_offset"],
            received_at=_to_ms(received_at),
            event_id=data["event_id"],
            original_b64=data["original_b64"],
            **protection,
        )

    @classmethod
    def from_json(cls, data: bytes) -> DeadLetter:
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise ValueError(f"dead letter is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ValueError("dead letter is not a JSON object")
        return cls.from_dict(obj)

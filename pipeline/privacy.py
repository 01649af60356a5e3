"""Personal data: pseudonymise `customer_id`, drop free-text comments, before anything is kept.

Applied to every validated event before the core sees it (stream, replay, backfill), so no
table, topic or file written by peakend holds the raw customer id when a key is configured. The
key comes from `PEAKEND_PSEUDONYMISE_KEY` and is never logged (Settings masks it).

Comments are kept, dropped (the default) or replaced by a keyed hash (`PEAKEND_COMMENTS`).

Dead letters (`seal`): with a pseudonymisation key set, a rejected record is not kept as
received. The letter keeps what an operator needs to fix the producer (reason, error, offsets,
the SHA-256 of the record, a redacted copy: customer_id pseudonymised, comments as configured,
values of fields outside the schema blanked) and the original bytes either encrypted with the
operators' `PEAKEND_DEAD_LETTER_KEY` (AES-256-GCM, bound to the letter's source offsets) or not
at all. `reveal` gives them back to `peakend replay-dead-letters`.

>>> from datetime import datetime, UTC
>>> from pipeline.core.event import Survey, TouchpointEvent
>>> e = TouchpointEvent(event_id="e1", occurred_at=datetime(2026, 1, 1, tzinfo=UTC), producer="p",
...     customer_id="alice@example.com", type="survey", touchpoint="t", channel="web", stage="use",
...     survey=Survey(nps=9, comment="call me on 555"))
>>> scrubbed = PersonalData(key=b"k", keep_comments=False).scrub(e)
>>> scrubbed.customer_id
'c_8647c46883247f15eef1a99f12e62ee41a9c23bfbb22c41119e55ce8d84f3a39'
>>> scrubbed.survey.comment is None, scrubbed.survey.nps
(True, 9)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.contract.dead_letters import MAX_DEAD_LETTER_BYTES, DeadLetter
from pipeline.contract.parser import OPTIONAL, REQUIRED, SIGNAL_FIELDS, SURVEY_FIELDS
from pipeline.core.event import TouchpointEvent
from pipeline.core.followups import CASE_ATTRIBUTE
from pipeline.settings import Settings, dead_letter_key_bytes

REDACTED = "<redacted>"
# What the internal batch records carry instead of a valid record's original when protection is
# on (`carry`): a valid record is UTF-8 JSON, so it never starts with NUL.
CARRIED = b"\x00sealed\x00"
_TOP_FIELDS = frozenset(REQUIRED + OPTIONAL)
_NONCE_BYTES = 12  # AES-GCM's standard nonce
# What `PersonalData.pseudonym` makes of a customer id: the form cases show on the cases topic
# and at the webhook.
PSEUDONYM = re.compile(r"c_[0-9a-f]{64}")


@dataclass(frozen=True)
class PersonalData:
    key: bytes = b""  # empty: customer ids are kept as given
    keep_comments: bool = False
    pseudonymise_comments: bool = False  # with a key: a comment becomes its keyed hash
    dead_letter_key: bytes = field(default=b"", repr=False)  # AES-256 key of dead letters

    @classmethod
    def from_settings(cls, settings: Settings) -> PersonalData:
        policy = settings.comment_policy()
        return cls(settings.pseudonymise_key.encode(), policy == "keep",
                   policy == "pseudonymise", dead_letter_key_bytes(settings.dead_letter_key))

    def comment(self, text: str | None) -> str | None:
        """A survey comment as it may be kept: as given, its keyed hash, or None.

        >>> PersonalData(key=b"k", pseudonymise_comments=True).comment("call me on 555")[:8]
        'h_c2b3a3'
        >>> PersonalData().comment("call me") is None
        True
        """
        if text is None or self.keep_comments:
            return text
        if self.pseudonymise_comments and self.key:
            # Same text, same hash (repeated complaints still group); a separate label keeps a
            # comment's hash from ever equalling a customer's pseudonym.
            return "h_" + hmac.new(self.key, b"comment\0" + text.encode(), hashlib.sha256
                                   ).hexdigest()
        return None

    def pseudonym(self, customer_id: str) -> str:
        """A stable keyed hash: the same customer maps to the same pseudonym, and without the
        key nobody can test a guess."""
        digest = hmac.new(self.key, customer_id.encode(), hashlib.sha256).hexdigest()
        return "c_" + digest

    def scrub(self, event: TouchpointEvent) -> TouchpointEvent:
        changes: dict[str, object] = {}
        if self.key and not closes_case_by_pseudonym(event):
            changes["customer_id"] = self.pseudonym(event.customer_id)
        survey = event.survey
        if not self.keep_comments and survey is not None and survey.comment is not None:
            changes["survey"] = replace(survey, comment=self.comment(survey.comment))
        if not changes:
            return event
        return replace(event, **changes)  # type: ignore[arg-type]

    # -- dead letters ------------------------------------------------------------------------

    def seal(self, letter: DeadLetter, max_bytes: int = MAX_DEAD_LETTER_BYTES, *,
             redact: bool = True) -> DeadLetter:
        """The dead letter as it may be kept and sent: bounded to `max_bytes` and, with a
        pseudonymisation key, without the raw record (see the module doc).

        >>> letter = DeadLetter.make("invalid", "channel: 'fax' is not one of ...",
        ...     original=b'{"customer_id":"alice@example.com","channel":"fax"}',
        ...     source_topic="cx.touchpoints", source_partition=0, source_offset=7)
        >>> PersonalData().seal(letter) == letter
        True
        >>> sealed = PersonalData(key=b"k").seal(letter)
        >>> sealed.original_form, sealed.original_b64, "alice" in sealed.to_json().decode()
        ('dropped', '', False)
        >>> sealed.redacted
        '{"customer_id":"c_8647c46883247f15eef1a99f12e62ee41a9c23bfbb22c41119e55ce8d84f3a39","channel":"fax"}'
        """
        letter = letter.bounded(max_bytes)
        if not self.key or letter.original_form != "raw":
            return letter
        original = letter.original
        if original.startswith(CARRIED):
            return self._sealed_earlier(letter, original)
        redacted = self.redact(original) if redact else ""
        if self.dead_letter_key:
            form, stored = "encrypted", self._encrypt(original, _letter_bound_to(letter))
        else:
            form, stored = "dropped", ""
        if len(stored) + len(redacted) + len(letter.error) + 1024 > max_bytes:
            redacted = ""  # the digest and the source offsets still find the record
        return replace(letter, original_b64=stored, original_form=form,
                       original_sha256=hashlib.sha256(original).hexdigest(), redacted=redacted)

    def carry(self, raw: bytes, source_topic: str, source_partition: int,
              source_offset: int) -> bytes:
        """What the worker's internal batch records carry of a valid record for a later dead
        letter (`late`, `future`, `conflict`, a row ClickHouse refuses): the record itself
        without a key; with one, only its sealed form (ciphertext or nothing, and its digest),
        so the internal topic holds no raw customer id or comment either."""
        if not self.key:
            return raw
        # Runs for every valid event: no letter objects, one cached cipher.
        stored = (self._encrypt(raw, _bound_to(source_topic, source_partition, source_offset))
                  if self.dead_letter_key else "")
        form = "encrypted" if self.dead_letter_key else "dropped"
        digest = hashlib.sha256(raw).hexdigest()
        return CARRIED + f'["{form}","{stored}","{digest}"]'.encode()

    def _sealed_earlier(self, letter: DeadLetter, carried: bytes) -> DeadLetter:
        form, stored, digest = json.loads(carried[len(CARRIED):])
        # The validated event is in the letter's own fields already; its redacted copy would
        # need the raw record, which this stage never had.
        return replace(letter, original_b64=stored, original_form=form, original_sha256=digest)

    def reveal(self, letter: DeadLetter) -> bytes:
        """The record as received, for `peakend replay-dead-letters`; ValueError saying why not
        (dropped, no key, wrong key)."""
        if letter.original_form == "raw":
            return letter.original
        if letter.original_form == "dropped":
            raise ValueError("its original was not kept (pseudonymisation on, no "
                             "PEAKEND_DEAD_LETTER_KEY when it was written); fix the producer "
                             "and re-send from there")
        if not self.dead_letter_key:
            raise ValueError("its original is encrypted: set PEAKEND_DEAD_LETTER_KEY to the key "
                             "it was written with")
        from cryptography.exceptions import InvalidTag

        sealed = letter.original
        try:
            opened: bytes = _cipher(self.dead_letter_key).decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _letter_bound_to(letter))
            return opened
        except (InvalidTag, ValueError):
            raise ValueError("its original does not decrypt with PEAKEND_DEAD_LETTER_KEY (another "
                             "key, or the letter was altered)") from None

    def _encrypt(self, original: bytes, bound_to: bytes) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = _cipher(self.dead_letter_key).encrypt(nonce, original, bound_to)
        return base64.b64encode(nonce + sealed).decode("ascii")

    def redact(self, original: bytes) -> str:
        """The record as compact JSON without personal data, or '' when it is no JSON object:
        customer_id pseudonymised, the comment as `comment` says, every value outside the
        schema's fields blanked (a misspelt `customerid` may hold an id), the field names kept
        (they are what the producer got wrong)."""
        try:
            document = json.loads(original)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return ""
        if not isinstance(document, dict):
            return ""
        out: dict[str, Any] = {}
        for name, value in document.items():
            if name not in _TOP_FIELDS:
                out[name] = REDACTED
            elif name == "customer_id":
                out[name] = self.pseudonym(value) if isinstance(value, str) else REDACTED
            elif name == "survey":
                out[name] = self._redact_survey(value)
            elif name == "signals":
                out[name] = _known_only(value, SIGNAL_FIELDS)
            else:
                out[name] = value
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))

    def _redact_survey(self, value: Any) -> Any:
        survey = _known_only(value, SURVEY_FIELDS)
        if isinstance(survey, dict) and "comment" in survey:
            text = survey["comment"]
            kept = self.comment(text) if isinstance(text, str) else None
            if kept is None:
                del survey["comment"]
            else:
                survey["comment"] = kept
        return survey


def closes_case_by_pseudonym(event: TouchpointEvent) -> bool:
    """An outcome event that closes a follow-up case and names the customer by the pseudonym the
    case carries (docs/followups.md, "Closing the loop"): the ticketing system got the case from
    the cases topic or the webhook, where the customer is that pseudonym, and may know no other
    id. Hashed again it would name another customer and never close the case, so it is kept as
    it is. Any other event, or a closing event with another id, is pseudonymised as usual.

    >>> from datetime import datetime, UTC
    >>> def outcome(customer_id: str) -> TouchpointEvent:
    ...     return TouchpointEvent(event_id="x", occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    ...         producer="ticketing", customer_id=customer_id, type="outcome", outcome="other",
    ...         touchpoint="cx_callback", channel="phone", stage="after_sales",
    ...         attributes={"followup_case_id": "fu-3f0c2b6c1f3e9a1d77b0"})
    >>> [closes_case_by_pseudonym(outcome(c)) for c in ("c_" + "ab" * 32, "c-9")]
    [True, False]
    """
    return (event.type == "outcome" and CASE_ATTRIBUTE in event.attributes
            and PSEUDONYM.fullmatch(event.customer_id) is not None)


def _known_only(value: Any, names: tuple[str, ...]) -> Any:
    """A nested object with the values of unknown fields blanked; anything else blanked."""
    if not isinstance(value, dict):
        return REDACTED
    return {k: (v if k in names else REDACTED) for k, v in value.items()}


def _bound_to(source_topic: str, source_partition: int, source_offset: int) -> bytes:
    """Associated data of a letter's ciphertext: it opens only in the letter it was made for."""
    return f"{source_topic}\0{source_partition}\0{source_offset}".encode()


def _letter_bound_to(letter: DeadLetter) -> bytes:
    return _bound_to(letter.source_topic, letter.source_partition, letter.source_offset)


@functools.lru_cache(maxsize=4)
def _cipher(key: bytes) -> Any:
    """AES-256-GCM with `key` (built once: the entry stage encrypts every valid event)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)

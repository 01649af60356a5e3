"""Personal data: pseudonymise `customer_id`, drop free-text comments, before anything is kept.

Applied to every validated event before the core sees it (stream, replay, backfill), so no
table, topic or file written by peakend holds the raw customer id when a key is configured. The
key comes from `PEAKEND_PSEUDONYMISE_KEY` and is never logged (Settings masks it).

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

import hashlib
import hmac
from dataclasses import dataclass, replace

from pipeline.core.event import TouchpointEvent
from pipeline.settings import Settings


@dataclass(frozen=True)
class PersonalData:
    key: bytes = b""  # empty: customer ids are kept as given
    keep_comments: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> PersonalData:
        return cls(settings.pseudonymise_key.encode(), settings.keep_comments)

    def pseudonym(self, customer_id: str) -> str:
        """A stable keyed hash: the same customer maps to the same pseudonym, and without the
        key nobody can test a guess."""
        digest = hmac.new(self.key, customer_id.encode(), hashlib.sha256).hexdigest()
        return "c_" + digest

    def scrub(self, event: TouchpointEvent) -> TouchpointEvent:
        changes: dict[str, object] = {}
        if self.key:
            changes["customer_id"] = self.pseudonym(event.customer_id)
        survey = event.survey
        if not self.keep_comments and survey is not None and survey.comment is not None:
            changes["survey"] = replace(survey, comment=None)
        if not changes:
            return event
        return replace(event, **changes)  # type: ignore[arg-type]

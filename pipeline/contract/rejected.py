"""Why an input record was turned away: a reason code for machines and a message for people."""

from __future__ import annotations

from typing import Final

# Reason codes of the contract. Dead letters may also carry reasons from later stages (`late`).
NOT_UTF8: Final = "not_utf8"
NOT_JSON: Final = "not_json"
NOT_OBJECT: Final = "not_object"
INVALID: Final = "invalid"
TOO_LARGE: Final = "too_large"
REASONS: Final = (NOT_UTF8, NOT_JSON, NOT_OBJECT, INVALID, TOO_LARGE)


class Rejected(Exception):
    """An input record that does not satisfy touchpoint schema v1.

    `reason` is one of `REASONS`; `error` names the field path and the rule it broke;
    `event_id` is the record's event_id when it could be read, else "".

    >>> str(Rejected("invalid", "survey.nps: 11 is above the maximum 10", event_id="e1"))
    'invalid: survey.nps: 11 is above the maximum 10'
    """

    def __init__(self, reason: str, error: str, event_id: str = "") -> None:
        super().__init__(reason, error, event_id)
        self.reason = reason
        self.error = error
        self.event_id = event_id

    def __str__(self) -> str:
        return f"{self.reason}: {self.error}"

    def __repr__(self) -> str:
        return f"Rejected({self.reason!r}, {self.error!r}, event_id={self.event_id!r})"

"""The event contract (schema v1): parse and validate input records, encode events back.

`schemas/touchpoint-event.v1.json` is the published contract; this package is its fast
implementation and must agree with it verdict for verdict (tests/unit/contract).
"""

from pipeline.contract.decoding import DEFAULT_MAX_BYTES, decode_json
from pipeline.contract.encode import event_from_dict, event_to_dict, event_to_json
from pipeline.contract.fast import parse_valid
from pipeline.contract.parser import parse_dict, parse_strict
from pipeline.contract.rejected import REASONS, Rejected
from pipeline.core.event import TouchpointEvent


def parse_event(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> TouchpointEvent:
    """Bytes of one record -> the validated event, or `Rejected` naming the first broken rule.

    The fast path (`fast.parse_valid`) returns the event of a valid record; whatever it
    declines, the strict parser (`parser.parse_strict`) decides: the same events and verdicts as
    the strict parser alone (tests/unit/contract/test_fast_path.py).

    >>> parse_event(b'[1]').reason
    Traceback (most recent call last):
    ...
    pipeline.contract.rejected.Rejected: not_object: the record is an array, not a JSON object \
(send exactly one event object per record)
    """
    event = parse_valid(data, max_bytes)
    return parse_strict(data, max_bytes=max_bytes) if event is None else event


__all__ = [
    "REASONS",
    "Rejected",
    "decode_json",
    "event_from_dict",
    "event_to_dict",
    "event_to_json",
    "parse_dict",
    "parse_event",
]

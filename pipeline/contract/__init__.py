"""The event contract (schema v1): parse and validate input records, encode events back.

`schemas/touchpoint-event.v1.json` is the published contract; this package is its fast
implementation and must agree with it verdict for verdict (tests/unit/contract).
"""

from pipeline.contract.decoding import decode_json
from pipeline.contract.encode import event_from_dict, event_to_dict, event_to_json
from pipeline.contract.parser import parse_dict, parse_event
from pipeline.contract.rejected import REASONS, Rejected

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

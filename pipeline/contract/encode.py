"""TouchpointEvent -> schema-v1 JSON, the inverse of the parser.

Fields left unset are omitted rather than written as null: null is not a valid value for any
optional field in v1. Producers that hold the original bytes should send those instead
(TouchpointProducer does), which keeps records byte-for-byte as written. The dict form and its
inverse live in the core (`pipeline.core.eventdict`, compiled: every event goes through them
in the entry stage, stage one and the sink).
"""

from __future__ import annotations

import json

from pipeline.core.event import TouchpointEvent
from pipeline.core.eventdict import event_from_dict, event_to_dict, format_occurred_at

__all__ = ["event_from_dict", "event_to_dict", "event_to_json", "format_occurred_at"]


def event_to_json(event: TouchpointEvent) -> bytes:
    """Compact UTF-8 JSON of `event_to_dict`, as sent to Kafka."""
    return json.dumps(
        event_to_dict(event), ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")

"""How soon a consumer group's reader sees again a topic the broker did not list for a moment.

A group's leader assigns the partitions of the topics it finds in its cluster metadata. Just
after a broker restart the broker answers metadata requests before it has loaded its topics:
a rebalance then (every member's heartbeat failed while the broker was down) assigns nothing
of the topics it did not list (Faust's assignor logs "Ignoring missing topic"), and the group
stays stable with those partitions read by no one. aiokafka rejoins when the metadata of a
subscribed topic changes, but it refreshes metadata only every `metadata_max_age_ms`, 5 min by
default: after a broker restart under load, stage two's group (its own since
`PEAKEND_STAGE_TWO_PROCESS`) read nothing for 5 min (`tests/integration/test_faults.py`, the
broker restart and SIGKILL: 320-335 s each, 2026-12-06). Every consumer group of the pipeline
asks every 5 s instead: one small request per reader, and such a gap lasts seconds.
"""

from __future__ import annotations

METADATA_MAX_AGE_MS = 5_000

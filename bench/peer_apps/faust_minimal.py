"""A minimal Faust app doing the peers' journey job (bench/peers.py), per-event loop.

For each touchpoint record: `json.loads`, the journey's dict in a RocksDB-backed Table (one
changelog record per update), one output record. No validation, no core: what Faust itself costs
per record. Configured by PEER_BOOTSTRAP, PEER_INPUT, PEER_OUTPUT, PEER_GROUP, PEER_DATA_DIR and
PEER_PARTITIONS; run as `python bench/peer_apps/faust_minimal.py worker -l warn`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import faust

env = os.environ
app = faust.App(
    env["PEER_GROUP"], broker=f"kafka://{env['PEER_BOOTSTRAP']}", store="rocksdb://",
    datadir=env["PEER_DATA_DIR"], topic_partitions=int(env["PEER_PARTITIONS"]),
    consumer_auto_offset_reset="earliest", web_enabled=False,
)
source = app.topic(env["PEER_INPUT"], key_serializer="raw", value_serializer="raw")
output = app.topic(env["PEER_OUTPUT"], key_serializer="raw", value_serializer="raw")
journeys = app.Table("journeys", default=None)  # keys raw bytes, values JSON (the defaults)


@app.agent(source)
async def follow(stream: Any) -> None:
    async for event in stream.events():
        data = json.loads(event.value)
        state = journeys.get(event.key) or {"events": 0, "first": data["occurred_at"]}
        state["events"] += 1
        state["last"] = data["occurred_at"]
        journeys[event.key] = state
        await output.send(key=event.key, value=json.dumps(state).encode())


if __name__ == "__main__":
    app.main()

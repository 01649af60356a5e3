"""The peers' journey job (bench/peers.py) in Quix Streams: run by its own virtualenv.

Quix Streams is a benchmark peer, not a dependency of peakend: `bench/peers.py` installs it into
a virtualenv of its own. The job is the Faust peer's (`faust_minimal.py`): `json.loads`, the
journey's dict in RocksDB state (keyed by the record key), one output record per input record.
Configured by the same PEER_* variables.
"""

from __future__ import annotations

import json
import os
from typing import Any

from quixstreams import Application

env = os.environ


def follow(value: dict[str, Any], state: Any) -> bytes:
    journey = state.get("journey") or {"events": 0, "first": value["occurred_at"]}
    journey["events"] += 1
    journey["last"] = value["occurred_at"]
    state.set("journey", journey)
    return json.dumps(journey).encode()


def main() -> None:
    app = Application(broker_address=env["PEER_BOOTSTRAP"], consumer_group=env["PEER_GROUP"],
                      auto_offset_reset="earliest", state_dir=env["PEER_DATA_DIR"],
                      loglevel="WARNING")
    source = app.topic(env["PEER_INPUT"], key_deserializer="bytes", value_deserializer="json")
    output = app.topic(env["PEER_OUTPUT"], key_serializer="bytes", value_serializer="bytes")
    app.dataframe(source).apply(follow, stateful=True).to_topic(output)
    app.run()


if __name__ == "__main__":
    main()

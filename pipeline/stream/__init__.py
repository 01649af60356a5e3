"""The streaming adapters: stage one (journeys, per input partition), stage two (segments), the
Faust wiring (pipeline.app) and the ClickHouse sink (pipeline.storage.sink)."""

"""The streaming adapters: stage one (journeys, per input partition), stage two (segments), the
Faust wiring (pipeline.app) and the ClickHouse sink (pipeline.storage.sink)."""

from pipeline.core_build import extend_path

# the compiled build of this package's pure modules, when current (pipeline/core_build.py)
__path__ = extend_path(__path__, __name__)

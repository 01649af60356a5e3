"""ClickHouse storage: records -> rows (tables.py), the sink, migrations, the engine interface."""

from pipeline.core_build import extend_path

# the compiled build of this package's pure modules, when current (pipeline/core_build.py)
__path__ = extend_path(__path__, __name__)

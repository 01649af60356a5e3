"""peakend: a streaming customer-experience pipeline (peak-end journeys, NPS/CES/CSAT windows)."""

from pipeline import core as _core
from pipeline import core_build as _core_build

__version__ = "0.1.0"

# Before any module of the core is imported: the interpreted sources or the current mypyc build.
_core_build.activate(_core)

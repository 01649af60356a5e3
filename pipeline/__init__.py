"""peakend: a streaming customer-experience pipeline (peak-end journeys, NPS/CES/CSAT windows)."""

__version__ = "0.1.0"

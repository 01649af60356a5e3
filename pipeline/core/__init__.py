"""The pure domain core: no Faust, Kafka or ClickHouse imports here, and importing it reads no
environment variable and no file.

The stream (Faust agents), the batch jobs and `peakend replay` all call this package, so the same
events give the same numbers wherever they are processed. Whether its modules run as the
interpreted sources or as the mypyc build is decided outside it (`pipeline.core_build`).
"""

from __future__ import annotations

from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent  # where the sources are, compiled or not

"""The pure domain core: no Faust, Kafka or ClickHouse imports here.

The stream (Faust agents), the batch jobs and `peakend replay` all call this package, so the same
events give the same numbers wherever they are processed.
"""

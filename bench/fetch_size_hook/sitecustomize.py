"""Try another fetch size for the stream's readers without editing the worker (issue 15,
docs/streaming.md "sixteenth round"): put this directory first on PYTHONPATH and set
PEAKEND_BENCH_STREAM_FETCH_MIN_BYTES; every process of the run (the worker, its entry stage)
then uses that size as `pipeline.kafka_fetch.STREAM_FETCH_MIN_BYTES`:

    PYTHONPATH=bench/fetch_size_hook PEAKEND_BENCH_STREAM_FETCH_MIN_BYTES=65536 \\
        .venv/bin/python -m bench.bench_pipeline --events 150000 --rates 5000

Alternate the sizes (A B B A): this machine's speed drifts between runs.
"""

import os
import sys

_size = os.environ.get("PEAKEND_BENCH_STREAM_FETCH_MIN_BYTES")
if _size:
    import pipeline.kafka_fetch

    if not _size.isdigit() or int(_size) < 1:
        # (SystemExit while `site` imports this module would print a traceback)
        sys.stderr.write(f"PEAKEND_BENCH_STREAM_FETCH_MIN_BYTES={_size!r}: expected a whole "
                         "number of bytes, at least 1\n")
        os._exit(2)
    pipeline.kafka_fetch.STREAM_FETCH_MIN_BYTES = int(_size)

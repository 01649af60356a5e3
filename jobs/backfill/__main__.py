"""`python -m jobs.backfill ...`: the same as `peakend backfill ...`."""

import sys

from pipeline.cli import main

sys.exit(main(["backfill", *sys.argv[1:]]))

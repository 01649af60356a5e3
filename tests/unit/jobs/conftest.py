import sys
from pathlib import Path

# backfill_util.py sits beside the tests; make it importable by plain name (as tests/unit/core).
sys.path.insert(0, str(Path(__file__).parent))

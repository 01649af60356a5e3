import sys
from pathlib import Path

# scenarios.py sits beside the tests; make it importable by plain name (as tests/unit/contract).
sys.path.insert(0, str(Path(__file__).parent))

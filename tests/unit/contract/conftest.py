import sys
from pathlib import Path

# The corpus and oracle modules sit beside the tests; make them importable by plain name.
sys.path.insert(0, str(Path(__file__).parent))

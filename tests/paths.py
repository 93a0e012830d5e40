"""Where the tests find the data sets' real split lists: `tests/data/lists` in the checkout.

The lists are committed (tests/data/lists/README.md says where they come from), so a clone with
nothing beside it runs every reader test; `tests/test_self_contained.py` keeps it that way.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_LISTS = REPO / "tests" / "data" / "lists"

"""Where the tests find the data sets' real split lists: `shared/data` beside the checkout.

CI clones the repository into another folder with a copy of shared/ beside it, so the path is taken
relative to this file, never as an absolute one.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

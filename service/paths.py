"""Default places the service finds outside the working directory: the demo model its
installation carries, and the user's cache."""

import os
import sys
from pathlib import Path

DEMO_MODEL = Path("artifacts/demo")
_BUNDLED = (
    Path(__file__).resolve().parent.parent / DEMO_MODEL,  # a checkout or an editable install
    Path(sys.prefix) / "share" / "lumos" / "demo",  # a wheel's data files
)


def user_cache() -> Path:
    """The XDG base directory for caches: outside any checkout, kept across runs."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def bundled_model(path: Path) -> Path:
    """`path`, unless it is the default and not here: then the demo model the installation
    carries, so that `lumos` works from any directory."""
    if path != DEMO_MODEL or path.exists():
        return path
    return next((found for found in _BUNDLED if (found / "manifest.json").is_file()), path)

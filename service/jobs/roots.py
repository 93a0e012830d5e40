"""The directories a job may touch, and how paths in its log and errors are shown.

A job never names where the trainer writes or which data it reads (the planner pins those); the
files it may name (`pretrained` weights) lie under the artifacts or models roots. Everything a job
shows (log lines, errors) has its server paths rewritten relative to a named root, `<runs>/...`,
so a client reading a job learns nothing of the server's file system.
"""

import sys
from pathlib import Path

from service.jobs.records import JobError
from service.settings import Settings

_INSTALL = Path(__file__).resolve().parents[2]
"""The checkout or site-packages directory the service runs from."""


class Roots:
    """Named roots from the settings: `readable` ones a job may name files under, and every one
    whose absolute path is shown by name instead."""

    def __init__(self, settings: Settings) -> None:
        self.readable = {
            "artifacts": settings.artifacts_root.resolve(),
            "models": settings.model_root.resolve(),
        }
        shown = {
            **self.readable,
            "runs": settings.runs_dir.resolve(),
            "data": settings.data_root.resolve(),
            "configs": settings.train_configs.resolve(),
            "python": Path(sys.prefix).resolve(),
            "lumos": _INSTALL,
            "cwd": Path.cwd().resolve(),
        }
        # Longest first, so a root inside another (runs/ under cwd) is named by the inner one.
        self._shown = sorted(shown.items(), key=lambda item: len(str(item[1])), reverse=True)

    def confine(self, key: str, value: Path) -> Path:
        """`value` resolved (symlinks included) if it lies under a readable root; the same refusal
        otherwise, whether or not it exists, so the answer says nothing about other paths."""
        path = (value if value.is_absolute() else Path.cwd() / value).resolve()
        if any(path.is_relative_to(root) for root in self.readable.values()):
            return path
        names = " or ".join(f"<{name}>" for name in self.readable)
        raise JobError("path_outside_roots", f"{key} must name a file under {names}")

    def relative(self, text: str) -> str:
        """`text` with every root's absolute path replaced by its name: `<runs>/abc/teacher`."""
        for name, root in self._shown:
            if str(root) != "/":
                text = text.replace(str(root), f"<{name}>")
        return text

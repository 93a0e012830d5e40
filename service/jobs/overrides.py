"""Job overrides checked as a schema diff against the config the trainer pins.

Comparing override keys with a list of reserved names misses every other spelling of the same
change: a whole section (`run: {...}`, `data: {...}`), a stage's section in a pipeline, `all.`.
So the check compares configs instead: the stage's config as the trainer pins it (its YAML, this
job's data set and run directory) with the same config after the overrides, leaf by leaf. A
reserved leaf that differs is refused, wherever the change came from; any other path-valued leaf
that differs must lie under a readable root.
"""

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from service.jobs.records import JobError
from service.jobs.roots import Roots

RESERVED = frozenset({"run.output_dir", "data.root", "teacher", "init", "export_dir", "version"})
"""Where the trainer reads and writes, and what it names: never a job's to choose."""
CLEARABLE = frozenset({"teacher", "init"})
"""Reserved leaves a job may still clear (start from scratch): that names no file."""


def leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"run": {"output_dir": p}} -> {"run.output_dir": p}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(leaves(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_diff(stage: str, pinned: BaseModel, configured: BaseModel, roots: Roots) -> None:
    """Raise JobError unless `configured` differs from `pinned` only where a job may change it."""
    before, after = leaves(pinned.model_dump()), leaves(configured.model_dump())
    for key in sorted(before.keys() | after.keys()):
        value = after.get(key)
        if before.get(key) == value:
            continue
        if key in RESERVED and not (key in CLEARABLE and value is None):
            raise JobError("reserved_override", f"{stage}: {key} is the trainer's to set")
        if isinstance(value, Path):
            roots.confine(f"{stage}: {key}", value)

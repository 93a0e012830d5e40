"""Job overrides checked as a schema diff against the config the trainer pins.

Comparing override keys with a list of reserved names misses every other spelling of the same
change: a whole section (`run: {...}`, `data: {...}`), a stage's section in a pipeline, `all.`.
So the check works on structure, twice. The overrides are expanded to the leaves they write (a
section value becomes its leaves), and a reserved leaf written is refused, even when the value
written equals what the trainer would pin. Then the stage's config as the trainer pins it (its
YAML, this job's data set and run directory) is compared with the same config after the
overrides, leaf by leaf: a reserved leaf that differs is refused, wherever the change came from,
and any other path-valued leaf that differs must lie under a readable root.
"""

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from service.jobs.records import JobError
from service.jobs.roots import Roots
from training.config import apply_overrides

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


def _refuse_reserved(stage: str, key: str, value: Any) -> None:
    """Refuse a write to `key` if it is, holds or lies inside a reserved leaf."""
    hits = [r for r in RESERVED if key == r or r.startswith(f"{key}.") or key.startswith(f"{r}.")]
    if hits and not (key in CLEARABLE and value is None):
        raise JobError("reserved_override", f"{stage}: {', '.join(sorted(hits))} is the trainer's")


def check_overrides(
    stage: str, items: list[str], pinned: BaseModel, configured: BaseModel, roots: Roots
) -> None:
    """Raise JobError unless the `KEY=VALUE` overrides `items`, which turned `pinned` into
    `configured`, write and change only what a job may."""
    for key, value in leaves(apply_overrides({}, items)).items():
        _refuse_reserved(stage, key, value)
    before, after = leaves(pinned.model_dump()), leaves(configured.model_dump())
    for key in sorted(before.keys() | after.keys()):
        value = after.get(key)
        if before.get(key) == value:
            continue
        _refuse_reserved(stage, key, value)
        if isinstance(value, Path):
            roots.confine(f"{stage}: {key}", value)

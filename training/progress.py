"""How far a training stage has got, as a typed file the service reads while a job runs.

The training engine rewrites `progress.json` in the stage's output directory after every logged
step and epoch (atomically: a reader never sees half a file); the job runner reads it to fill the
job record. The file is this schema, not a set of keys in metrics.jsonl that both sides happen to
agree on, and it imports no torch, so the control plane reads it without the training stack.
"""

import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROGRESS = "progress.json"


class StageProgress(BaseModel):
    # A diverging loss is NaN or infinite: written as such, not as null (which reads back as no
    # float at all and would make the whole file unreadable).
    model_config = ConfigDict(ser_json_inf_nan="constants")

    stage: str
    epochs: int = Field(ge=1)
    """Epochs the stage will run."""
    done: int = Field(ge=0)
    """Epochs finished (validated, checkpointed)."""
    step: int = Field(0, ge=0)
    """Optimizer steps taken."""
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    """The latest values by split: `train` (loss, lr), `val` or `epoch` (after each epoch), `test`
    (once, after the last epoch, of the selected one)."""
    updated: datetime = Field(default_factory=lambda: datetime.now(UTC))


def write_progress(directory: Path, progress: StageProgress) -> None:
    path = directory / PROGRESS
    tmp = path.with_name(f".{PROGRESS}.tmp")
    tmp.write_text(progress.model_dump_json())
    os.replace(tmp, path)


def read_progress(path: Path) -> StageProgress | None:
    """The progress at `path`; None while the stage has not written one."""
    try:
        return StageProgress.model_validate_json(path.read_text())
    except (FileNotFoundError, ValidationError):
        return None

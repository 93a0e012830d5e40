"""What a job is: the request a client makes, the record the service keeps, and its states."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.errors import ServiceError

Stage = Literal["teacher", "ssl", "distill", "eval", "pipeline"]


class JobState(StrEnum):
    """queued -> running -> succeeded, failed or cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobError(ServiceError):
    """A job request refused (bad data set, bad overrides, unknown job), with a reason code."""


class JobRequest(BaseModel):
    """A training job to run: a stage of the recipe on a data set, with checked overrides."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "stage": "pipeline",
                    "dataset": "synth",
                    "overrides": {"all.optim.epochs": 1},
                    "activate": True,
                }
            ]
        },
    )

    stage: Stage = Field(
        description="`pipeline` (teacher, ssl, distill, eval), one of those stages, or `eval`."
    )
    dataset: str = Field(description="A data set's directory name under the data root.")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Config values by dotted key (e.g. `optim.epochs: 1`), checked against the "
        "stage's schema and the config the trainer pins before the job is queued.",
    )
    model: str | None = Field(
        None, description="Model version to evaluate (stage `eval` only; default: the active one)."
    )
    activate: bool = Field(False, description="Activate the model version the job registers.")


class Job(JobRequest):
    """A training job's record: what was asked, where it is, and what it produced."""

    id: str = Field(description="The job's id.")
    state: JobState = Field(JobState.QUEUED, description="Where the job is in its life.")
    created: datetime = Field(
        default_factory=lambda: datetime.now(UTC), description="When it was submitted."
    )
    started: datetime | None = Field(None, description="When a trainer started it.")
    finished: datetime | None = Field(None, description="When it ended, however it ended.")
    progress: float = Field(0.0, description="Fraction of the job done, 0 to 1.")
    step: str | None = Field(None, description="What runs now, e.g. `ssl epoch 2/3`.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Latest metrics reported.")
    log_tail: list[str] = Field(
        default_factory=list, description="The log's last lines, paths relative to their roots."
    )
    error: str | None = Field(None, description="Why it failed, in words.")
    model_version: str | None = Field(None, description="The model version the job registered.")
    worker: str | None = Field(None, description="The trainer that runs or ran the job.")
    cancel_requested: bool = Field(False, description="A cancel was asked for.")

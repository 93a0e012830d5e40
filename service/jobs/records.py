"""What a job is: the request a client makes, the record the service keeps, and its states."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.errors import ServiceError

Stage = Literal["teacher", "ssl", "distill", "eval", "pipeline"]


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobError(ServiceError):
    """A job request refused (bad data set, bad overrides, unknown job), with a reason code."""


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Stage
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
    id: str
    state: JobState = JobState.QUEUED
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    started: datetime | None = None
    finished: datetime | None = None
    progress: float = Field(0.0, description="Fraction of the job done, 0 to 1.")
    step: str | None = Field(None, description="What runs now, e.g. `ssl epoch 2/3`.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Latest metrics reported.")
    log_tail: list[str] = Field(
        default_factory=list, description="The log's last lines, paths relative to their roots."
    )
    error: str | None = None
    model_version: str | None = Field(None, description="The model version the job registered.")
    worker: str | None = Field(None, description="The trainer that runs or ran the job.")
    cancel_requested: bool = False

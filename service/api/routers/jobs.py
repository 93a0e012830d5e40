"""Training jobs: submit, list, follow and cancel; a trainer process runs them."""

import uuid

from fastapi import APIRouter, Response

from service.api.deps import JobsDep, PlannerDep
from service.api.errors import PROBLEM_RESPONSE
from service.jobs.records import Job, JobError, JobRequest, JobState
from service.jobs.store import cancel, reap

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=201, responses={404: PROBLEM_RESPONSE, 422: PROBLEM_RESPONSE})
def submit_job(request: JobRequest, store: JobsDep, planner: PlannerDep) -> Job:
    """Queue a training stage on a named data set; the request is fully checked first."""
    planner.validate(request)
    job = Job(id=uuid.uuid4().hex[:12], **request.model_dump())
    store.add(job)
    return job


@router.get("")
def list_jobs(store: JobsDep) -> list[Job]:
    return reap(store, store.list())


@router.get("/{job_id}", responses={404: PROBLEM_RESPONSE})
def get_job(job_id: str, store: JobsDep) -> Job:
    """State, progress, metrics so far and the tail of the job's log."""
    job = store.get(job_id)
    if job is None:
        raise JobError("unknown_job", f"no job {job_id!r}")
    return reap(store, [job])[0]


@router.delete(
    "/{job_id}", responses={202: {"model": Job}, 404: PROBLEM_RESPONSE, 409: PROBLEM_RESPONSE}
)
def cancel_job(job_id: str, store: JobsDep, response: Response) -> Job:
    """A queued job is cancelled at once (200); a running one is stopped by its trainer (202)."""
    job = cancel(store, job_id)
    if job.state != JobState.CANCELLED:
        response.status_code = 202
    return job

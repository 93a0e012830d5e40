"""Upload a video, get its actions: per clip and for the whole video.

An upload is vetted before any work (size while it streams in, then container, video stream,
duration, first frames), decoded from its own temporary file by the same ingest code that serves
cameras, and its clips go through the shared queue and inference workers. Short videos are
answered in the request; `?async=true`, or a video longer than the synchronous limit, gets 202
and an id to poll.
"""

import asyncio
import logging
import statistics
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import av
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from redis.exceptions import RedisError

from service.api.deps import RuntimeDep, TasksDep, refuse_when_overloaded
from service.api.errors import PROBLEM_RESPONSE, Problem, store_unavailable
from service.api.tasks import ClassifyTasks
from service.api.uploads import (
    UPLOAD_BODY,
    UploadLimits,
    VideoInfo,
    probe_video,
    receive_upload,
    undecodable,
)
from service.decode import LimitExceeded
from service.events.segments import Segment
from service.queue.base import ClipResult, Summary
from service.runtime import NoActiveModel, Runtime, VideoResult

log = logging.getLogger(__name__)

router = APIRouter(prefix="/classify", tags=["classify"])


class IlluminationStats(BaseModel):
    """The clips' luma statistics (0-255): how dark and how noisy the video was."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    luma_mean: float
    """Mean luma over all clips."""
    luma_min: float
    """Mean luma of the darkest clip."""
    luma_max: float
    """Mean luma of the brightest clip."""
    noise_sigma: float
    """Mean estimated sensor-noise sigma."""


class Timings(BaseModel):
    """Seconds: receiving the upload, vetting it, and decoding + queueing + inference."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    upload: float
    """Receiving the body."""
    probe: float
    """Vetting the container and its video stream."""
    classify: float
    """Decoding, queueing and inference of every clip."""
    total: float
    """The whole request."""
    queue_wait_mean: float
    """Mean time a clip waited in the queue."""
    inference_mean: float
    """Mean time of the batched forward pass a clip was part of."""


class Classification(BaseModel):
    """An uploaded video's answer: the whole-video verdict, every clip's, and how it went."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """The upload's id (also its `stream` in the clips)."""
    status: Literal["done"] = "done"
    """Always `done` here; see `UploadTask` for the other states."""
    model_version: str | None
    """The model version that classified the clips (null: no clip was classified)."""
    clip_count: int
    """Clips classified."""
    gated: int
    """Clips the darkness gate skipped; they have no result."""
    video: Summary
    """Whole-video top-k: the mean of the clips' scores."""
    segments: list[Segment]
    """Runs of clips with one top label: a short action the mean hides shows here."""
    clips: list[ClipResult]
    """Each clip's result, in order."""
    illumination: IlluminationStats | None
    """Null when there were no clips."""
    timings: Timings
    """Where the time went."""
    info: VideoInfo
    """What the probe found in the file."""


class UploadTask(BaseModel):
    """An asynchronous upload not (or not successfully) answered: poll `poll` for its answer."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """The task's id."""
    status: Literal["pending", "failed"]
    """`pending` while it runs; `failed` with `problem` when it could not be classified."""
    poll: str
    """Where to ask again: `GET` it until the answer is a `Classification`."""
    problem: dict[str, Any] | None = None
    """The problem details of a failed task."""


_ERRORS = {code: PROBLEM_RESPONSE for code in (400, 413, 415, 422, 503, 504)}


def _answer(
    task_id: str, result: VideoResult, info: VideoInfo, timings: dict[str, float]
) -> Classification:
    scored = [c for c in result.clips if not c.error]
    lumas = [c.illumination.luma_mean for c in result.clips]
    illumination = (
        IlluminationStats(
            luma_mean=round(statistics.fmean(lumas), 3),
            luma_min=min(lumas),
            luma_max=max(lumas),
            noise_sigma=round(
                statistics.fmean(c.illumination.noise_sigma for c in result.clips), 3
            ),
        )
        if lumas
        else None
    )
    return Classification(
        id=task_id,
        model_version=result.summary.model_versions[-1] if result.summary.model_versions else None,
        clip_count=len(result.clips),
        gated=result.gated,
        video=result.summary,
        segments=result.segments,
        clips=result.clips,
        illumination=illumination,
        timings=Timings(
            **timings,
            queue_wait_mean=statistics.fmean(c.latency.queue_wait for c in scored) if scored else 0,
            inference_mean=statistics.fmean(c.latency.inference for c in scored) if scored else 0,
        ),
        info=info,
    )


async def _classify(
    runtime: Runtime, task_id: str, path: Path, info: VideoInfo, timings: dict[str, float]
) -> Classification:
    """Run the upload through ingest and inference; the temporary file is deleted afterwards."""
    started = time.perf_counter()
    timeout = max(60.0, 10 * info.duration)
    try:
        result = await runtime.classify(path, stream=task_id, timeout=timeout)
    except NoActiveModel as exc:
        raise Problem(503, "no_model", str(exc)) from exc
    except TimeoutError as exc:
        raise Problem(504, "inference_timeout", f"no results within {timeout:.0f} s") from exc
    except LimitExceeded as exc:  # a frame or the timeline beyond what the header declared
        raise Problem(422, exc.reason, str(exc)) from exc
    except (av.FFmpegError, ValueError) as exc:  # passed the probe, failed further in
        raise undecodable(exc) from exc
    finally:
        path.unlink(missing_ok=True)
    timings["classify"] = time.perf_counter() - started
    timings["total"] = timings["upload"] + timings["probe"] + timings["classify"]
    return _answer(task_id, result, info, timings)


async def _classify_later(
    runtime: Runtime,
    tasks: ClassifyTasks,
    task_id: str,
    path: Path,
    info: VideoInfo,
    timings: dict[str, float],
) -> None:
    record: BaseModel
    try:
        record = await _classify(runtime, task_id, path, info, timings)
    except Exception as exc:  # a bug too must reach the poller as a failure, not stay pending
        if isinstance(exc, RedisError):
            exc = store_unavailable(exc, runtime.settings.retry_after_s)
        elif not isinstance(exc, Problem):
            log.exception("upload %s failed", task_id)
            exc = Problem(500, "internal_error", "classification failed; see the service log")
        record = _task(task_id, "failed", exc)
    # The store itself may be what failed: the answer waits until it is back, never lost.
    while True:
        try:
            await tasks.put(task_id, record.model_dump(mode="json"))
            return
        except RedisError as exc:
            log.warning("upload %s: cannot store its answer yet: %s", task_id, exc)
            await asyncio.sleep(1.0)


def _task(task_id: str, status: str, problem: Problem | None = None) -> UploadTask:
    body = None
    if problem is not None:
        body = {"status": problem.status, "reason": problem.reason, "detail": problem.detail}
    return UploadTask(id=task_id, status=status, poll=f"/v1/classify/{task_id}", problem=body)


@router.post(
    "",
    openapi_extra=UPLOAD_BODY,
    dependencies=[Depends(refuse_when_overloaded)],
    responses={202: {"model": UploadTask}, **_ERRORS},
)
async def classify(
    request: Request,
    runtime: RuntimeDep,
    tasks: TasksDep,
    run_async: Annotated[
        bool, Query(alias="async", description="Answer 202 at once and classify in the background")
    ] = False,
) -> Classification:
    """Classify the actions in an uploaded video (multipart field `file`)."""
    task_id = uuid.uuid4().hex
    limits = UploadLimits.of(runtime.settings)
    started = time.perf_counter()
    path = await receive_upload(
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        request.stream(),
        limits,
    )
    timings = {"upload": time.perf_counter() - started}
    try:  # until a classification owns the file (and deletes it), it is ours to delete
        started = time.perf_counter()
        info = await run_in_threadpool(probe_video, path, limits)
        timings["probe"] = time.perf_counter() - started
        later = run_async or info.duration > runtime.settings.upload_sync_max_s
        if later:
            pending = _task(task_id, "pending").model_dump(mode="json")
            await tasks.put(task_id, pending)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if later:
        tasks.spawn(_classify_later(runtime, tasks, task_id, path, info, timings))
        return JSONResponse(pending, status_code=202, headers={"Location": pending["poll"]})
    return await _classify(runtime, task_id, path, info, timings)


@router.get("/{task_id}", responses={202: {"model": UploadTask}, 404: PROBLEM_RESPONSE})
async def classification(task_id: str, tasks: TasksDep) -> Classification | UploadTask:
    """The answer of an asynchronous upload: 202 while pending, then the result, or `failed`
    with the problem that stopped it."""
    record = await tasks.get(task_id)
    if record is None:
        raise Problem(404, "unknown_task", f"no upload {task_id!r} (or it expired)")
    if record["status"] == "pending":
        return JSONResponse(record, status_code=202)
    return (
        UploadTask.model_validate(record)
        if record["status"] == "failed"
        else Classification.model_validate(record)
    )

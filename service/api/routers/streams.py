"""Live cameras: subscribe, inspect, unsubscribe, and read their predictions (polling or SSE).

A subscription only records the camera; an ingest worker takes it through its lease and its clips
reach the shared queue. A camera's status is what its worker reports (`service.camera_status`),
its events are pushed as the result store announces results. URLs are shown redacted, everywhere.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.api.deps import RuntimeDep
from service.api.errors import PROBLEM_RESPONSE, Problem
from service.camera_status import StreamStatus
from service.cameras import Camera, Sampling, Stride, Webhook
from service.events.rules import Roi, Rules
from service.queue.base import ClipResult, Summary, summarize
from service.runtime import Runtime
from service.urls import (
    CAMERA_SCHEMES,
    Destinations,
    RefusedURL,
    camera_destinations,
    parse,
    webhook_destinations,
)

router = APIRouter(prefix="/streams", tags=["streams"])

_EVENT_WAIT_S = 1.0
"""How long an event stream waits for a result before it looks whether its client left."""


class StreamRequest(BaseModel):
    """A live camera to subscribe."""

    model_config = ConfigDict(  # an option the ingest lacks is refused, not lost
        extra="forbid",
        json_schema_extra={
            "examples": [{"url": "rtsp://viewer:secret@10.0.0.7/stream1", "name": "Front door"}]
        },
    )

    url: str = Field(
        min_length=1, max_length=2048, description=f"A live source: {', '.join(CAMERA_SCHEMES)}."
    )
    name: str = Field("", max_length=200, description="A name for people, e.g. `Front door`.")
    id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Default: generated."
    )
    sampling: Sampling | None = Field(
        None, description="Frames per second sampled from the camera. Default: the model's rate."
    )
    stride: Stride | None = Field(
        None,
        description="Sampled frames between the starts of consecutive clips. Default: "
        "`LUMOS_CLIP_STRIDE`, or the model's clip length (back-to-back clips).",
    )
    webhook: Webhook | None = Field(
        None, description="An http(s) URL each finished event of the camera is POSTed to."
    )
    rules: Rules | None = Field(None, description="When clips make events; null: none.")
    roi: Roi | None = Field(None, description="Region of interest; null: the whole frame.")

    @field_validator("url")
    @classmethod
    def _live_source(cls, url: str) -> str:
        """Only network sources, rebuilt by the URL policy: a file path or file://, concat:,
        pipe: URL would let a caller read the server's own files, a CR or LF in the path speak
        another protocol to whatever listens."""
        try:
            return parse(url, CAMERA_SCHEMES).url
        except RefusedURL as exc:
            raise ValueError(str(exc)) from None


class CameraFrame(BaseModel):
    """A camera's latest key frame, both ways."""

    dark: str = Field(description="As captured: a `data:image/jpeg;base64,...` URL.")
    enhanced: str = Field(description="After the teacher's Retinex (MSRCR).")


class Predictions(BaseModel):
    """A stream's results after `since`, and their mean."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    stream: str
    """The stream's id."""
    results: list[ClipResult]
    """Oldest first."""
    summary: Summary
    """The mean of `results`."""
    next_since: float
    """Pass as `since` to get only newer results."""


async def existing_camera(stream_id: str, runtime: RuntimeDep) -> Camera:
    """The path's camera, or 404 before a response (or an event stream) starts."""
    camera = await runtime.cameras.get(stream_id)
    if camera is None:
        raise Problem(404, "unknown_stream", f"no stream {stream_id!r}")
    return camera


CameraDep = Annotated[Camera, Depends(existing_camera)]


async def _status(runtime: Runtime, camera_id: str) -> StreamStatus:
    (status,) = await runtime.camera_statuses([camera_id])
    return status


async def _check_destination(destinations: Destinations, url: str) -> None:
    """422 unless `url` resolves to addresses this service may connect to (ingest workers
    check again at every connection)."""
    try:
        await asyncio.to_thread(destinations.check, url)
    except RefusedURL as exc:
        raise Problem(422, exc.reason, str(exc)) from exc


@router.post("", status_code=201, responses={409: PROBLEM_RESPONSE, 422: PROBLEM_RESPONSE})
async def subscribe(request: StreamRequest, runtime: RuntimeDep) -> StreamStatus:
    """Subscribe a live camera; an ingest worker picks it up within a lease period."""
    settings = runtime.settings
    await _check_destination(camera_destinations(settings), request.url)
    if request.webhook:
        await _check_destination(webhook_destinations(settings), request.webhook)
    camera_id = request.id or uuid.uuid4().hex[:12]
    cameras = await runtime.cameras.all()
    if any(c.id == camera_id for c in cameras):
        raise Problem(409, "stream_exists", f"stream {camera_id!r} already exists")
    if len(cameras) >= settings.cameras_max:
        raise Problem(
            409,
            "too_many_streams",
            f"{len(cameras)} streams are subscribed, at most {settings.cameras_max}",
        )
    camera = Camera(id=camera_id, **request.model_dump(exclude={"id"}))
    await runtime.cameras.add(camera)
    return await _status(runtime, camera.id)


@router.get("")
async def list_streams(runtime: RuntimeDep) -> list[StreamStatus]:
    """Every subscribed camera with its state, in one read of the registry."""
    return await runtime.camera_statuses()


@router.get("/{stream_id}", responses={404: PROBLEM_RESPONSE})
async def get_stream(camera: CameraDep, runtime: RuntimeDep) -> StreamStatus:
    """The camera's state: `failing` with `last_error` and `next_retry_at` while its source
    refuses, `stalled` when frames stop."""
    return await _status(runtime, camera.id)


@router.get("/{stream_id}/frame", responses={404: PROBLEM_RESPONSE})
async def latest_frame(camera: CameraDep, runtime: RuntimeDep) -> CameraFrame:
    """The middle frame of the camera's latest clip, as captured and as the teacher's Retinex
    shows it (404 `no_frame` until the first clip)."""
    data = await runtime.cameras.frame(camera.id)
    if data is None:
        raise Problem(404, "no_frame", f"stream {camera.id!r} has no clip yet")
    return await run_in_threadpool(_render, data)


def _render(data: bytes) -> CameraFrame:
    from service.keyframes import render_stored  # torch: loaded on the first key-frame request

    dark, enhanced = render_stored(data)
    return CameraFrame(dark=dark, enhanced=enhanced)


@router.delete("/{stream_id}", status_code=204, responses={404: PROBLEM_RESPONSE})
async def unsubscribe(stream_id: str, runtime: RuntimeDep) -> Response:
    """Stop ingesting the camera; its worker lets go within a lease period."""
    if not await runtime.cameras.remove(stream_id):
        raise Problem(404, "unknown_stream", f"no stream {stream_id!r}")
    return Response(status_code=204)


@router.get("/{stream_id}/predictions", responses={404: PROBLEM_RESPONSE})
async def predictions(
    camera: CameraDep,
    runtime: RuntimeDep,
    since: Annotated[float, Query(description="Unix time: results of clips started after")] = 0.0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Predictions:
    """The stream's clip results after `since`, oldest first, and their mean."""
    results = await runtime.results.for_stream(camera.id, since=since, limit=limit)
    return Predictions(
        stream=camera.id,
        results=results,
        summary=summarize(results, runtime.settings.top_k),
        next_since=results[-1].start if results else since,
    )


async def event_slot(request: Request, runtime: RuntimeDep) -> AsyncIterator[None]:
    """503 before an event stream starts when `sse_max_connections` are open: each one holds a
    connection and polls the store for as long as its client stays. Held until the stream ends
    (a dependency's exit runs after its response)."""
    limit = runtime.settings.sse_max_connections
    state = request.app.state
    if state.event_streams >= limit:
        raise Problem(
            503,
            "too_many_event_streams",
            f"{limit} event streams are open here, the limit; retry later",
            headers={"Retry-After": str(runtime.settings.retry_after_s)},
        )
    state.event_streams += 1
    try:
        yield
    finally:
        state.event_streams -= 1


@router.get(
    "/{stream_id}/events",
    response_class=EventSourceResponse,
    dependencies=[Depends(event_slot)],
    responses={404: PROBLEM_RESPONSE, 503: PROBLEM_RESPONSE},
)
async def events(
    camera: CameraDep,
    request: Request,
    runtime: RuntimeDep,
    since: Annotated[float | None, Query(description="Default: from now")] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: one `prediction` event per classified clip, pushed as the result
    store announces it."""
    cursor = time.time() if since is None else since
    while not await request.is_disconnected():
        for result in await runtime.results.newer(camera.id, cursor, _EVENT_WAIT_S):
            cursor = result.start
            yield ServerSentEvent(data=result, event="prediction", id=result.clip_id)

"""Live cameras: subscribe, inspect, unsubscribe, and read their predictions (polling or SSE).

A subscription only records the camera; an ingest worker takes it through its lease and its clips
reach the shared queue. A camera's status is read from what reaches the API: who holds its lease
and the results its clips produced. URLs are shown redacted, everywhere.
"""

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.api.deps import RuntimeDep
from service.api.errors import PROBLEM_RESPONSE, Problem
from service.cameras import Camera, Sampling, Stride, Webhook
from service.decode import LIVE_SCHEMES
from service.events.rules import Roi, Rules
from service.illumination import Illumination
from service.ingest import cadence
from service.queue.base import ClipResult, Summary, summarize
from service.runtime import Runtime

router = APIRouter(prefix="/streams", tags=["streams"])

# How far back the status looks; a live camera yields a clip every few seconds.
_STATUS_WINDOW_S = 120.0
_EVENT_POLL_S = 0.5
_FPS_CLIPS = 12  # the rate is the median over pairs of the latest clips


class StreamRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an option the ingest lacks is refused, not lost

    url: str = Field(
        min_length=1, max_length=2048, description=f"A live source: {', '.join(LIVE_SCHEMES)}."
    )
    name: str = Field("", max_length=200)
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
        """Only network sources: a file path or file://, concat:, pipe: URL would let a caller
        read the server's own files."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in LIVE_SCHEMES or not rest.split("/", 1)[0]:
            raise ValueError(f"url must be a {'/'.join(LIVE_SCHEMES)} URL with a host")
        return url


class StreamStatus(BaseModel):
    id: str
    url: str
    """Redacted: user info and secret query values are `***`."""
    name: str
    sampling: float | None
    """Null: the model's rate."""
    stride: int | None
    """Null: `LUMOS_CLIP_STRIDE`, or the model's clip length."""
    webhook: str | None
    """Redacted like `url`."""
    rules: Rules | None
    roi: Roi | None
    status: Literal["connecting", "live", "reconnecting", "stopped"]
    worker: str | None
    """The ingest worker holding the camera's lease."""
    fps: float | None
    """Sampled frames per second over the recent clips (the model's rate when keeping up); null
    for the first seconds."""
    last_clip: float | None
    """Wall-clock end of the latest classified clip."""
    last_error: str | None
    reconnects: int
    """Recent clips that spanned a reconnect of the source."""
    illumination: Illumination | None
    """Of the latest clip."""


class Predictions(BaseModel):
    stream: str
    results: list[ClipResult]
    summary: Summary
    next_since: float
    """Pass as `since` to get only newer results."""


async def existing_camera(stream_id: str, runtime: RuntimeDep) -> Camera:
    """The path's camera, or 404 before a response (or an event stream) starts."""
    camera = await runtime.cameras.get(stream_id)
    if camera is None:
        raise Problem(404, "unknown_stream", f"no stream {stream_id!r}")
    return camera


CameraDep = Annotated[Camera, Depends(existing_camera)]


async def _status(runtime: Runtime, camera: Camera) -> StreamStatus:
    worker = await runtime.cameras.owner(camera.id)
    recent = await runtime.results.for_stream(camera.id, since=time.time() - _STATUS_WINDOW_S)
    latest = recent[-1] if recent else None
    # A clip every (stride / fps) seconds; "live" while the newest is younger than a few clips.
    fresh_s = 3 * runtime.settings.staleness_s + 3 * (latest.end - latest.start if latest else 0)
    if worker is None:
        state = "stopped" if latest is None else "reconnecting"
    elif latest is None:
        state = "connecting"
    else:
        state = "live" if time.time() - latest.end < fresh_s else "reconnecting"
    fps = None
    active = await asyncio.to_thread(runtime.models.active) if len(recent) >= 2 else None
    if active is not None:
        sampling, stride = cadence(active.manifest.clip, runtime.settings, camera)
        fps = _frame_rate(recent, stride, sampling)
    errors = [r.error for r in recent if r.error]
    return StreamStatus(
        **camera.public(),
        status=state,
        worker=worker,
        fps=fps,
        last_clip=latest.end if latest else None,
        last_error=errors[-1] if errors else None,
        reconnects=sum(r.integrity.reconnect for r in recent),
        illumination=latest.illumination if latest else None,
    )


def _frame_rate(recent: list[ClipResult], stride: int, fps: float) -> float | None:
    """Sampled frames per second (`stride` between clips): the median rate between consecutive
    clips of the latest ones, None until there is one.

    Pairs that do not measure the camera are left out: across a reconnect, across a restart of
    its ingest (`seq` starts over), and faster than the sampler's `fps` can run in real time,
    which only the seconds of frames a source buffers while it opens, delivered at once, are.
    """
    rates = [
        (b.seq - a.seq) * stride / (b.end - a.end)
        for a, b in pairwise(recent[-_FPS_CLIPS:])
        if b.seq > a.seq and b.end > a.end and not (a.integrity.reconnect or b.integrity.reconnect)
    ]
    real = [rate for rate in rates if rate <= 1.25 * fps]  # a quarter for timing jitter
    return round(statistics.median(real), 2) if real else None


@router.post("", status_code=201, responses={409: PROBLEM_RESPONSE, 422: PROBLEM_RESPONSE})
async def subscribe(request: StreamRequest, runtime: RuntimeDep) -> StreamStatus:
    """Subscribe a live camera; an ingest worker picks it up within a lease period."""
    camera_id = request.id or uuid.uuid4().hex[:12]
    if await runtime.cameras.get(camera_id) is not None:
        raise Problem(409, "stream_exists", f"stream {camera_id!r} already exists")
    camera = Camera(id=camera_id, **request.model_dump(exclude={"id"}))
    await runtime.cameras.add(camera)
    return await _status(runtime, camera)


@router.get("")
async def list_streams(runtime: RuntimeDep) -> list[StreamStatus]:
    return [await _status(runtime, camera) for camera in await runtime.cameras.all()]


@router.get("/{stream_id}", responses={404: PROBLEM_RESPONSE})
async def get_stream(camera: CameraDep, runtime: RuntimeDep) -> StreamStatus:
    return await _status(runtime, camera)


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


@router.get(
    "/{stream_id}/events", response_class=EventSourceResponse, responses={404: PROBLEM_RESPONSE}
)
async def events(
    camera: CameraDep,
    request: Request,
    runtime: RuntimeDep,
    since: Annotated[float | None, Query(description="Default: from now")] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: one `prediction` event per classified clip, as results arrive."""
    cursor = time.time() if since is None else since
    while not await request.is_disconnected():
        for result in await runtime.results.for_stream(camera.id, since=cursor):
            cursor = result.start
            yield ServerSentEvent(data=result, event="prediction", id=result.clip_id)
        await asyncio.sleep(_EVENT_POLL_S)

"""Events: list and filter them, follow them live, fetch their evidence, delete them; and each
camera's event rules and region of interest.

Evidence files are served from `LUMOS_EVENT_DIR`, which the ingest workers that write them share
with the API; an event id is 32 hex digits, checked before it comes near a path.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

import av
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict
from redis.exceptions import RedisError

from service.api.deps import RuntimeDep
from service.api.errors import PROBLEM_RESPONSE, Problem, store_unavailable
from service.api.routers.streams import CameraDep
from service.cameras import Camera
from service.decode import Limits, open_source
from service.encode import jpeg_bytes
from service.events.rules import Event, Roi, Rules
from service.events.store import Query as EventQuery
from service.runtime import Runtime
from service.settings import Settings
from service.urls import RefusedURL, camera_destinations

router = APIRouter(tags=["events"])

EventId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
_LIVE_POLL_S = 0.5


class EventPage(BaseModel):
    """One page of the events that match a query."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    events: list[Event]
    """Newest first."""
    total: int
    """Matching events in all."""
    next_offset: int | None
    """Pass as `offset` for the next page; null on the last."""


async def _event(runtime: RuntimeDep, event_id: str) -> Event:
    try:
        event = await runtime.events.get(event_id)
    except (RedisError, OSError) as exc:
        raise store_unavailable(exc, runtime.settings.retry_after_s) from exc
    if event is None:
        raise Problem(404, "unknown_event", f"no event {event_id!r}")
    return event


@router.get("/events", responses={503: PROBLEM_RESPONSE})
async def list_events(
    runtime: RuntimeDep,
    camera: Annotated[str | None, Query(max_length=64)] = None,
    label: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[float, Query(ge=0, description="Started at or after (Unix time)")] = 0.0,
    until: Annotated[float | None, Query(ge=0, description="Started before (Unix time)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> EventPage:
    query = EventQuery(camera, label, since, until or float("inf"), limit, offset)
    try:
        events, total = await runtime.events.query(query)
    except (RedisError, OSError) as exc:
        raise store_unavailable(exc, runtime.settings.retry_after_s) from exc
    more = offset + len(events) < total
    return EventPage(events=events, total=total, next_offset=offset + len(events) if more else None)


@router.get("/events/live", response_class=EventSourceResponse)
async def live_events(
    request: Request,
    runtime: RuntimeDep,
    camera: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(description="Default: from now")] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: an `event` message each time an event opens, grows or closes."""
    cursor = time.time() if since is None else since
    while not await request.is_disconnected():
        try:
            changed = await runtime.events.changed(cursor)
        except (RedisError, OSError):
            changed = []  # the store is away: the feed waits for it
        for event in changed:
            cursor = max(cursor, event.updated)
            if camera is None or event.camera == camera:
                yield ServerSentEvent(data=event, event="event", id=event.id)
        await asyncio.sleep(_LIVE_POLL_S)


@router.get("/events/{event_id}", responses={404: PROBLEM_RESPONSE})
async def get_event(event_id: EventId, runtime: RuntimeDep) -> Event:
    return await _event(runtime, event_id)


def _evidence(runtime: RuntimeDep, event: Event, kind: str, enhanced: bool) -> str:
    path = runtime.evidence.path(event.id, kind, enhanced)
    if path is None:
        raise Problem(404, "no_evidence", f"event {event.id} has no {kind} kept")
    return str(path)


@router.get("/events/{event_id}/clip", responses={404: PROBLEM_RESPONSE})
async def event_clip(
    event_id: EventId, runtime: RuntimeDep, enhanced: bool = False
) -> FileResponse:
    """The event's H.264 clip (as captured, or Retinex-enhanced); supports Range requests."""
    event = await _event(runtime, event_id)
    return FileResponse(_evidence(runtime, event, "clip", enhanced), media_type="video/mp4")


@router.get("/events/{event_id}/snapshot", responses={404: PROBLEM_RESPONSE})
async def event_snapshot(
    event_id: EventId, runtime: RuntimeDep, enhanced: bool = False
) -> FileResponse:
    """The event's key frame: the middle of its highest-scoring clip, as a JPEG."""
    event = await _event(runtime, event_id)
    return FileResponse(_evidence(runtime, event, "snapshot", enhanced), media_type="image/jpeg")


@router.delete("/events/{event_id}", status_code=204, responses={404: PROBLEM_RESPONSE})
async def delete_event(event_id: EventId, runtime: RuntimeDep) -> Response:
    await _event(runtime, event_id)
    await runtime.events.delete(event_id)
    await run_in_threadpool(runtime.evidence.delete, event_id)
    return Response(status_code=204)


async def _update(runtime: Runtime, camera: Camera, **fields: object) -> None:
    """Re-subscribe `camera` with `fields` changed: its ingest restarts with them."""
    await runtime.cameras.add(camera.model_copy(update=fields))


@router.put("/streams/{stream_id}/rules", responses={404: PROBLEM_RESPONSE})
async def set_rules(rules: Rules, camera: CameraDep, runtime: RuntimeDep) -> Rules:
    """Set the camera's event rules; its ingest restarts with them within a lease period."""
    await _update(runtime, camera, rules=rules)
    return rules


@router.delete("/streams/{stream_id}/rules", status_code=204, responses={404: PROBLEM_RESPONSE})
async def clear_rules(camera: CameraDep, runtime: RuntimeDep) -> Response:
    await _update(runtime, camera, rules=None)
    return Response(status_code=204)


@router.put("/streams/{stream_id}/roi", responses={404: PROBLEM_RESPONSE})
async def set_roi(roi: Roi, camera: CameraDep, runtime: RuntimeDep) -> Roi:
    """Set the camera's region of interest: its clips are cut from the region's bounding box."""
    await _update(runtime, camera, roi=roi)
    return roi


@router.delete("/streams/{stream_id}/roi", status_code=204, responses={404: PROBLEM_RESPONSE})
async def clear_roi(camera: CameraDep, runtime: RuntimeDep) -> Response:
    await _update(runtime, camera, roi=None)
    return Response(status_code=204)


def _grab(url: str, settings: Settings) -> bytes:
    """One whole frame, fetched under the same URL policy and limits as the ingest's."""
    destinations = camera_destinations(settings)
    with open_source(
        destinations.connect_url(url),
        Limits.of(settings, upload=False),
        destinations=destinations,
        transport=settings.rtsp_transport,
        open_timeout=settings.open_timeout_s,
        read_timeout=settings.stall_timeout_s,
    ) as container:
        frame = next(container.decode(video=0))
        height = min(settings.event_view_height * 2, frame.height) // 2 * 2
        width = round(frame.width * height / frame.height / 2) * 2
        return jpeg_bytes(frame.reformat(width, height, "rgb24").to_ndarray())


@router.get(
    "/streams/{stream_id}/view",
    responses={404: PROBLEM_RESPONSE, 422: PROBLEM_RESPONSE, 502: PROBLEM_RESPONSE},
)
async def camera_view(camera: CameraDep, runtime: RuntimeDep) -> Response:
    """A current whole frame of the camera (not cropped to its region), as a JPEG: what a region
    of interest is drawn on."""
    try:
        data = await run_in_threadpool(_grab, camera.url, runtime.settings)
    except RefusedURL as exc:
        raise Problem(422, exc.reason, str(exc)) from exc
    except (av.FFmpegError, OSError, StopIteration, ValueError) as exc:
        raise Problem(502, "camera_unavailable", f"no frame from camera {camera.id}") from exc
    return Response(data, media_type="image/jpeg")

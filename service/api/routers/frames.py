"""Key frames of an uploaded video (`service.keyframes`): the upload is vetted like
/v1/classify's, and the JPEGs are answered inline: nothing outlives the request, the temporary
file included.
"""

import asyncio

import av
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from service.api.deps import RuntimeDep, refuse_when_overloaded
from service.api.errors import PROBLEM_RESPONSE, Problem
from service.api.routers.classify import _MULTIPART_BODY, _limits
from service.api.uploads import ffmpeg_reason, probe_video, receive_upload

router = APIRouter(prefix="/frames", tags=["frames"])


class KeyFrame(BaseModel):
    seq: int
    """The clip's position in the video, as in /v1/classify's `clips`."""
    start: float
    """Media time (seconds) of the clip's first and last frame."""
    end: float
    dark: str
    """The middle frame as captured: a `data:image/jpeg;base64,...` URL."""
    enhanced: str
    """The same frame after the teacher's Retinex (MSRCR, statistics of the whole clip)."""


class KeyFrames(BaseModel):
    model_version: str
    clips: list[KeyFrame]


@router.post(
    "",
    openapi_extra=_MULTIPART_BODY,
    dependencies=[Depends(refuse_when_overloaded)],
    responses={code: PROBLEM_RESPONSE for code in (400, 413, 415, 422, 503)},
)
async def frames(request: Request, runtime: RuntimeDep) -> KeyFrames:
    """Each clip's key frame, dark and enhanced, of an uploaded video (multipart field `file`)."""
    limits = _limits(runtime)
    path = await receive_upload(
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        request.stream(),
        limits,
    )
    try:
        await run_in_threadpool(probe_video, path, limits)
        active = await asyncio.to_thread(runtime.models.active)
        if active is None:
            raise Problem(503, "no_model", "no active model to cut clips for")
        from service.keyframes import key_frames  # torch: loaded on the first key-frame request

        rendered = await run_in_threadpool(key_frames, path, active.manifest.clip, runtime.settings)
    except (av.FFmpegError, ValueError) as exc:  # passed the probe, failed further in
        raise Problem(
            422, "undecodable", f"decoding the video failed: {ffmpeg_reason(exc)}"
        ) from exc
    finally:
        path.unlink(missing_ok=True)
    return KeyFrames(model_version=active.version, clips=[KeyFrame(**f) for f in rendered])

"""Key frames of an uploaded video: each clip's middle frame as captured and as Retinex sees it.

A dark clip shows a person almost nothing, so the console puts beside each clip's labels what the
camera captured and the MSRCR view the teacher was trained on. The upload is vetted like
/v1/classify's and cut into clips by the same ingest code, with the model's clip length, rate,
stride and field of view, so clip `seq` here is clip `seq` there; only the resolution is raised
for the eye. The JPEGs are encoded in the request and answered inline: nothing outlives it, the
temporary file included.
"""

import asyncio
import threading
from pathlib import Path

import av
import torch
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from model.clip import ClipSpec
from service.api.deps import RuntimeDep, refuse_when_overloaded
from service.api.errors import PROBLEM_RESPONSE, Problem
from service.api.routers.classify import _MULTIPART_BODY, _limits
from service.api.uploads import ffmpeg_reason, probe_video, receive_upload
from service.ingest import cut_file
from service.key_frames import render
from service.settings import Settings

router = APIRouter(prefix="/frames", tags=["frames"])

VIEW_SIDE = 160
"""Pixels per side of a key frame: the model's square field of view, enlarged to be seen."""


class KeyFrame(BaseModel):
    """One clip's middle frame, as captured and enhanced."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    seq: int
    """The clip's position in the video, as in /v1/classify's `clips`."""
    start: float
    """Media time (seconds) of the clip's first frame."""
    end: float
    """Media time (seconds) of the clip's last frame."""
    dark: str
    """The middle frame as captured: a `data:image/jpeg;base64,...` URL."""
    enhanced: str
    """The same frame after the teacher's Retinex (MSRCR, statistics of the whole clip)."""


class KeyFrames(BaseModel):
    """An uploaded video's key frames, one per clip."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    model_version: str
    """The model version whose clip spec cut the video."""
    clips: list[KeyFrame]
    """In clip order."""


def key_frames(path: Path, spec: ClipSpec, settings: Settings) -> list[KeyFrame]:
    """Cut `path` as ingest cuts it for `spec`, at `VIEW_SIDE` pixels, and render each clip's
    middle frame both ways (blocking: run it in a thread)."""
    scale = VIEW_SIDE / spec.crop
    width, height = spec.resize
    view = spec.model_copy(
        update={"crop": VIEW_SIDE, "resize": (round(width * scale), round(height * scale))}
    )
    frames = []
    for clip in cut_file(path, "frames", view, settings, threading.Event()):
        pixels = torch.from_numpy(clip.frames).permute(3, 0, 1, 2)  # 3 x T x H x W
        dark, enhanced = render(pixels, len(clip.frames) // 2)
        frames.append(
            KeyFrame(
                seq=clip.seq,
                start=clip.timestamps[0],
                end=clip.timestamps[-1],
                dark=dark,
                enhanced=enhanced,
            )
        )
    return frames


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
        clips = await run_in_threadpool(key_frames, path, active.manifest.clip, runtime.settings)
    except (av.FFmpegError, ValueError) as exc:  # passed the probe, failed further in
        raise Problem(
            422, "undecodable", f"decoding the video failed: {ffmpeg_reason(exc)}"
        ) from exc
    finally:
        path.unlink(missing_ok=True)
    return KeyFrames(model_version=active.version, clips=clips)

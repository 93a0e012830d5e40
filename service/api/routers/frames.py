"""Key frames of an uploaded video (`service.keyframes`): the upload is vetted like
/v1/classify's, and the JPEGs are answered inline: nothing outlives the request, the temporary
file included.
"""

import av
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from model.manifest import ArtifactError
from service.api.deps import RuntimeDep, refuse_when_overloaded
from service.api.errors import PROBLEM_RESPONSE, Problem
from service.api.uploads import (
    UPLOAD_BODY,
    UploadLimits,
    probe_video,
    receive_upload,
    undecodable,
)

router = APIRouter(prefix="/frames", tags=["frames"])


class FocusSquare(BaseModel):
    """The square a model that zooms (`clip.focus` > 1) zoomed a clip onto before classifying
    it, as fractions of the key frame, which shows the model's whole field of view."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    x: float
    """Left edge, 0-1 of the key frame's width."""
    y: float
    """Top edge, 0-1 of the key frame's height."""
    side: float
    """Side, 0-1 of the key frame's side: the zoom is 1 / side."""


class KeyFrame(BaseModel):
    """One clip's middle frame, as captured and enhanced, and where the model looked."""

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
    focus: FocusSquare | None
    """The square the model zoomed the clip onto, found on the clip as the model got it; null
    when the model does not zoom, or the clip did not change and was classified whole."""


class KeyFrames(BaseModel):
    """An uploaded video's key frames, one per clip."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    model_version: str
    """The model version whose clip spec cut the video."""
    clips: list[KeyFrame]
    """In clip order."""


@router.post(
    "",
    openapi_extra=UPLOAD_BODY,
    dependencies=[Depends(refuse_when_overloaded)],
    responses={code: PROBLEM_RESPONSE for code in (400, 413, 415, 422, 503)},
)
async def frames(request: Request, runtime: RuntimeDep) -> KeyFrames:
    """Each clip's key frame, dark and enhanced, of an uploaded video (multipart field `file`),
    with the square the model zoomed each clip onto."""
    limits = UploadLimits.of(runtime.settings)
    path = await receive_upload(
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        request.stream(),
        limits,
    )
    try:
        await run_in_threadpool(probe_video, path, limits)
        active = await runtime.active.get()
        if active is None:
            raise Problem(503, "no_model", "no active model to cut clips for")
        # torch: loaded on the first key-frame request
        from service.keyframes import key_frames, model_spec

        try:
            spec = await run_in_threadpool(model_spec, active.path, active.version)
        except ArtifactError as exc:  # its files changed under the registry
            raise Problem(503, "model_unavailable", str(exc)) from exc
        rendered = await run_in_threadpool(key_frames, path, spec, runtime.settings)
    except (av.FFmpegError, ValueError) as exc:  # passed the probe, failed further in
        raise undecodable(exc) from exc
    finally:
        path.unlink(missing_ok=True)
    return KeyFrames(model_version=active.version, clips=[KeyFrame(**f) for f in rendered])

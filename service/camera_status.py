"""A subscribed camera's status as the API shows it: its subscription, who runs it, and the
state, rate, errors and latest clip its ingest worker reported, for any number of cameras in one
batched read of the registry."""

import math
import time

from pydantic import BaseModel, Field

from service.camera_health import State, shown_state
from service.cameras import Camera, CameraRegistry, CameraView
from service.events.rules import Roi, Rules
from service.illumination import Illumination


class StreamStatus(BaseModel):
    """A camera: what was subscribed (URLs redacted) and how it is doing."""

    id: str = Field(description="The stream's id, as in its paths.", examples=["front-door"])
    url: str = Field(
        description="The source; user info and secret query values are `***`.",
        examples=["rtsp://***@10.0.0.7/stream1"],
    )
    name: str = Field(description="A name for people.", examples=["Front door"])
    sampling: float | None = Field(description="Frames per second sampled; null: the model's rate.")
    stride: int | None = Field(
        description="Sampled frames between clip starts; null: `LUMOS_CLIP_STRIDE`, or the "
        "model's clip length."
    )
    webhook: str | None = Field(
        description="Where the camera's events are POSTed (signed), redacted like `url`."
    )
    rules: Rules | None = Field(description="When clips make events; null: none.")
    roi: Roi | None = Field(description="Region of interest; null: the whole frame.")
    state: State = Field(
        description="`connecting`: no frame yet; `live`: frames arrive; `failing`: the source "
        "refused or dropped, a retry is scheduled (`next_retry_at`); `stalled`: connected, but no "
        "frame for longer than the staleness budget."
    )
    worker: str | None = Field(description="The ingest worker holding the camera's lease.")
    fps: float | None = Field(
        description="Sampled frames per second over the last few seconds (the model's rate when "
        "keeping up); null until measured."
    )
    last_clip: float | None = Field(description="Unix time of the latest clip's last frame.")
    last_error: str | None = Field(
        description="Why the latest connection attempt failed or ended, in words.",
        examples=["Connection refused"],
    )
    reconnects: int = Field(
        description="Failed or ended connections since its worker took the camera; the same "
        "count as `lumos_stream_reconnects_total`."
    )
    next_retry_at: float | None = Field(description="Unix time of the next attempt while failing.")
    illumination: Illumination | None = Field(description="Of the latest clip.")
    warnings: list[str] = Field(
        default_factory=list,  # a client reading an older server's status
        description="What in the subscription works against the active model; empty: nothing.",
        examples=[
            [
                "sampling 10 fps is not the active model's 6 fps: "
                "it sees motion at another pace than it learnt"
            ]
        ],
    )


def warnings_of(camera: Camera, model_fps: float | None) -> list[str]:
    """A camera's own `sampling` off the model's rate is accepted (a slow link may need it), but
    the model then sees motion at another pace, and integrated frames at another exposure, than
    it learnt on: worth saying where the operator looks, since the clips still classify."""
    if camera.sampling is None or model_fps is None or math.isclose(camera.sampling, model_fps):
        return []
    return [
        f"sampling {camera.sampling:g} fps is not the active model's {model_fps:g} fps: "
        "it sees motion at another pace than it learnt"
    ]


def status_of(
    view: CameraView, stall_after_s: float, now: float, model_fps: float | None
) -> StreamStatus:
    health = view.health
    return StreamStatus(
        **view.camera.public(),
        state=shown_state(health, stall_after_s, now),
        worker=view.owner,
        fps=health and health.fps,
        last_clip=health and health.last_clip,
        last_error=health and health.last_error,
        reconnects=health.reconnects if health else 0,
        next_retry_at=health and health.next_retry_at,
        illumination=health and health.illumination,
        warnings=warnings_of(view.camera, model_fps),
    )


async def statuses(
    registry: CameraRegistry,
    stall_after_s: float,
    model_fps: float | None,
    camera_ids: list[str] | None = None,
) -> list[StreamStatus]:
    """Every camera's status (or those of `camera_ids`), read in one batched call; `model_fps`,
    the active model's clip rate (None while there is none), for `warnings`."""
    now = time.time()
    views = await registry.overview(camera_ids)
    return [status_of(v, stall_after_s, now, model_fps) for v in views]

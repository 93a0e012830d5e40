"""What a camera is doing, as its ingest worker sees it, and the state the API shows for it.

The ingest worker is the only party that knows a source refused the connection, stopped sending,
or delivers: it keeps a `HealthTracker` per camera and publishes the camera's `CameraHealth` into
the registry on every change of state and about once a second while frames flow. The API reads
every camera's subscription, lease holder and health in one batched call and derives the state a
person acts on (`connecting`, `live`, `failing`, `stalled`), so a dead camera never looks alive.
"""

import asyncio
import io
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from service.clips import Clip
from service.illumination import Illumination

log = logging.getLogger(__name__)

State = Literal["connecting", "live", "failing", "stalled"]

_REPORT_EVERY_S = 1.0
_RATE_FRAMES = 36
"""Frames the rate is measured over: ~3 s at 12 fps, past the burst a source sends on connect."""
_RATE_MIN_FRAMES = 6


class CameraHealth(BaseModel):
    """A camera's condition as its ingest worker last reported it."""

    state: Literal["connecting", "live", "failing"] = Field(
        description="`connecting`: opening the source; `live`: frames arrive; `failing`: the "
        "last attempt failed and a retry is scheduled."
    )
    last_error: str | None = Field(None, description="Why the last attempt failed, in words.")
    reconnects: int = Field(0, description="Failed or ended connections since the worker took it.")
    next_retry_at: float | None = Field(
        None, description="Unix time of the next connection attempt while failing."
    )
    last_frame_at: float | None = Field(None, description="Unix time of the latest frame.")
    fps: float | None = Field(None, description="Sampled frames per second, recently.")
    last_clip: float | None = Field(None, description="Unix time of the latest clip's last frame.")
    illumination: Illumination | None = Field(None, description="Of the latest clip.")
    reported_at: float = Field(description="Unix time of this report.")


def key_frame(clip: Clip) -> bytes:
    """The clip's middle frame as captured, as `.npy` bytes (loadable without pickle): what the
    worker keeps as the camera's latest picture (`service.keyframes.render_stored` shows it)."""
    out = io.BytesIO()
    np.save(out, clip.frames[len(clip.frames) // 2], allow_pickle=False)
    return out.getvalue()


def shown_state(health: CameraHealth | None, stall_after_s: float, now: float) -> State:
    """The state a person sees: a live camera whose frames stopped coming is `stalled` before its
    worker's watchdog fires, and one no worker reported on yet is `connecting`."""
    if health is None:
        return "connecting"
    if (
        health.state == "live"
        and now - (health.last_frame_at or health.reported_at) > stall_after_s
    ):
        return "stalled"
    return health.state


def error_text(exc: BaseException, url: str, redacted: str) -> str:
    """An exception as a person reads it: FFmpeg's words without its errno prefix, the URL's
    secrets redacted."""
    strerror = getattr(exc, "strerror", None)
    text = strerror if isinstance(strerror, str) else str(exc).replace(url, redacted)
    return text.strip() or type(exc).__name__


class HealthTracker:
    """One camera's health, kept by its decoder thread and sent with `report` on `loop`.

    A report goes out on each change of state and at most once per `_REPORT_EVERY_S` while frames
    flow, so a camera costs its registry about one write a second; the thread never waits for one.
    The decoder thread reports frames and failures, the event loop clips: a lock keeps their
    updates whole.
    """

    def __init__(
        self,
        report: Callable[[CameraHealth], Awaitable[None]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._report = report
        self._loop = loop
        self._lock = threading.Lock()
        self._frames: deque[float] = deque(maxlen=_RATE_FRAMES)
        self._last_sent = 0.0
        self.health = CameraHealth(state="connecting", reported_at=time.time())
        self._send()

    def _send(self) -> None:
        self.health = health = self.health.model_copy(update={"reported_at": time.time()})
        self._last_sent = time.monotonic()

        def report() -> None:
            self._loop.create_task(self._report(health)).add_done_callback(_unsent)

        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(report)

    def frame(self, wall: float, step: float) -> None:
        """A sampled frame arrived at Unix time `wall`, `step` seconds after the one before it
        was due. Frames much closer than that are the burst a source sends as it opens (what it
        had buffered), not its rate, and are left out of it."""
        with self._lock:
            if not self._frames or wall - self._frames[-1] >= step / 2:
                self._frames.append(wall)
            changed = self.health.state != "live"
            self.health = self.health.model_copy(
                update={"state": "live", "next_retry_at": None, "last_frame_at": wall}
            )
            if changed or time.monotonic() - self._last_sent >= _REPORT_EVERY_S:
                self.health = self.health.model_copy(update={"fps": self._rate()})
                self._send()

    def clip(self, end: float, illumination: Illumination) -> None:
        """A clip was cut (reported with the next frame's report)."""
        with self._lock:
            self.health = self.health.model_copy(
                update={"last_clip": end, "illumination": illumination}
            )

    def failed(self, error: str, retry_in_s: float) -> None:
        """The source failed or ended; the next attempt is in `retry_in_s`."""
        with self._lock:
            self._frames.clear()
            self.health = self.health.model_copy(
                update={
                    "state": "failing",
                    "last_error": error,
                    "reconnects": self.health.reconnects + 1,
                    "next_retry_at": time.time() + retry_in_s,
                    "fps": None,
                }
            )
            self._send()

    def _rate(self) -> float | None:
        if len(self._frames) < _RATE_MIN_FRAMES or self._frames[-1] <= self._frames[0]:
            return None
        return round((len(self._frames) - 1) / (self._frames[-1] - self._frames[0]), 2)


def _unsent(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("cannot report a camera's health: %s", exc)

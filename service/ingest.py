"""Frames -> clips -> queue, for files (uploads) and live cameras.

Files are decoded in a thread as fast as the queue takes their clips: nothing is ever dropped, a
full queue makes the decoder wait (backpressure). Cameras cannot wait, so a live stream runs a
decoder thread that survives its source (reconnects with stepped backoff; a read that stalls past
the watchdog time fails and reopens) and hands frames to the event loop through a bounded buffer
that drops the oldest frame when full; frames and clips older than the staleness budget are
dropped rather than delivered late. Every drop is counted per stream.
"""

import asyncio
import logging
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from redis.exceptions import RedisError

from model.clip import ClipSpec
from service.camera_health import HealthTracker, error_text, key_frame
from service.cameras import Camera, CameraRegistry
from service.clipping import UPLOAD_LABEL, Clipper, cadence, cut_file, geometry
from service.clips import Clip
from service.decode import Frame, Limits, decode_frames, is_live, open_source, redact_url
from service.events.tracker import EventServices, EventTracker
from service.illumination import gate
from service.metrics import (
    CLIPS_GATED,
    STREAM_CLIPS,
    STREAM_FRAMES_DECODED,
    STREAM_FRAMES_DROPPED,
    STREAM_LUMA_MEAN,
    STREAM_NOISE_SIGMA,
    STREAM_RECONNECTS,
    STREAM_UP,
    forget_stream,
)
from service.ownership import Ownership
from service.queue.base import ClipQueue
from service.registry import ActiveModel
from service.settings import Settings
from service.urls import camera_destinations, redact_text

log = logging.getLogger(__name__)

_HTTP_HINT = (
    " (before the first frame: a video file over HTTP needs a server that answers Range "
    "requests, or its index at the start, as ffmpeg -movflags faststart writes it)"
)


def admit(clip: Clip, settings: Settings, label: str) -> bool:
    """Record the clip in the stream's metrics; False when the darkness gate skips it."""
    STREAM_CLIPS.labels(stream=label).inc()
    STREAM_LUMA_MEAN.labels(stream=label).set(clip.illumination.luma_mean)
    STREAM_NOISE_SIGMA.labels(stream=label).set(clip.illumination.noise_sigma)
    reason = gate(clip.illumination, settings.gate_min_luma, settings.gate_min_range)
    if reason is not None:
        CLIPS_GATED.labels(stream=label, reason=reason).inc()
    return reason is None


@dataclass(frozen=True)
class FileIngest:
    """What an uploaded file became: its queued clips in order, and how many the gate skipped."""

    stream: str
    clip_ids: list[str]
    gated: int


async def ingest_file(
    path: Path,
    stream: str,
    queue: ClipQueue,
    spec: ClipSpec,
    settings: Settings,
    executor: Executor,
) -> FileIngest:
    """Decode `path` on `executor` and queue its clips, waiting whenever the queue is full.

    Raises av.FFmpegError (or ValueError for a file without video) for a file that is not a video.
    """
    loop = asyncio.get_running_loop()
    cancel = threading.Event()

    def work() -> FileIngest:
        ids: list[str] = []
        gated = 0
        for clip in cut_file(path, stream, spec, settings, cancel):
            if not admit(clip, settings, UPLOAD_LABEL):
                gated += 1
                continue
            asyncio.run_coroutine_threadsafe(queue.put(clip), loop).result()
            ids.append(clip.id)
        return FileIngest(stream, ids, gated)

    future = loop.run_in_executor(executor, work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()  # the decoder stops at its next frame
        raise


class LiveIngest:
    """One camera, from connection to queued clips, until cancelled; its health and latest key
    frame go to `registry` as they change; with rules (and the process's event services), also
    its events."""

    def __init__(
        self,
        camera: Camera,
        queue: ClipQueue,
        spec: ClipSpec,
        settings: Settings,
        registry: CameraRegistry,
        events: EventServices | None = None,
    ) -> None:
        self.camera = camera
        self.queue = queue
        self.spec = spec
        self.settings = settings
        self.registry = registry
        self.fps, self.stride = cadence(spec, settings, camera)
        self._stopping = threading.Event()
        self.tracker = (
            EventTracker(camera, camera.rules, events, self.fps)
            if events is not None and camera.rules is not None
            else None
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        buffer: asyncio.Queue[Frame] = asyncio.Queue(self.settings.frame_buffer)
        tracker = HealthTracker(partial(self.registry.report, self.camera.id), loop)
        reader = threading.Thread(
            target=self._read,
            args=(loop, buffer, tracker),
            name=f"camera-{self.camera.id}",
            daemon=True,
        )
        reader.start()
        label = self.camera.id
        clipper = Clipper(self.camera.id, self.spec.frames, self.stride, live=True)
        tracking = asyncio.create_task(self.tracker.run()) if self.tracker else None
        try:
            while True:
                frame = await buffer.get()
                if time.time() - frame.wall > self.settings.staleness_s:
                    STREAM_FRAMES_DROPPED.labels(stream=label, reason="stale").inc()
                    continue
                if self.tracker is not None:
                    self.tracker.frame(frame.wall, frame.view)
                clip = clipper.push(frame)
                if clip is None:
                    continue
                tracker.clip(clip.end, clip.illumination)
                try:
                    await self.registry.keep_frame(label, key_frame(clip))
                    if admit(clip, self.settings, label):
                        await self.queue.put(clip)
                except (RedisError, OSError) as exc:  # the store is away; the camera goes on
                    log.warning("camera %s: cannot queue a clip: %s", label, exc)
                    STREAM_FRAMES_DROPPED.labels(stream=label, reason="queue_error").inc()
                    continue
                if self.tracker is not None:
                    self.tracker.queued(clip.id, clip.end)
        finally:
            if tracking is not None:
                tracking.cancel()
            self._stopping.set()  # the reader exits after its current read (<= stall timeout)
            STREAM_UP.labels(stream=label).set(0)

    def _offer(self, buffer: asyncio.Queue[Frame], frame: Frame) -> None:
        """On the event loop: buffer `frame`, dropping the oldest when full."""
        if buffer.full():
            buffer.get_nowait()
            STREAM_FRAMES_DROPPED.labels(stream=self.camera.id, reason="overflow").inc()
        buffer.put_nowait(frame)

    def _read(
        self,
        loop: asyncio.AbstractEventLoop,
        buffer: asyncio.Queue[Frame],
        tracker: HealthTracker,
    ) -> None:
        """The decoder thread: connect, decode, and on any failure back off and reconnect.

        Every failure counts as a reconnect from the first one (a source that never answers is
        the one an operator most needs to see), and its reason goes to the camera's health.
        """
        label, url = self.camera.id, self.camera.url
        settings = self.settings
        delays = settings.backoff_delays()
        epoch = 0
        limits = Limits.of(settings, upload=False)
        destinations = camera_destinations(settings)
        while not self._stopping.is_set():
            delivered = False
            try:
                # Checked again at every (re)connect. A file stands in for a camera only where
                # the operator runs one (`lumos watch FILE`): the API accepts network URLs only.
                source = destinations.connect_url(url) if is_live(url) else url
                with open_source(
                    source,
                    limits,
                    destinations=destinations,
                    transport=settings.rtsp_transport,
                    open_timeout=settings.open_timeout_s,
                    read_timeout=settings.stall_timeout_s,
                ) as container:
                    log.info("camera %s: connected to %s", label, redact_url(url))
                    frames = decode_frames(
                        container,
                        geometry(self.spec, self.camera),
                        self.fps,
                        limits,
                        threads=settings.decode_threads,
                        epoch=epoch,
                        realtime=not is_live(url),  # a file standing in for a camera
                        view_height=settings.event_view_height if self.tracker else 0,
                        integrate=self.spec.integrate,
                    )
                    for frame in frames:
                        if self._stopping.is_set():
                            return
                        if not delivered:  # delivering: a next outage starts the schedule over
                            delivered = True
                            STREAM_UP.labels(stream=label).set(1)
                            delays = settings.backoff_delays()
                        STREAM_FRAMES_DECODED.labels(stream=label).inc()
                        tracker.frame(frame.wall, frame.step)
                        loop.call_soon_threadsafe(self._offer, buffer, frame)
                error = "the stream ended"
            except Exception as exc:  # whatever the source did, this thread must live on
                if loop.is_closed():  # the service stopped under us
                    return
                error = redact_text(error_text(exc, url, redact_url(url)))
            if self._stopping.is_set():  # stopped: its series are being dropped, not zeroed
                return
            if not delivered and urlsplit(url).scheme.lower() in ("http", "https"):
                error += _HTTP_HINT
            log.warning("camera %s: %s", label, error)
            STREAM_UP.labels(stream=label).set(0)
            STREAM_RECONNECTS.labels(stream=label).inc()
            delay = next(delays)
            tracker.failed(error, delay)
            epoch += 1
            self._stopping.wait(delay)


class CameraIngest:
    """An ingest worker: runs a `LiveIngest` for each camera its leases give it.

    Clips are cut for the active model's clip spec; when a newly activated model wants another
    spec, every camera restarts with it. With `events`, cameras with rules make events.
    """

    def __init__(
        self,
        registry: CameraRegistry,
        queue: ClipQueue,
        active: ActiveModel,
        settings: Settings,
        events: EventServices | None = None,
    ) -> None:
        self.registry = registry
        self.queue = queue
        self.active = active
        self.settings = settings
        self.events = events
        self.running: dict[str, tuple[Camera, asyncio.Task[None]]] = {}
        self._spec: ClipSpec | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        active = await self.active.first(stopping)
        if active is None:
            return
        self._spec = active.manifest.clip
        ownership = Ownership(
            self.registry,
            self.settings.worker_id,
            self.settings.lease_ms,
            self._start,
            self._stop,
        )
        watch = asyncio.create_task(self._follow_spec(active.path))
        try:
            await ownership.run(stopping)
        finally:
            watch.cancel()

    async def _follow_spec(self, seen: Path) -> None:
        while True:
            active = await self.active.changed(seen)
            seen = active.path
            if active.manifest.clip != self._spec:
                log.info("model %s wants other clips: restarting cameras", active.version)
                self._spec = active.manifest.clip
                for camera, _ in list(self.running.values()):
                    await self._stop(camera.id)
                    await self._start(camera)

    async def _start(self, camera: Camera) -> None:
        assert self._spec is not None
        live = LiveIngest(camera, self.queue, self._spec, self.settings, self.registry, self.events)
        self.running[camera.id] = (camera, asyncio.create_task(live.run()))

    async def _stop(self, camera_id: str) -> None:
        entry = self.running.pop(camera_id, None)
        if entry is not None:
            entry[1].cancel()
            try:
                await entry[1]
            except asyncio.CancelledError:
                pass
        await self._forget_if_deleted(camera_id)

    async def _forget_if_deleted(self, camera_id: str) -> None:
        """A deleted camera's metric series go (camera ids are unbounded); a camera merely
        handed over or stopped with the worker keeps its counters."""
        try:
            deleted = await self.registry.get(camera_id) is None
        except (RedisError, OSError):
            return  # the next worker to hold it, or a restart, settles it
        if deleted:
            forget_stream(camera_id)

"""The service's parts, wired once: for `lumos serve` (all roles, one process) or one role each.

Without `LUMOS_REDIS_URL` every part is in-process (queue, results, cameras, active model) and
`lumos serve` runs the API, camera ingest and inference on one event loop. With it, the same parts
talk through Redis, and `lumos api`, `lumos ingest` and `lumos infer` each run one role, as many
processes as wanted; `lumos serve` then still runs all three roles, in one process, over Redis.

The API holds a `Runtime` (`create_app(runtime)`); `service.commands.serve_http` awaits its
`start()` and `stop()` within the app's lifespan.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from pydantic import BaseModel
from redis.asyncio import Redis

from model.clip import ClipSpec
from service.camera_status import StreamStatus, statuses
from service.cameras import CameraRegistry, MemoryCameras, RedisCameras
from service.clipping import cadence
from service.connections import loop_client, open_all, thread_client
from service.events.evidence import EvidenceStore
from service.events.notify import Notifier
from service.events.segments import Segment, segments
from service.events.store import EventStore, MemoryEvents, RedisEvents
from service.events.tracker import EventServices
from service.ingest import CameraIngest, FileIngest, ingest_file
from service.pause import pause
from service.queue.base import ClipQueue, ClipResult, ResultStore, Summary, summarize
from service.queue.memory import MemoryQueue, MemoryResults
from service.queue.redis import RedisQueue, RedisResults
from service.registry import ActiveModel, MemoryPointer, ModelRegistry, RedisPointer
from service.settings import Settings

if TYPE_CHECKING:
    from service.infer import InferenceWorker

log = logging.getLogger(__name__)

ROLES = frozenset({"api", "ingest", "infer"})
_DEPTH_EVERY_S = 0.5


class NoActiveModel(RuntimeError):
    """Nothing to cut clips for: no model version is active and no default artifact exists."""


class InferenceDown(NoActiveModel):
    """This process's inference worker stopped before it served a model (the active one cannot
    be loaded, or the service is stopping): as good as no model, and answered as such."""


class VideoResult(BaseModel):
    """An uploaded video's answer: every clip's result in order, and their mean."""

    stream: str
    clips: list[ClipResult]
    summary: Summary
    gated: int
    """Clips the darkness gate skipped (they have no result)."""
    segments: list[Segment]
    """The clips as runs of one top label, so that a short action is not averaged away."""


class Runtime:
    """Settings, clip queue, result store, camera registry and model registry, plus the
    background roles this process runs."""

    def __init__(
        self,
        settings: Settings,
        queue: ClipQueue,
        results: ResultStore,
        cameras: CameraRegistry,
        models: ModelRegistry,
        events: EventStore,
        roles: Iterable[str] = ROLES,
        redis_client: Redis | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.results = results
        self.cameras = cameras
        self.models = models
        self.active = ActiveModel(models, settings.model_poll_s)
        """The active version: this process's one reader of the pointer, which routers and
        workers ask."""
        self.events = events
        self.evidence = EvidenceStore(settings.event_dir)
        self.roles = frozenset(roles)
        if not self.roles <= ROLES:
            raise ValueError(f"unknown roles {sorted(self.roles - ROLES)}")
        self.redis = redis_client
        self.worker: InferenceWorker | None = None
        self._inference: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._decoders = ThreadPoolExecutor(settings.upload_decoders, thread_name_prefix="upload")

    @classmethod
    def from_settings(cls, settings: Settings, roles: Iterable[str] = ROLES) -> "Runtime":
        """In-memory parts, or Redis ones when Redis is configured (a URL or Sentinels;
        connected by `start()`)."""
        bounds = (settings.queue_files_max, settings.queue_live_max, settings.staleness_s)
        if not settings.redis_enabled():
            models = ModelRegistry(settings.model_root, MemoryPointer(), settings.model_dir)
            return cls(
                settings,
                MemoryQueue(*bounds),
                MemoryResults(settings.result_ttl_s),
                MemoryCameras(),
                models,
                MemoryEvents(),
                roles,
            )
        client = loop_client(settings, settings.redis_connections)
        pointer = RedisPointer(thread_client(settings))
        return cls(
            settings,
            RedisQueue(client, *bounds, settings.redis_wait_replicas, settings.redis_wait_ms),
            RedisResults(client, settings.result_ttl_s),
            RedisCameras(client),
            ModelRegistry(settings.model_root, pointer, settings.model_dir),
            RedisEvents(client),
            roles,
            client,
        )

    async def start(self) -> None:
        """Start this process's background roles (camera ingest, inference) and the queue-depth
        monitor; returns at once."""
        if self.redis is not None:
            await open_all(self.redis)
        if isinstance(self.queue, RedisQueue):
            await self.queue.ensure_groups()
        # Uploads (api) and event trackers (ingest) wait on announced results.
        if isinstance(self.results, RedisResults) and self.roles & {"api", "ingest"}:
            self._spawn(self.results.listen(self._stopping))
        self._spawn(self.active.run(self._stopping))
        self._spawn(self._watch_depth())
        if "ingest" in self.roles:
            notifier = Notifier(self.settings)
            self._spawn(self._until_stopped(notifier.run()))
            events = EventServices(
                self.events, self.evidence, self.results, notifier, self.settings
            )
            ingest = CameraIngest(self.cameras, self.queue, self.active, self.settings, events)
            self._spawn(ingest.run(self._stopping))
        if "infer" in self.roles:
            from service.infer import InferenceWorker  # torch-heavy: only where it runs

            self.worker = InferenceWorker(self.queue, self.results, self.active, self.settings)
            self._inference = self._spawn(self.worker.run(self._stopping))

    async def stop(self) -> None:
        """Stop the roles (in-flight batches finish) and close connections."""
        self._stopping.set()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._decoders.shutdown(wait=False, cancel_futures=True)
        if self.redis is not None:
            await self.redis.aclose()
        log.info("service roles stopped: %s", ", ".join(sorted(self.roles)))

    async def wait(self) -> None:
        """Until a role ends (it only does on `stop()` or by failing)."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a task that only ends when cancelled, until `stop()`."""
        task = asyncio.create_task(work)
        await self._stopping.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        task.add_done_callback(self._report)
        self._tasks.append(task)
        return task

    @staticmethod
    def _report(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("a service role failed", exc_info=task.exception())

    async def _watch_depth(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.queue.depth()
            except (redis.RedisError, OSError) as exc:
                log.warning("cannot read queue depth: %s", exc)
            await pause(self._stopping, _DEPTH_EVERY_S)

    async def readiness(self) -> dict[str, dict[str, Any]]:
        """Checks for a readiness probe, each `{"ok": bool, ...details}`: the queue answers, a
        model is active, and (where this process infers) the model is loaded."""
        checks: dict[str, dict[str, Any]] = {}
        try:
            checks["queue"] = {"ok": True, "depth": await self.queue.depth()}
        except (redis.RedisError, OSError) as exc:
            checks["queue"] = {"ok": False, "error": str(exc)}
        try:
            active = await self.active.get()
        except (redis.RedisError, OSError) as exc:
            active = None
            checks["model"] = {"ok": False, "error": str(exc)}
        else:
            checks["model"] = {"ok": active is not None, "version": active and active.version}
        if self.worker is not None:
            engine = self.worker.engine
            checks["inference"] = {
                "ok": engine is not None,
                "version": engine and engine.version,
                "backend": engine and engine.backend.name,
                # Every candidate's numbers, and why any was refused (e.g. INT8 off fp32).
                "candidates": engine and [asdict(trial) for trial in engine.trials],
            }
        return checks

    async def inference_ready(self) -> None:
        """Until this process's inference worker has loaded its model (at once where inference
        runs in other processes): a first start may time the backends for minutes, which must
        not count against a caller's deadline. InferenceDown if the worker stops first."""
        if self._inference is None or self.worker is None:
            return
        loaded = asyncio.create_task(self.worker.loaded.wait())
        try:
            await asyncio.wait({loaded, self._inference}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loaded.cancel()
        if self.worker.loaded.is_set():
            return
        failure = None if self._inference.cancelled() else self._inference.exception()
        raise InferenceDown(
            "inference stopped before its model loaded"
            + (f": {type(failure).__name__}: {failure}" if failure else "")
        )

    def queue_load(self) -> tuple[int, int]:
        """(clips queued, bound) of the upload lane as last seen (at most 0.5 s old): cheap
        enough to check before accepting each upload."""
        return self.queue.last_depth["files"], self.queue.bounds["files"]

    async def clip_spec(self) -> ClipSpec:
        """How the active model wants its clips cut (NoActiveModel while there is none)."""
        active = await self.active.get()
        if active is None:
            raise NoActiveModel(
                f"no active model version and no artifact at {self.settings.model_dir}"
            )
        return active.manifest.clip

    async def camera_statuses(self, camera_ids: list[str] | None = None) -> list[StreamStatus]:
        """Every camera's status (or those of `camera_ids`), warned against the active model."""
        active = await self.active.get()
        model_fps = active.manifest.clip.fps if active else None
        return await statuses(self.cameras, self.settings.staleness_s, model_fps, camera_ids)

    async def ingest_file(self, path: Path, stream: str | None = None) -> FileIngest:
        """Cut the video at `path` into clips and queue them (decoding in a thread; waits while
        the queue is full). The caller keeps `path` until this returns, then may delete it.

        Raises NoActiveModel, or av.FFmpegError / ValueError for a file that is not a video.
        """
        spec = await self.clip_spec()
        stream = stream or uuid.uuid4().hex
        return await ingest_file(path, stream, self.queue, spec, self.settings, self._decoders)

    async def classify(
        self, path: Path, stream: str | None = None, timeout: float = 300.0
    ) -> VideoResult:
        """Ingest the video at `path` and wait for all its clips' results (TimeoutError after
        `timeout` seconds of waiting for them once inference is ready)."""
        ingest = await self.ingest_file(path, stream)
        await self.inference_ready()
        clips = await self.results.wait(ingest.stream, ingest.clip_ids, timeout)
        spec = await self.clip_spec()
        return VideoResult(
            stream=ingest.stream,
            clips=clips,
            summary=summarize(clips, self.settings.top_k),
            gated=ingest.gated,
            segments=segments(clips, spec.frames, spec.fps, *cadence(spec, self.settings)[1:]),
        )

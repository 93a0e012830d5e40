"""The clients behind `lumos classify` and `lumos watch`: a running server over HTTP (through the
public `service.client`), or the bundled model in this process.

In-process, the client wires the same Runtime `lumos serve` runs (ingest, queue, inference worker)
in memory and vets a file with the same probe the upload endpoint uses, so both ways classify a
file identically and refuse a broken one for the same reason. Both hand back the service's own
result types (`ClipResult`, `Summary`), which `service.terminal` prints as tables, lines
or JSON.
"""

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.client import ApiError, AsyncClient
from service.pause import pause
from service.queue.base import ClipResult, Summary
from service.settings import Settings

Progress = Callable[[int, int | None], None]
"""progress(done, total): bytes sent (remote) or clips classified (in-process)."""

_POLL_S = 0.5
_STATUS_EVERY_S = 2.0


class ClientError(Exception):
    """What went wrong, worded for the person at the terminal."""


@dataclass(frozen=True)
class Classified:
    """A file's clips and whole-video summary, and the clip timing to place each clip in it."""

    model_version: str | None
    clips: list[ClipResult]
    video: Summary
    frames: int
    """Frames per clip, sampled at `fps`, a clip starting every `stride` frames."""
    fps: float
    stride: int

    def span(self, clip: ClipResult) -> tuple[float, float]:
        """Media seconds of the clip's first and last frame, from its place in the video."""
        first = clip.seq * self.stride
        return first / self.fps, (first + self.frames - 1) / self.fps


@dataclass(frozen=True)
class StatusChange:
    """A followed camera changed state (connecting, live, failing, stalled) or failed again."""

    state: str
    reconnects: int
    error: str | None
    next_retry_at: float | None

    @classmethod
    def of(cls, status: dict[str, Any]) -> "StatusChange":
        return cls(
            status["state"], status["reconnects"], status["last_error"], status["next_retry_at"]
        )


Update = ClipResult | StatusChange


class RemoteClient:
    """A Lumos server, through the public client (`service.client.AsyncClient`)."""

    def __init__(self, server: str, api_key: str | None) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
        self.api = AsyncClient(server, api_key, timeout=30.0)
        self._clips: dict[str | None, dict[str, Any]] = {}

    async def __aenter__(self) -> "RemoteClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.api.aclose()

    async def _clip(self, version: str | None) -> dict[str, Any]:
        """The clip block of model `version`'s manifest (default: the active model's)."""
        if version not in self._clips:
            models = await self.api.models()
            found = [m for m in models if m.version == version or (version is None and m.active)]
            if not found:
                raise ClientError(f"the server does not list model {version!r}")
            self._clips[version] = (found[0].model_extra or {})["manifest"]["clip"]
        return self._clips[version]

    async def classify(self, path: Path, progress: Progress) -> Classified:
        try:
            answer = await self.api.classify(path, progress)
            clip = await self._clip(answer.model_version)
        except ApiError as exc:
            raise ClientError(str(exc)) from exc
        return Classified(
            model_version=answer.model_version,
            clips=answer.clips,
            video=answer.video,
            frames=clip["frames"],
            fps=clip["fps"],
            stride=clip["frames"],  # the server's default stride; it does not say another
        )

    async def watch(self, url: str, stop: asyncio.Event) -> AsyncIterator[Update]:
        """Subscribe `url`, then its predictions (SSE) and status changes until `stop`; the
        subscription is removed on the way out."""
        try:
            stream = (await self.api.subscribe(url, name="lumos watch")).id
        except ApiError as exc:
            raise ClientError(str(exc)) from exc
        updates: asyncio.Queue[Update] = asyncio.Queue()
        readers = [
            asyncio.create_task(self._events(stream, updates)),
            asyncio.create_task(self._statuses(stream, updates)),
        ]
        stopped = asyncio.create_task(stop.wait())
        try:
            while True:
                update = asyncio.create_task(updates.get())
                await asyncio.wait({update, stopped, *readers}, return_when=asyncio.FIRST_COMPLETED)
                if not update.done():
                    update.cancel()
                    for reader in readers:
                        if reader.done():
                            reader.result()  # a reader that failed ends the watch with its error
                    return
                yield update.result()
        finally:
            for task in (stopped, *readers):
                task.cancel()
            await asyncio.gather(stopped, *readers, return_exceptions=True)
            with contextlib.suppress(ApiError):  # a server that is gone took it along
                await self.api.unsubscribe(stream)

    async def _events(self, stream: str, updates: asyncio.Queue[Update]) -> None:
        """Server-Sent Events of the stream, resumed after the last result when they drop."""
        since = time.time()
        while True:
            try:
                async for result in self.api.events(stream, since):
                    since = result.start
                    await updates.put(result)
            except ApiError as exc:
                if exc.status:  # an answer, not a dropped connection
                    raise ClientError(str(exc)) from exc
            await asyncio.sleep(_POLL_S)

    async def _statuses(self, stream: str, updates: asyncio.Queue[Update]) -> None:
        last = None
        while True:
            try:
                change = StatusChange.of((await self.api.stream(stream)).model_dump())
            except ApiError as exc:
                raise ClientError(str(exc)) from exc
            if change != last:
                await updates.put(change)
                last = change
            await asyncio.sleep(_STATUS_EVERY_S)


class LocalClient:
    """The model in `settings.model_dir` (or the active version), served in this process."""

    def __init__(self, settings: Settings, roles: set[str]) -> None:
        from service.runtime import Runtime  # torch: only for the in-process client

        self.settings = settings.model_copy(update={"redis_url": None, "redis_sentinels": None})
        self.runtime = Runtime.from_settings(self.settings, roles=roles)

    async def __aenter__(self) -> "LocalClient":
        if await self.runtime.active.get() is None:
            raise ClientError(
                f"no model at {self.settings.model_dir}: point LUMOS_MODEL_DIR at an artifact, "
                "or use --server"
            )
        await self.runtime.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runtime.stop()

    async def classify(self, path: Path, progress: Progress) -> Classified:
        import av

        from service.api.errors import Problem
        from service.api.uploads import UploadLimits, probe_video
        from service.runtime import NoActiveModel

        try:
            info = await asyncio.to_thread(probe_video, path, UploadLimits.of(self.settings))
        except Problem as problem:
            raise ClientError(problem.detail) from problem
        spec = await self.runtime.clip_spec()
        stride = self.settings.clip_stride or spec.frames
        expected = max(1, math.floor((info.duration * spec.fps - spec.frames) / stride) + 1)
        stream = uuid.uuid4().hex
        work = asyncio.create_task(
            self.runtime.classify(path, stream, timeout=max(60.0, 10 * info.duration))
        )
        while not work.done():
            progress(len(await self.runtime.results.for_stream(stream)), expected)
            await asyncio.wait({work}, timeout=_POLL_S)
        try:
            result = work.result()
        except NoActiveModel as exc:
            raise ClientError(str(exc)) from exc
        except TimeoutError as exc:
            raise ClientError("inference gave no results in time") from exc
        except (av.FFmpegError, ValueError) as exc:  # passed the probe, failed further in
            raise ClientError(f"decoding the video failed: {exc}") from exc
        versions = result.summary.model_versions
        return Classified(
            model_version=versions[-1] if versions else None,
            clips=result.clips,
            video=result.summary,
            frames=spec.frames,
            fps=spec.fps,
            stride=stride,
        )

    async def watch(self, url: str, stop: asyncio.Event) -> AsyncIterator[Update]:
        """The source as a camera of this process; a file plays through the same live path, and
        each end of it is a reconnect."""
        from service.cameras import Camera

        camera = Camera(id="watch", url=url, name="lumos watch")
        await self.runtime.cameras.add(camera)
        since = time.time()
        last = None
        while not stop.is_set():
            (status,) = await self.runtime.camera_statuses([camera.id])
            change = StatusChange.of(status.model_dump())
            if change != last:
                yield change
                last = change
            for result in await self.runtime.results.for_stream(camera.id, since=since):
                since = result.start
                yield result
            await pause(stop, _POLL_S)

"""The clients behind `lumos classify` and `lumos watch`: a running server over HTTP, or the
bundled model in this process.

In-process, the client wires the same Runtime `lumos serve` runs (ingest, queue, inference worker)
in memory and vets a file with the same probe the upload endpoint uses, so both ways classify a
file identically and refuse a broken one for the same reason. Both hand back the service's own
result types (`ClipResult`, `Summary`), which `classify_files` and `watch` print as tables, lines
or JSON.
"""

import asyncio
import contextlib
import json
import logging
import math
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm
from tqdm.utils import CallbackIOWrapper

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
    """A followed camera changed state (e.g. reconnecting) or reconnected."""

    status: str
    reconnects: int
    error: str | None


Update = ClipResult | StatusChange


class RemoteClient:
    """A Lumos server's HTTP API, with an API key when given."""

    def __init__(self, server: str, api_key: str | None) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=server, headers=headers, timeout=httpx.Timeout(30.0, read=None)
        )
        self._clips: dict[str | None, dict[str, Any]] = {}

    async def __aenter__(self) -> "RemoteClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.http.base_url}: {exc}") from exc
        if response.is_error:
            try:
                detail = response.json()["detail"]
            except (ValueError, KeyError, TypeError):
                detail = response.text[:200] or response.reason_phrase
            raise ClientError(f"{detail} (HTTP {response.status_code})")
        return response

    async def _clip(self, version: str | None) -> dict[str, Any]:
        """The clip block of model `version`'s manifest (default: the active model's)."""
        if version not in self._clips:
            models = (await self._call("GET", "/v1/models")).json()
            name = version or models["active"]
            found = [m for m in models["versions"] if m["version"] == name]
            if not found:
                raise ClientError(f"the server does not list model {name!r}")
            self._clips[version] = found[0]["manifest"]["clip"]
        return self._clips[version]

    async def classify(self, path: Path, progress: Progress) -> Classified:
        size, sent = path.stat().st_size, 0

        def count(n: int) -> None:
            nonlocal sent
            sent += n
            progress(sent, size)

        with path.open("rb") as f:
            upload = (path.name, CallbackIOWrapper(count, f, "read"))
            response = await self._call("POST", "/v1/classify", files={"file": upload})
        answer = response.json()
        while response.status_code == 202:  # a long video: classified in the background
            await asyncio.sleep(_POLL_S)
            response = await self._call("GET", answer["poll"])
            answer = response.json()
        if answer["status"] == "failed":
            raise ClientError(answer["problem"]["detail"])
        clip = await self._clip(answer["model_version"])
        return Classified(
            model_version=answer["model_version"],
            clips=[ClipResult.model_validate(c) for c in answer["clips"]],
            video=Summary.model_validate(answer["video"]),
            frames=clip["frames"],
            fps=clip["fps"],
            stride=clip["frames"],  # the server's default stride; it does not say another
        )

    async def watch(self, url: str, stop: asyncio.Event) -> AsyncIterator[Update]:
        """Subscribe `url`, then its predictions (SSE) and status changes until `stop`; the
        subscription is removed on the way out."""
        response = await self._call("POST", "/v1/streams", json={"url": url, "name": "lumos watch"})
        stream = response.json()["id"]
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
            with contextlib.suppress(httpx.HTTPError):  # a server that is gone took it along
                await self.http.delete(f"/v1/streams/{stream}")

    async def _events(self, stream: str, updates: asyncio.Queue[Update]) -> None:
        """Server-Sent Events of the stream, resumed after the last result when they drop."""
        since = time.time()
        while True:
            try:
                path = f"/v1/streams/{stream}/events"
                async with self.http.stream("GET", path, params={"since": since}) as response:
                    if response.is_error:
                        await response.aread()
                        raise ClientError(f"{path}: HTTP {response.status_code} {response.text}")
                    event = None
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:") and event == "prediction":
                            result = ClipResult.model_validate_json(line[5:])
                            since = result.start
                            await updates.put(result)
            except httpx.TransportError:
                pass
            await asyncio.sleep(_POLL_S)

    async def _statuses(self, stream: str, updates: asyncio.Queue[Update]) -> None:
        last = None
        while True:
            status = (await self._call("GET", f"/v1/streams/{stream}")).json()
            change = StatusChange(status["status"], status["reconnects"], status["last_error"])
            if change != last:
                await updates.put(change)
                last = change
            await asyncio.sleep(_STATUS_EVERY_S)


class LocalClient:
    """The model in `settings.model_dir` (or the active version), served in this process."""

    def __init__(self, settings: Settings, roles: set[str]) -> None:
        from service.runtime import Runtime  # torch: only for the in-process client

        self.settings = settings.model_copy(update={"redis_url": None})
        self.runtime = Runtime.from_settings(self.settings, roles=roles)

    async def __aenter__(self) -> "LocalClient":
        if await asyncio.to_thread(self.runtime.models.active) is None:
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
        from service.api.routers.classify import _limits
        from service.api.uploads import probe_video
        from service.runtime import NoActiveModel

        try:
            info = await asyncio.to_thread(probe_video, path, _limits(self.runtime))
        except Problem as problem:
            raise ClientError(problem.detail) from problem
        spec = await asyncio.to_thread(self.runtime.clip_spec)
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
        while not stop.is_set():
            for result in await self.runtime.results.for_stream(camera.id, since=since):
                since = result.start
                yield result
            try:
                await asyncio.wait_for(stop.wait(), _POLL_S)
            except TimeoutError:
                pass


def _client(server: str | None, api_key: str | None, roles: set[str]) -> RemoteClient | LocalClient:
    return RemoteClient(server, api_key) if server else LocalClient(Settings(), roles)


def _top(scores: dict[str, float], k: int) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)[:k]


def as_json(name: str, result: Classified, top: int) -> dict[str, Any]:
    """A file's answer for scripts: the same shape whichever way it was classified."""

    def labels(scores: dict[str, float]) -> list[dict[str, Any]]:
        return [{"label": label, "score": score} for label, score in _top(scores, top)]

    return {
        "file": name,
        "model_version": result.model_version,
        "video": {"top": labels(result.video.scores)},
        "clips": [
            {
                "seq": clip.seq,
                "start": round(result.span(clip)[0], 3),
                "end": round(result.span(clip)[1], 3),
                "top": labels(clip.scores),
                "luma": clip.illumination.luma_mean,
                "error": clip.error,
            }
            for clip in result.clips
        ],
    }


def as_table(name: str, result: Classified, top: int) -> str:
    """One row per clip (start-end, top labels and scores, mean luma), then the whole video."""
    width = max((len(label) for label in result.video.scores), default=5)
    column = (width + 8) * top - 2

    def labels(scores: dict[str, float]) -> str:
        return "  ".join(f"{label:<{width}} {score:.3f}" for label, score in _top(scores, top))

    def row(when: str, text: str, luma: str) -> str:
        return f"  {when:<13} {text:<{column}}  {luma:>5}"

    lines = [f"{name}: model {result.model_version}, {len(result.clips)} clips"]
    lines.append(row("time (s)", "label and score", "luma"))
    for clip in result.clips:
        start, end = result.span(clip)
        text = f"error: {clip.error}" if clip.error else labels(clip.scores)
        lines.append(row(f"{start:.1f}-{end:.1f}", text, f"{clip.illumination.luma_mean:.1f}"))
    lumas = [clip.illumination.luma_mean for clip in result.clips]
    mean = f"{sum(lumas) / len(lumas):.1f}" if lumas else "-"
    lines.append(row("whole video", labels(result.video.scores), mean))
    return "\n".join(lines)


async def classify_files(
    files: list[Path],
    server: str | None,
    api_key: str | None,
    top: int,
    json_out: bool,
    save: Path | None = None,
    enhanced: bool = False,
) -> int:
    """`lumos classify`: a table (or JSON) per file; 1 when a file could not be classified.
    With `save` (one file), also the video annotated with each clip's labels."""
    failed = 0
    answers = []
    try:
        async with _client(server, api_key, {"infer"}) as client:
            for path in files:
                # The bar appears only for a video that takes a while, and only on a terminal.
                with tqdm(desc=path.name, delay=2.0, leave=False, disable=None) as bar:

                    def progress(done: int, total: int | None, bar: tqdm = bar) -> None:
                        bar.total, bar.n = total, done
                        bar.refresh()

                    try:
                        if not path.is_file():
                            raise ClientError("no such file")
                        result = await client.classify(path, progress)
                    except (ClientError, OSError) as exc:
                        print(f"lumos classify: {path}: {exc}", file=sys.stderr)
                        failed += 1
                        continue
                if json_out:
                    answers.append(as_json(str(path), result, top))
                else:
                    print(as_table(str(path), result, top), flush=True)
                if save is not None:
                    from service.annotate import annotate

                    clips = [(result.span(clip)[0], clip) for clip in result.clips]
                    try:
                        await asyncio.to_thread(annotate, path, save, clips, top, enhanced)
                    except (OSError, ValueError) as exc:  # av.FFmpegError is an OSError
                        print(f"lumos classify: cannot write {save}: {exc}", file=sys.stderr)
                        failed += 1
    except ClientError as exc:
        print(f"lumos classify: {exc}", file=sys.stderr)
        return 2
    if json_out:
        print(json.dumps(answers, indent=2))
    return 1 if failed else 0


def format_update(update: Update, top: int) -> str:
    if isinstance(update, StatusChange):
        error = f"; last error: {update.error}" if update.error else ""
        return f"-- {update.status} ({update.reconnects} reconnects{error})"
    when = datetime.fromtimestamp(update.end).strftime("%H:%M:%S")
    labels = update.error or "  ".join(f"{k} {v:.3f}" for k, v in _top(update.scores, top))
    mark = "  (after a reconnect)" if update.integrity.reconnect else ""
    return f"{when}  {labels}  luma {update.illumination.luma_mean:.1f}{mark}"


async def watch(url: str, server: str | None, api_key: str | None, top: int, json_out: bool) -> int:
    """`lumos watch`: print the source's predictions as they come until Ctrl-C (or SIGTERM)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with _client(server, api_key, {"ingest", "infer"}) as client:
            async for update in client.watch(url, stop):
                if json_out:
                    line = json.dumps(
                        asdict(update)
                        if isinstance(update, StatusChange)
                        else update.model_dump(mode="json")
                    )
                else:
                    line = format_update(update, top)
                print(line, flush=True)
    except ClientError as exc:
        print(f"lumos watch: {exc}", file=sys.stderr)
        return 1
    print("lumos watch: stopped", file=sys.stderr)
    return 0

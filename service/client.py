"""A small Python client of a Lumos server's HTTP API: `AsyncClient`, and `Client` for plain code.

    from service.client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as lumos:
        answer = lumos.classify("dark.mp4")
        print(answer.video.top[0].label, answer.video.top[0].score)

Answers come back typed (the service's own `ClipResult`, `Summary`, `StreamStatus`, and the
records below); an error answer raises `ApiError` with the problem's `status`, `reason` and
`detail`. Importing this module loads neither torch nor the service's API.
"""

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter

from service.camera_status import StreamStatus
from service.queue.base import ClipResult, Summary

DEFAULT_URL = "http://127.0.0.1:8000"
_POLL_S = 0.5
T = TypeVar("T")


class ApiError(Exception):
    """An error answer of the server (problem details), or the server out of reach (status 0)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{detail} (HTTP {status}, {reason})" if status else detail)
        self.status = status
        self.reason = reason
        self.detail = detail


class _Record(BaseModel):
    """An answer's fields a client reads; any others the server sends are kept as extras."""

    model_config = ConfigDict(extra="allow")


class Classification(_Record):
    """A classified video: every clip's result and the whole video's."""

    id: str
    model_version: str | None
    video: Summary
    clips: list[ClipResult]


class Job(_Record):
    """A training job."""

    id: str
    stage: str
    dataset: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float
    step: str | None
    metrics: dict[str, Any]
    error: str | None
    model_version: str | None


class Model(_Record):
    """A registered model version."""

    version: str
    active: bool
    created: datetime
    labels: list[str]
    metrics: dict[str, Any]


Progress = Callable[[int, int], None]
"""progress(bytes sent, bytes in all) while a video uploads."""


class AsyncClient:
    """A Lumos server, for asyncio code. Use it as `async with AsyncClient(...) as lumos:`."""

    def __init__(
        self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=url, headers=headers, timeout=httpx.Timeout(timeout, read=None)
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"cannot reach {self.http.base_url}: {exc}") from exc
        if response.is_error:
            raise _problem(response.status_code, response.text)
        return response

    async def _json(self, kind: type[T], method: str, path: str, **kwargs: Any) -> T:
        return TypeAdapter(kind).validate_python((await self._call(method, path, **kwargs)).json())

    # Uploads.

    async def classify(self, video: str | Path, progress: Progress | None = None) -> Classification:
        """Classify the video file at `video`, waiting for a long one's background answer."""
        path = Path(video)
        size, sent = path.stat().st_size, 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            with path.open("rb") as f:
                while chunk := f.read(1 << 16):
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, size)
                    yield chunk

        body, content_type = _multipart(path.name, chunks())
        response = await self._call(
            "POST", "/v1/classify", content=body, headers={"Content-Type": content_type}
        )
        answer = response.json()
        while response.status_code == 202 or answer.get("status") == "pending":
            await asyncio.sleep(_POLL_S)
            response = await self._call("GET", answer["poll"])
            answer = response.json()
        if answer.get("status") == "failed":
            problem = answer["problem"]
            raise ApiError(problem["status"], problem["reason"], problem["detail"])
        return Classification.model_validate(answer)

    # Cameras.

    async def streams(self) -> list[StreamStatus]:
        """Every subscribed camera and its state."""
        return await self._json(list[StreamStatus], "GET", "/v1/streams")

    async def stream(self, stream_id: str) -> StreamStatus:
        return await self._json(StreamStatus, "GET", f"/v1/streams/{stream_id}")

    async def subscribe(self, url: str, name: str = "", **options: Any) -> StreamStatus:
        """Subscribe a camera; `options` are the API's (`id`, `sampling`, `stride`, `webhook`)."""
        body = {"url": url, "name": name, **options}
        return await self._json(StreamStatus, "POST", "/v1/streams", json=body)

    async def unsubscribe(self, stream_id: str) -> None:
        await self._call("DELETE", f"/v1/streams/{stream_id}")

    async def predictions(self, stream_id: str, since: float = 0.0) -> list[ClipResult]:
        """The camera's results of clips started after `since` (Unix time), oldest first."""
        answer = await self._call(
            "GET", f"/v1/streams/{stream_id}/predictions", params={"since": since}
        )
        return TypeAdapter(list[ClipResult]).validate_python(answer.json()["results"])

    async def events(self, stream_id: str, since: float | None = None) -> AsyncIterator[ClipResult]:
        """The camera's results as they are classified (Server-Sent Events), until the server
        ends the stream or the caller stops iterating."""
        params = {} if since is None else {"since": since}
        path = f"/v1/streams/{stream_id}/events"
        try:
            async with self.http.stream("GET", path, params=params) as response:
                if response.is_error:
                    raise _problem(response.status_code, (await response.aread()).decode())
                event = None
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "prediction":
                        yield ClipResult.model_validate_json(line[5:])
        except httpx.TransportError as exc:
            raise ApiError(0, "unreachable", f"the event stream broke off: {exc}") from exc

    # Training and models.

    async def jobs(self) -> list[Job]:
        """Every training job, newest first."""
        return await self._json(list[Job], "GET", "/v1/jobs")

    async def job(self, job_id: str) -> Job:
        return await self._json(Job, "GET", f"/v1/jobs/{job_id}")

    async def submit_job(
        self,
        stage: str,
        dataset: str,
        overrides: dict[str, Any] | None = None,
        activate: bool = False,
    ) -> Job:
        """Queue a training job (`pipeline`, `teacher`, `ssl`, `distill` or `eval`)."""
        body = {"stage": stage, "dataset": dataset, "overrides": overrides or {}}
        return await self._json(Job, "POST", "/v1/jobs", json={**body, "activate": activate})

    async def cancel_job(self, job_id: str) -> Job:
        return await self._json(Job, "DELETE", f"/v1/jobs/{job_id}")

    async def models(self) -> list[Model]:
        """Every registered model version, the active one marked."""
        answer = await self._call("GET", "/v1/models")
        return TypeAdapter(list[Model]).validate_python(answer.json()["versions"])

    async def activate(self, version: str) -> Model:
        """Serve model `version` from now on."""
        return await self._json(Model, "POST", f"/v1/models/{version}/activate")


class Client:
    """A Lumos server, for code without an event loop: each method is its `AsyncClient` twin's,
    run on this client's own loop (so not from inside a running loop; use `AsyncClient` there).
    Use it as `with Client(...) as lumos:`."""

    def __init__(
        self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = AsyncClient(url, api_key, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run_until_complete(self._async.aclose())
        self._loop.close()

    def _run(self, work: Any) -> Any:
        return self._loop.run_until_complete(work)

    def classify(self, video: str | Path, progress: Progress | None = None) -> Classification:
        return self._run(self._async.classify(video, progress))

    def streams(self) -> list[StreamStatus]:
        return self._run(self._async.streams())

    def stream(self, stream_id: str) -> StreamStatus:
        return self._run(self._async.stream(stream_id))

    def subscribe(self, url: str, name: str = "", **options: Any) -> StreamStatus:
        return self._run(self._async.subscribe(url, name, **options))

    def unsubscribe(self, stream_id: str) -> None:
        self._run(self._async.unsubscribe(stream_id))

    def predictions(self, stream_id: str, since: float = 0.0) -> list[ClipResult]:
        return self._run(self._async.predictions(stream_id, since))

    def jobs(self) -> list[Job]:
        return self._run(self._async.jobs())

    def job(self, job_id: str) -> Job:
        return self._run(self._async.job(job_id))

    def submit_job(
        self,
        stage: str,
        dataset: str,
        overrides: dict[str, Any] | None = None,
        activate: bool = False,
    ) -> Job:
        return self._run(self._async.submit_job(stage, dataset, overrides, activate))

    def cancel_job(self, job_id: str) -> Job:
        return self._run(self._async.cancel_job(job_id))

    def models(self) -> list[Model]:
        return self._run(self._async.models())

    def activate(self, version: str) -> Model:
        return self._run(self._async.activate(version))


def _problem(status: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
        return ApiError(status, body["reason"], body["detail"])
    except (ValueError, KeyError, TypeError):
        return ApiError(status, "http_error", text[:200] or f"HTTP {status}")


def _multipart(name: str, chunks: AsyncIterator[bytes]) -> tuple[AsyncIterator[bytes], str]:
    """A multipart body with the one field `file`, streamed (a video is never held in memory)."""
    boundary = f"lumos-{secrets.token_hex(12)}"
    quoted = name.replace('"', "%22")
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        async for chunk in chunks:
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    return body(), f"multipart/form-data; boundary={boundary}"

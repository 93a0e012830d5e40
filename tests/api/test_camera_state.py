"""A dead camera must look dead: the API (in-process, over the app's real HTTP stack) shows a
camera whose RTSP port refuses as `failing`, says why, counts its reconnects from the first failure
and says when it tries again; an HTTP source that cannot serve the video shows its error too."""

import asyncio
import http.server
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.api.app import create_app
from service.metrics import STREAM_RECONNECTS
from service.runtime import Runtime
from service.settings import Settings
from tests.servers import TEST_NETWORKS, free_port
from training.video import write_video


@asynccontextmanager
async def serving(tiny_artifact: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The API with camera ingest (no inference) on this event loop, in memory."""
    settings = Settings(
        model_dir=tiny_artifact,
        model_root=tmp_path / "models",
        runs_dir=tmp_path / "runs",
        reconnect_backoff="1",
        lease_ms=1000,
        open_timeout_s=3,
        camera_networks=TEST_NETWORKS,
    )
    runtime = Runtime.from_settings(settings, roles={"api", "ingest"})
    await runtime.start()
    app = create_app(runtime, run_trainer=False)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://lumos") as client:
            yield client
    finally:
        await runtime.stop()


async def until(read, check, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"not in {timeout} s: {value}"
        await asyncio.sleep(0.2)


def test_a_refusing_camera_is_failing_with_its_reason_and_retries(tiny_artifact, tmp_path):
    asyncio.run(_refusing_camera(tiny_artifact, tmp_path))


async def _refusing_camera(tiny_artifact: Path, tmp_path: Path) -> None:
    async with serving(tiny_artifact, tmp_path) as api:
        url = f"rtsp://viewer:s3cret@127.0.0.1:{free_port()}/cam"  # nothing listens there
        created = await api.post("/v1/streams", json={"url": url, "id": "dead", "name": "Dead"})
        assert created.status_code == 201, created.text
        assert created.json()["state"] == "connecting"

        async def status() -> dict:
            return (await api.get("/v1/streams/dead")).json()

        first = await until(status, lambda s: s["state"] == "failing", 30)
        assert "refused" in first["last_error"].lower()
        assert "s3cret" not in first["last_error"]
        assert first["reconnects"] >= 1 and first["worker"]
        assert first["next_retry_at"] > time.time() - 1
        later = await until(status, lambda s: s["reconnects"] > first["reconnects"], 15)
        assert later["state"] == "failing" and later["next_retry_at"] > first["next_retry_at"]
        assert STREAM_RECONNECTS.labels(stream="dead")._value.get() >= later["reconnects"]
        listed = (await api.get("/v1/streams")).json()
        assert [s["state"] for s in listed] == ["failing"]
        no_frame = await api.get("/v1/streams/dead/frame")
        assert (no_frame.status_code, no_frame.json()["reason"]) == (404, "no_frame")


class _NoRange(http.server.SimpleHTTPRequestHandler):
    """Python's plain file server: it ignores Range, so FFmpeg cannot seek to an MP4's index at
    its end (where PyAV writes it) and decodes nothing."""

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def plain_http(tmp_path: Path) -> Iterator[str]:
    # Noise, so that the file outgrows FFmpeg's read buffer and its index is out of reach.
    noise = np.random.default_rng(0).integers(0, 256, (24, 240, 320, 3), dtype=np.uint8)
    write_video(tmp_path / "moov-at-end.mp4", noise, 12.0, codec="libx264")
    handler = lambda *a: _NoRange(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_an_http_source_that_fails_shows_its_error(tiny_artifact, tmp_path, plain_http):
    asyncio.run(_failing_http(tiny_artifact, tmp_path, plain_http))


async def _failing_http(tiny_artifact: Path, tmp_path: Path, plain_http: str) -> None:
    async with serving(tiny_artifact, tmp_path) as api:
        created = await api.post(
            "/v1/streams", json={"url": f"{plain_http}/moov-at-end.mp4", "id": "web"}
        )
        assert created.status_code == 201, created.text

        async def status() -> dict:
            return (await api.get("/v1/streams/web")).json()

        failing = await until(status, lambda s: s["state"] == "failing", 30)
        # FFmpeg's words for the failed read come first, then the hint in ours.
        reason, _, hint = failing["last_error"].partition(" (before the first frame: ")
        assert reason and "Range requests" in hint, failing["last_error"]

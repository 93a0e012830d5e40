"""The public Python client (`service.client`) against a real `lumos serve` with API keys on:
typed answers for uploads, cameras, jobs and models, and errors as `ApiError` with the reason."""

import asyncio

import pytest

from bench.servers import free_port, wait_for
from service.camera_status import StreamStatus
from service.client import ApiError, AsyncClient, Classification, Client
from service.queue.base import ClipResult
from tests.api.conftest import API_KEY, Service, service_env
from tests.conftest import ARID_LABELS


@pytest.fixture(scope="module")
def service(service_factory, tiny_artifact, tmp_path_factory) -> Service:
    env = service_env(tmp_path_factory.mktemp("client"), tiny_artifact, api_keys=API_KEY)
    return service_factory("serve", env)


def test_sync_client_classifies_and_manages(service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=24)
    sent: list[tuple[int, int]] = []
    with Client(service.url, api_key=API_KEY) as lumos:
        answer = lumos.classify(video, progress=lambda done, total: sent.append((done, total)))
        assert isinstance(answer, Classification) and answer.model_version == "tiny-1"
        assert [clip.seq for clip in answer.clips] == [0, 1, 2]
        assert answer.video.top[0].label in ARID_LABELS
        assert sent[-1][0] == sent[-1][1] == video.stat().st_size

        models = lumos.models()
        assert [(m.version, m.active) for m in models] == [("tiny-1", True)]
        assert models[0].labels == ARID_LABELS
        with pytest.raises(ApiError) as refused:
            lumos.activate("nope")
        assert (refused.value.status, refused.value.reason) == (404, "unknown_version")

        assert lumos.jobs() == []
        with pytest.raises(ApiError) as missing:
            lumos.submit_job("ssl", "no-such-data")
        assert missing.value.reason == "unknown_dataset"

        dead = lumos.subscribe(f"rtsp://127.0.0.1:{free_port()}/cam", name="Dead", id="dead")
        assert isinstance(dead, StreamStatus) and dead.state == "connecting"
        failing = wait_for(
            lambda: (s := lumos.stream("dead")).state == "failing" and s, 30, "failing"
        )
        assert failing.last_error and failing.reconnects >= 1
        assert [s.id for s in lumos.streams()] == ["dead"]
        assert lumos.predictions("dead") == []
        lumos.unsubscribe("dead")
        assert lumos.streams() == []

    with Client(service.url) as anonymous, pytest.raises(ApiError) as unauthorised:
        anonymous.classify(video)
    assert unauthorised.value.reason == "missing_api_key"


def test_async_client_follows_a_camera(service, rtsp_camera):
    camera = rtsp_camera(fps=12)

    async def follow() -> list[ClipResult]:
        async with AsyncClient(service.url, api_key=API_KEY) as lumos:
            await lumos.subscribe(camera.url(), id="yard")
            results = []
            async for result in lumos.events("yard", since=0):
                results.append(result)
                if len(results) == 2:
                    break
            await lumos.unsubscribe("yard")
            return results

    first, second = asyncio.run(asyncio.wait_for(follow(), 90))
    assert first.stream == second.stream == "yard" and second.seq > first.seq
    assert first.top[0].label in ARID_LABELS

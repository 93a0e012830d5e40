"""Camera subscriptions, leases and the fair-share ownership loop, on both registries."""

import asyncio
from collections.abc import Callable

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from bench.servers import RedisServer
from service.camera_health import CameraHealth
from service.cameras import Camera, CameraRegistry, MemoryCameras, RedisCameras
from service.ownership import Ownership


@pytest.fixture(params=["memory", "redis"])
def run(request: pytest.FixtureRequest) -> Callable[..., None]:
    def go(test) -> None:
        async def main() -> None:
            if request.param == "memory":
                await test(MemoryCameras())
                return
            server: RedisServer = request.getfixturevalue("redis_server")
            client = Redis.from_url(server.url)
            try:
                await test(RedisCameras(client))
            finally:
                await client.aclose()

        asyncio.run(main())

    return go


def test_subscriptions_are_kept_and_shown_without_credentials(run) -> None:
    async def body(registry: CameraRegistry) -> None:
        await registry.add(Camera(id="b", url="rtsp://u:secret@h/b"))
        await registry.add(Camera(id="a", url="rtsp://h/a", name="Lobby"))
        await registry.add(Camera(id="a", url="rtsp://h/a2"))  # replaces
        assert [c.id for c in await registry.all()] == ["a", "b"]
        assert (await registry.get("a")).url == "rtsp://h/a2"
        assert (await registry.get("b")).public()["url"] == "rtsp://***@h/b"
        assert await registry.remove("b") and not await registry.remove("b")
        assert await registry.get("b") is None
        hook = "https://u:secret@h/hook?token=t"
        await registry.add(Camera(id="c", url="rtsp://h/c", sampling=7.5, stride=4, webhook=hook))
        camera = await registry.get("c")
        assert (camera.sampling, camera.stride, camera.webhook) == (7.5, 4, hook)
        assert camera.public()["webhook"] == "https://***@h/hook?token=***"

    run(body)


def test_camera_ids_are_checked() -> None:
    for bad in ("", "has space", "../x", "a" * 65):
        with pytest.raises(ValidationError):
            Camera(id=bad, url="rtsp://h/x")


def test_a_lease_has_one_holder_until_released_or_expired(run) -> None:
    async def body(registry: CameraRegistry) -> None:
        assert await registry.acquire("cam", "w1", 5000)
        assert not await registry.acquire("cam", "w2", 5000)
        assert not await registry.renew("cam", "w2", 5000)
        await registry.release("cam", "w2")  # not the holder: no effect
        assert await registry.owner("cam") == "w1"
        assert await registry.renew("cam", "w1", 5000)
        await registry.release("cam", "w1")
        assert await registry.owner("cam") is None
        assert await registry.acquire("cam", "w2", 200)
        await asyncio.sleep(0.3)  # w2 stops renewing
        assert await registry.owner("cam") is None
        assert await registry.acquire("cam", "w1", 5000)

    run(body)


def test_worker_heartbeats_expire(run) -> None:
    async def body(registry: CameraRegistry) -> None:
        await registry.heartbeat("w1", 1000)
        await registry.heartbeat("w2", 10_000)
        assert await registry.workers() == ["w1", "w2"]
        await asyncio.sleep(1.1)
        assert await registry.workers() == ["w2"]

    run(body)


class Recorder:
    """What an ownership loop asked its worker to run."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.starts: list[str] = []

    async def start(self, camera: Camera) -> None:
        self.running.add(camera.id)
        self.starts.append(camera.id)

    async def stop(self, camera_id: str) -> None:
        self.running.discard(camera_id)


def test_two_workers_split_the_cameras_and_one_takes_all_when_the_other_dies(run) -> None:
    lease_ms = 1500  # long enough for a few ticks on a busy machine

    async def body(registry: CameraRegistry) -> None:
        for i in range(4):
            await registry.add(Camera(id=f"cam{i}", url=f"rtsp://h/{i}"))
        a, b = Recorder(), Recorder()
        first = Ownership(registry, "a", lease_ms, a.start, a.stop)
        second = Ownership(registry, "b", lease_ms, b.start, b.stop)
        await first.tick()
        assert len(a.running) == 4  # alone: takes everything
        await second.tick()  # joins: its share is 2, but a still holds all four
        await first.tick()  # a sees two workers: hands two back
        await second.tick()
        assert len(a.running) == len(b.running) == 2 and not a.running & b.running
        mine = set(a.running)
        # b dies (stops ticking); a, ticking on, takes b's cameras once b's leases lapse.
        for _ in range(5):
            await asyncio.sleep(lease_ms / 3000)
            await first.tick()
        assert a.running == {f"cam{i}" for i in range(4)}
        assert all(a.starts.count(camera) == 1 for camera in mine)  # a never lost its own

    run(body)


def test_changed_or_removed_subscriptions_restart_or_stop_their_camera(run) -> None:
    async def body(registry: CameraRegistry) -> None:
        await registry.add(Camera(id="x", url="rtsp://h/1"))
        await registry.add(Camera(id="y", url="rtsp://h/2"))
        worker = Recorder()
        ownership = Ownership(registry, "w", 1000, worker.start, worker.stop)
        await ownership.tick()
        await registry.add(Camera(id="x", url="rtsp://h/1-new"))
        await registry.remove("y")
        await ownership.tick()
        assert worker.running == {"x"} and worker.starts.count("x") == 2
        assert ownership.owned["x"].url == "rtsp://h/1-new"
        assert await registry.owner("y") is None

    run(body)


def test_ownership_run_gives_everything_back_when_stopped(run) -> None:
    async def body(registry: CameraRegistry) -> None:
        await registry.add(Camera(id="x", url="rtsp://h/1"))
        worker = Recorder()
        ownership = Ownership(registry, "w", 1500, worker.start, worker.stop)
        stopping = asyncio.Event()
        task = asyncio.create_task(ownership.run(stopping))
        for _ in range(100):
            if worker.running:
                break
            await asyncio.sleep(0.05)
        assert worker.running == {"x"}
        stopping.set()
        await asyncio.wait_for(task, 2.0)
        assert worker.running == set() and await registry.owner("x") is None

    run(body)


def test_health_and_key_frames_are_read_with_the_cameras_in_one_overview(run) -> None:
    async def body(registry: CameraRegistry) -> None:
        for camera_id in ("a", "b"):
            await registry.add(Camera(id=camera_id, url=f"rtsp://h/{camera_id}"))
        assert await registry.acquire("a", "w1", 10_000)
        failing = CameraHealth(
            state="failing", last_error="Connection refused", reconnects=3, reported_at=1.0
        )
        await registry.report("a", failing)
        await registry.keep_frame("a", b"frame")
        views = await registry.overview()
        assert [(v.camera.id, v.owner, v.health) for v in views] == [
            ("a", "w1", failing),
            ("b", None, None),
        ]
        assert [v.camera.id for v in await registry.overview(["b"])] == ["b"]
        assert await registry.frame("a") == b"frame" and await registry.frame("b") is None
        await registry.remove("a")
        await registry.add(Camera(id="a", url="rtsp://h/a"))  # subscribed anew: a clean slate
        assert (await registry.overview(["a"]))[0].health is None
        assert await registry.frame("a") is None

    run(body)

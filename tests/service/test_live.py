"""Live cameras over real RTSP: continuous predictions, surviving an outage, a slow consumer."""

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bench.servers import TEST_NETWORKS, free_port, wait_for
from service.cameras import Camera
from service.queue.redis import lane_key
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import TINY_CLIP, make_artifact
from tests.service.clips import metric


def resident_kib() -> int:
    """This process's resident memory now (not `ru_maxrss`, the lifetime peak, which a test
    process that loaded torch earlier has long since passed)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def live_settings(tiny_artifact: Path, tmp_path: Path, **changes) -> Settings:
    base = dict(
        model_dir=tiny_artifact,
        model_root=tmp_path / "models",
        cache_dir=tmp_path / "cache",
        backend="fp32",
        reconnect_backoff="0.5x200,1",
        open_timeout_s=2.0,
        stall_timeout_s=3.0,
        lease_ms=1500,
        batch_wait_ms=20,
        camera_networks=TEST_NETWORKS,
    )
    return Settings(**(base | changes))


async def results_since(runtime: Runtime, stream: str, since: float, count: int, timeout: float):
    """Wait until `stream` has `count` results of clips started after `since`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        results = await runtime.results.for_stream(stream, since)
        if len(results) >= count:
            return results
        await asyncio.sleep(0.2)
    raise AssertionError(f"fewer than {count} results of {stream} after {timeout} s")


@pytest.mark.system  # a fault held for 15 s of real time: the system tier's, not `make check`'s
def test_predictions_resume_after_the_camera_is_down_for_15_s(
    rtsp_camera, tiny_artifact: Path, tmp_path: Path
) -> None:
    camera = rtsp_camera(paths=("/cam",))
    runtime = Runtime.from_settings(live_settings(tiny_artifact, tmp_path))
    reconnects = metric("lumos_stream_reconnects_total", stream="lobby")

    async def main() -> None:
        await runtime.cameras.add(Camera(id="lobby", url=camera.url()))
        await runtime.start()
        try:
            first = await results_since(runtime, "lobby", 0, 3, timeout=120)
            assert all(r.error is None and r.top for r in first)
            # Up again if the first session ended early (seen on a loaded AMX machine while the
            # inference worker timed its backends).
            up = lambda: metric("lumos_stream_up", stream="lobby") == 1  # noqa: E731
            await asyncio.to_thread(wait_for, up, 30, "the camera up")
            await asyncio.to_thread(camera.kill)
            down = time.time()
            await asyncio.sleep(15)
            assert metric("lumos_stream_up", stream="lobby") == 0
            during = await runtime.results.for_stream("lobby", down + 3)
            assert during == []  # nothing invented while the camera was away
            await asyncio.to_thread(camera.start)
            back = time.time()
            after = await results_since(runtime, "lobby", back, 3, timeout=120)
            assert [r.seq for r in after] == sorted(r.seq for r in after)
            assert metric("lumos_stream_reconnects_total", stream="lobby") - reconnects >= 1
            # The first clip after the outage holds frames from both sides, and says so.
            bridging = (await runtime.results.for_stream("lobby", down - 5))[-len(after) - 1 :]
            assert any(r.integrity.reconnect and r.integrity.max_gap > 10 for r in bridging)
            assert not any(task.done() for task in runtime._tasks)  # no worker restarted
        finally:
            await runtime.stop()

    asyncio.run(main())


def test_a_slow_consumer_bounds_memory_counts_drops_and_holds_the_staleness_budget(
    rtsp_camera, redis_server, tiny_artifact: Path, tmp_path: Path
) -> None:
    camera = rtsp_camera(paths=("/fast",), fps=15)
    budget, bound = 1.5, 6
    settings = live_settings(
        tiny_artifact,
        tmp_path,
        redis_url=redis_server.url,
        clip_stride=2,  # 12 fps sampled, a clip every 2 frames: 6 clips/s
        queue_live_max=bound,
        staleness_s=budget,
    )
    runtime = Runtime.from_settings(settings, roles={"ingest"})

    def dropped() -> float:
        return sum(
            metric("lumos_stream_frames_dropped_total", stream="fast", reason=reason)
            for reason in ("overflow", "stale")
        )

    dropped_before = dropped()
    cut_before = metric("lumos_stream_clips_total", stream="fast")

    async def main() -> None:
        client = Redis.from_url(redis_server.url)
        await runtime.cameras.add(Camera(id="fast", url=camera.url()))
        await runtime.start()
        ages, lengths, rss = [], [], []
        try:
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                got = await runtime.queue.get("slow", 1, 2.0)  # 2 clips/s at most
                ages += [time.time() - d.clip.end for d in got]
                lengths.append(await client.xlen(lane_key("live")))
                rss.append(resident_kib())
                await asyncio.sleep(0.5)
                await runtime.queue.ack(got)
        finally:
            await runtime.stop()
        left = await client.xlen(lane_key("live"))
        await client.aclose()
        assert len(ages) >= 10 and max(ages) <= budget  # nothing delivered past the budget
        assert max(lengths) <= bound + 1  # bounded lane (+ the one clip being handled)
        # Never silent: every clip cut was delivered, is still queued, or was counted dropped.
        cut = metric("lumos_stream_clips_total", stream="fast") - cut_before
        assert cut == len(ages) + left + dropped() - dropped_before
        assert dropped() - dropped_before >= 10  # producing ~3x faster than consuming
        # Memory stops growing once the buffers are full (second half adds < 20 MB).
        assert rss[-1] - rss[len(rss) // 2] < 20 * 1024

    asyncio.run(main())


def test_camera_credentials_never_reach_the_logs(
    caplog: pytest.LogCaptureFixture, tiny_artifact: Path, tmp_path: Path
) -> None:
    secret = "hunter2-secret"
    url = f"rtsp://admin:{secret}@127.0.0.1:{free_port()}/cam?token={secret}"
    runtime = Runtime.from_settings(live_settings(tiny_artifact, tmp_path, backend="fp32"))

    async def main() -> None:
        await runtime.cameras.add(Camera(id="locked", url=url))
        await runtime.start()
        await asyncio.sleep(2.5)  # a few failed connections and retries
        await runtime.stop()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
    failures = [r for r in caplog.records if "camera locked" in r.getMessage()]
    assert len(failures) >= 2  # it kept trying, and said so
    assert all(secret not in r.getMessage() for r in caplog.records)
    assert any("rtsp://***@127.0.0.1" in r.getMessage() for r in caplog.records)


def test_activating_a_model_with_another_clip_shape_switches_the_live_pipeline(
    rtsp_camera, tiny_artifact: Path, tmp_path: Path
) -> None:
    """The second model also takes its frames at another rate, each integrated over its step
    (`clip.integrate`: two or three of the camera's 15 a second)."""
    camera = rtsp_camera(paths=("/cam",))
    runtime = Runtime.from_settings(live_settings(tiny_artifact, tmp_path, model_poll_s=0.3))
    wider = TINY_CLIP.model_copy(
        update={"crop": 24, "resize": (32, 24), "fps": 6.0, "integrate": True}
    )
    second = runtime.models.register(make_artifact(tmp_path / "v2", "tiny-2", wider, seed=1))

    async def main() -> None:
        await runtime.cameras.add(Camera(id="door", url=camera.url()))
        await runtime.start()
        try:
            first = await results_since(runtime, "door", 0, 2, timeout=120)
            assert {r.model_version for r in first} == {"tiny-1"}
            runtime.models.activate(second.version)
            switched = time.time()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                later = await runtime.results.for_stream("door", switched)
                if any(r.model_version == "tiny-2" for r in later):
                    break
                await asyncio.sleep(0.2)
            assert any(r.model_version == "tiny-2" for r in later)
            assert all(r.error is None for r in later)  # no clip of a shape nobody takes
        finally:
            await runtime.stop()

    asyncio.run(main())

"""Uploaded files through the whole data plane: decode -> clips -> queue -> inference -> results."""

import asyncio
import shutil
from pathlib import Path

import av
import pytest
import redis

from bench.servers import TEST_NETWORKS
from service.runtime import InferenceDown, NoActiveModel, Runtime
from service.settings import Settings
from tests.service.clips import metric


@pytest.fixture(params=["memory", "redis"])
def make_settings(request: pytest.FixtureRequest, tiny_artifact: Path, tmp_path: Path):
    def make(**changes) -> Settings:
        redis_url = (
            request.getfixturevalue("redis_server").url if request.param == "redis" else None
        )
        base = dict(
            redis_url=redis_url,
            model_dir=tiny_artifact,
            model_root=tmp_path / "models",
            cache_dir=tmp_path / "cache",
            backend="fp32",
            batch_wait_ms=20,
            camera_networks=TEST_NETWORKS,
            webhook_networks=TEST_NETWORKS,
        )
        return Settings(**(base | changes))

    return make


def test_a_ten_second_file_yields_every_clip_in_order_with_a_result(
    make_settings, make_video, tmp_path: Path
) -> None:
    video = make_video(tmp_path / "ten.mp4", frames=240, fps=24, size=(96, 72))  # 10 s
    runtime = Runtime.from_settings(make_settings(clip_stride=4))
    decoded = metric("lumos_stream_frames_decoded_total", stream="upload")

    async def main():
        await runtime.start()
        try:
            return await runtime.classify(video, timeout=120)
        finally:
            await runtime.stop()

    answer = asyncio.run(main())
    # 240 frames at 24 fps sampled to 12 fps: 120 frames; 8-frame clips every 4 frames.
    assert metric("lumos_stream_frames_decoded_total", stream="upload") - decoded == 120
    assert len(answer.clips) == 1 + (120 - 8) // 4 == 29
    assert [c.seq for c in answer.clips] == list(range(29))
    assert all(c.stream == answer.stream and c.error is None for c in answer.clips)
    starts = [c.start for c in answer.clips]
    assert starts == sorted(starts)
    assert all(c.integrity.dropped == 0 and not c.integrity.reconnect for c in answer.clips)
    assert all(5 < c.illumination.luma_mean < 25 for c in answer.clips)  # the video is dark
    assert answer.summary.clips == 29 and answer.summary.model_versions == ["tiny-1"]
    assert sum(answer.summary.scores.values()) == pytest.approx(1.0, abs=1e-3)
    assert answer.gated == 0


def test_the_darkness_gate_skips_clips_and_counts_them(
    make_settings, make_video, tmp_path: Path
) -> None:
    video = make_video(tmp_path / "dark.mp4", frames=48, fps=24)
    runtime = Runtime.from_settings(make_settings(gate_min_luma=200))
    gated = metric("lumos_clips_gated_total", stream="upload", reason="too_dark")

    async def main():
        await runtime.start()
        try:
            return await runtime.classify(video, timeout=120)
        finally:
            await runtime.stop()

    answer = asyncio.run(main())
    assert answer.clips == [] and answer.gated == 3 and answer.summary.top == []
    assert metric("lumos_clips_gated_total", stream="upload", reason="too_dark") - gated == 3


def test_a_model_that_cannot_load_fails_the_upload_with_its_reason_not_a_timeout(
    make_settings, make_video, tiny_artifact: Path, tmp_path: Path
) -> None:
    # Results are waited for from when inference is ready, so one that never will be must say
    # so, rather than leave the caller waiting out its deadline.
    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    video = make_video(tmp_path / "one.mp4", frames=24, fps=24)
    runtime = Runtime.from_settings(make_settings(model_dir=broken))

    async def main() -> None:
        await runtime.start()
        try:
            await runtime.classify(video, timeout=600)
        finally:
            await runtime.stop()

    with pytest.raises(InferenceDown, match="before its model loaded: ArtifactError: cannot read"):
        asyncio.run(asyncio.wait_for(main(), 60))


def test_bad_uploads_fail_clearly(make_settings, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 5000)
    runtime = Runtime.from_settings(make_settings())
    nothing = Runtime.from_settings(make_settings(model_dir=tmp_path / "none"))

    async def main() -> None:
        with pytest.raises(av.FFmpegError):
            await runtime.ingest_file(junk)
        with pytest.raises(NoActiveModel, match="no active model"):
            await nothing.ingest_file(junk)
        await runtime.stop()
        await nothing.stop()

    asyncio.run(main())


def test_readiness_and_queue_load(make_settings) -> None:
    runtime = Runtime.from_settings(make_settings(queue_files_max=7))

    async def main() -> None:
        await runtime.start()
        try:
            while (checks := await runtime.readiness())["inference"]["ok"] is False:
                await asyncio.sleep(0.05)
            assert checks["queue"]["ok"] and checks["model"] == {"ok": True, "version": "tiny-1"}
            assert checks["inference"]["backend"] == "fp32"
            assert runtime.queue_load() == (0, 7)
        finally:
            await runtime.stop()

    asyncio.run(main())


def test_over_redis_a_process_keeps_a_fixed_set_of_connections(
    redis_server, tiny_artifact: Path, make_video, tmp_path: Path
) -> None:
    """Its sockets are known from start: the loop's pool is opened whole, the threads share one
    connection, and waiting uploads share one subscription however many overlap."""
    video = make_video(tmp_path / "v.mp4", frames=48, fps=12)
    settings = Settings(
        redis_url=redis_server.url,
        redis_connections=5,
        model_dir=tiny_artifact,
        model_root=tmp_path / "models",
        cache_dir=tmp_path / "cache",
        backend="fp32",
        batch_wait_ms=20,
    )
    runtime = Runtime.from_settings(settings)
    probe = redis.Redis.from_url(redis_server.url)

    def theirs() -> int:
        return len(probe.client_list()) - 1  # the probe's own connection aside

    async def main() -> tuple[int, list[int], int]:
        await runtime.start()
        try:
            opened = theirs()
            uploads = asyncio.gather(*(runtime.classify(video, timeout=120) for _ in range(6)))
            seen: list[int] = []
            while not uploads.done():
                seen.append(theirs())
                await asyncio.sleep(0.02)
            assert all(answer.summary.clips > 0 for answer in await uploads)
            return opened, seen, probe.pubsub_numsub("lumos:stored")[0][1]
        finally:
            await runtime.stop()

    opened, seen, subscribers = asyncio.run(main())
    assert opened in (5, 6)  # the pool; the threads' connection once they first need it
    assert max(seen) == 6, seen
    assert subscribers == 1

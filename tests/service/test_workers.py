"""Worker processes over a real Redis: `lumos ingest` sharing cameras by lease, `lumos infer`
recovering the clips of a worker killed with SIGKILL, and the probes every worker serves."""

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis
from redis.asyncio import Redis

from bench.servers import TEST_NETWORKS, RedisServer, free_port, lumos_process, wait_for
from service.cameras import Camera, RedisCameras
from service.queue.base import ClipResult, Latency
from service.queue.redis import GROUP, RedisQueue, RedisResults, lane_key
from tests.service.clips import make_clip
from tests.service.test_infer import tiny_frames


@pytest.fixture
def spawn(redis_server: RedisServer, tiny_artifact: Path, tmp_path: Path):
    """Starts `lumos ROLE` processes against the test Redis; all are killed after the test."""
    processes: list[subprocess.Popen] = []

    def start(role: str, worker: str, **settings: str) -> subprocess.Popen:
        env = os.environ | {
            "LUMOS_REDIS_URL": redis_server.url,
            "LUMOS_MODEL_DIR": str(tiny_artifact),
            "LUMOS_MODEL_ROOT": str(tmp_path / "models"),
            "LUMOS_CACHE_DIR": str(tmp_path / "cache"),
            "LUMOS_WORKER_ID": worker,
            "LUMOS_BACKEND": "fp32",
            "LUMOS_CAMERA_NETWORKS": TEST_NETWORKS,
        }
        env |= {f"LUMOS_{k.upper()}": v for k, v in settings.items()}
        process = lumos_process(role, env, tmp_path / f"{worker}.log")
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()


def test_two_ingest_workers_share_four_cameras_and_one_takes_over_within_the_lease(
    spawn, rtsp_camera, redis_server: RedisServer
) -> None:
    lease_ms = 3000
    paths = ("/c0", "/c1", "/c2", "/c3")
    camera = rtsp_camera(paths=paths, fps=10, size=(96, 72))
    ids = [p.strip("/") for p in paths]

    async def subscribe() -> None:
        client = Redis.from_url(redis_server.url)
        for cam_id, path in zip(ids, paths, strict=True):
            await RedisCameras(client).add(Camera(id=cam_id, url=camera.url(path)))
        await client.aclose()

    asyncio.run(subscribe())
    store = redis.Redis.from_url(redis_server.url)

    def owners() -> dict[str, str | None]:
        return {i: (v.decode() if (v := store.get(f"lumos:lease:{i}")) else None) for i in ids}

    def streams_since(ms: int) -> set[str]:
        entries = store.xrange(lane_key("live"), min=f"{ms}-0")
        return {fields[b"stream"].decode() for _, fields in entries}

    a = spawn("ingest", "ingest-a", lease_ms=str(lease_ms))
    spawn("ingest", "ingest-b", lease_ms=str(lease_ms))

    def split_evenly() -> dict[str, str | None] | None:
        held = owners()
        return (
            held if sorted(map(str, held.values())) == ["ingest-a"] * 2 + ["ingest-b"] * 2 else None
        )

    held = wait_for(split_evenly, 240, "two cameras each")
    started = int(time.time() * 1000)
    wait_for(lambda: streams_since(started) == set(ids), 120, "clips from all four cameras")

    a.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: set(owners().values()) == {"ingest-b"}, 15, "b to own every camera")
    handover = time.monotonic() - killed
    # The dead worker's leases lapse after lease_ms; b looks every lease_ms / 3.
    assert handover <= (lease_ms + lease_ms / 3) / 1000 + 2.0
    taken_over = {i for i, owner in held.items() if owner == "ingest-a"}
    after = int(time.time() * 1000)
    wait_for(lambda: taken_over <= streams_since(after), 120, "clips of the cameras taken over")


def test_clips_of_an_inference_worker_killed_mid_batch_get_exactly_one_result(
    spawn, redis_server: RedisServer
) -> None:
    store = redis.Redis.from_url(redis_server.url)
    key = lane_key("files")
    # A waits a minute to fill batches of 64, so it holds every clip we queue when killed.
    a = spawn("infer", "infer-a", batch_max="64", batch_wait_ms="60000", claim_idle_ms="1500")

    def reading() -> bool:
        # Redis lists a consumer only once it was handed a clip; a blocked read shows here.
        return any(client["cmd"] == "xreadgroup" for client in store.client_list())

    wait_for(reading, 240, "worker a to read the queue")
    clips = [make_clip("upload-x", i, live=False, frames=tiny_frames(i)) for i in range(12)]

    async def enqueue() -> None:
        client = Redis.from_url(redis_server.url)
        queue = RedisQueue(client, 64, 64, 60.0)
        for clip in clips:
            await queue.put(clip)
        # As if a had stored this one's result and died before acknowledging it.
        done = make_clip().illumination
        await RedisResults(client, 3600).put(
            ClipResult(
                clip_id=clips[0].id,
                stream="upload-x",
                seq=0,
                start=clips[0].start,
                end=clips[0].end,
                model_version="stored-by-a",
                backend="fp32",
                top=[],
                scores={},
                latency=Latency(queue_wait=0, inference=0, total=0),
                illumination=done,
                integrity=clips[0].integrity,
            )
        )
        await client.aclose()

    asyncio.run(enqueue())

    def held_by_a() -> int:
        pending = store.xpending(key, GROUP)
        return {c["name"].decode(): c["pending"] for c in pending["consumers"]}.get("infer-a", 0)

    wait_for(lambda: held_by_a() == 12, 60, "worker a to hold all 12 clips")
    a.send_signal(signal.SIGKILL)
    a.wait()
    spawn("infer", "infer-b", batch_max="4", batch_wait_ms="20", claim_idle_ms="1500")

    async def collect() -> list[ClipResult]:
        client = Redis.from_url(redis_server.url)
        results = await RedisResults(client, 3600).wait("upload-x", [c.id for c in clips], 240)
        await client.aclose()
        return results

    results = asyncio.run(collect())
    assert [r.seq for r in results] == list(range(12))
    assert results[0].model_version == "stored-by-a"  # the first result stands
    assert {r.model_version for r in results[1:]} == {"tiny-1"}
    assert store.zcard("lumos:results:upload-x") == 12  # one result per clip, no duplicates
    assert len(store.keys("lumos:result:*")) == 12
    wait_for(lambda: store.xlen(key) == 0, 60, "every clip acknowledged")
    assert store.xpending(key, GROUP)["pending"] == 0


def test_worker_probes_say_whether_each_role_can_work(
    spawn, redis_server: RedisServer, tmp_path: Path
) -> None:
    ports = {role: free_port() for role in ("ingest", "infer", "trainer")}
    for role, port in ports.items():
        spawn(role, role, metrics_port=str(port), runs_dir=str(tmp_path / "runs"))

    def probe(role: str, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{ports[role]}{path}", timeout=10)
        except httpx.TransportError:
            return None

    def answers(path: str, status: int) -> bool:
        return all(
            (r := probe(role, path)) is not None and r.status_code == status for role in ports
        )

    wait_for(lambda: answers("/readyz", 200), 240, "every worker to be ready", every=0.5)
    inference = probe("infer", "/readyz").json()["checks"]["inference"]
    assert inference["ok"] and inference["version"] == "tiny-1"  # a model is loaded
    for role in ports:
        assert probe(role, "/healthz").status_code == 200
        metrics = probe(role, "/metrics")
        assert metrics.status_code == 200 and "lumos_" in metrics.text
        assert probe(role, "/nothing-here").status_code == 404

    # Redis gone: alive still (a restart would not help), but not ready, and each says why.
    redis_server.kill()
    wait_for(lambda: answers("/readyz", 503), 30, "every worker to be unready", every=0.5)
    assert answers("/healthz", 200)
    assert probe("infer", "/readyz").json()["reason"].startswith("queue: ")
    assert probe("ingest", "/readyz").json()["reason"].startswith("queue: ")
    assert "ConnectionError" in probe("trainer", "/readyz").json()["reason"]

    redis_server.start()
    wait_for(lambda: answers("/readyz", 200), 60, "every worker to be ready again", every=0.5)

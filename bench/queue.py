"""`lumos bench queue`: what the Redis clip queue costs per clip, next to what inference costs.

Lumos: one producer puts N clips (`RedisQueue.put`: XADD and the lane's XLEN in one pipeline,
the depth being what backpressure and the live lane's bound act on), then one consumer takes
them in batches of `batch_max` and acknowledges each batch (XREADGROUP, then XACK + XDEL), as the
inference worker does. Raw: the same client library (redis-py's asyncio client) sending bare XADDs
of the same encoded clip, then XREADGROUP COUNT `batch_max`: what moving the bytes through Redis
costs a Python service at least. Rounds alternate raw and Lumos on a private redis-server; the
median round counts.

The verdict is the queue's seconds per clip (put + get + ack) as a fraction of the served model's
inference seconds per clip: the backend the service picks for the model on this machine (its
remembered choice, else measured now), timed at batch `batch_max`.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid

import numpy as np
from redis.asyncio import Redis

from bench import models
from bench.inference import run_at
from bench.profile import Sampler, show
from bench.report import SCRATCH, Run, add_options, progress_range, table, verdict
from bench.servers import RedisServer
from service.backends import calibration_batch
from service.clips import Clip, Integrity, encode
from service.illumination import measure
from service.queue.redis import GROUP, RedisQueue, lane_key

TARGET = 0.02
"""Queue seconds per clip over inference seconds per clip, at most."""


def clips(n: int, frames: np.ndarray, live: bool) -> list[Clip]:
    now = time.time()
    illumination = measure(frames)
    return [
        Clip(
            uuid.uuid4().hex,
            "bench",
            i,
            now,
            now,
            (0.0,) * len(frames),
            live,
            Integrity(),
            illumination,
            frames,
        )
        for i in range(n)
    ]


async def lumos(url: str, batch: list[Clip], batch_max: int) -> tuple[float, float]:
    """Seconds to put every clip, and to get and acknowledge them all."""
    redis = Redis.from_url(url)
    n = len(batch)
    queue = RedisQueue(redis, files_max=n + 1, live_max=n + 1, staleness_s=3600)
    await queue.ensure_groups()
    begin = time.perf_counter()
    for clip in batch:
        await queue.put(clip)
    put_s = time.perf_counter() - begin
    begin = time.perf_counter()
    taken = 0
    while taken < n:
        deliveries = await queue.get("bench", batch_max, 1.0)
        await queue.ack(deliveries)
        taken += len(deliveries)
    get_s = time.perf_counter() - begin
    await redis.delete(*(lane_key(lane) for lane in ("files", "live")))
    await redis.aclose()
    return put_s, get_s


async def raw(url: str, payload: bytes, n: int, batch_max: int) -> tuple[float, float]:
    """Seconds for n bare XADDs of `payload`, and for the XREADGROUPs that read them back."""
    redis = Redis.from_url(url)
    key = "bench:raw"
    await redis.xgroup_create(key, GROUP, id="0", mkstream=True)
    begin = time.perf_counter()
    for _ in range(n):
        await redis.xadd(key, {"clip": payload})
    put_s = time.perf_counter() - begin
    begin = time.perf_counter()
    taken = 0
    while taken < n:
        (_, entries), *_ = await redis.xreadgroup(GROUP, "c", {key: ">"}, count=batch_max)
        taken += len(entries)
    get_s = time.perf_counter() - begin
    await redis.delete(key)
    await redis.aclose()
    return put_s, get_s


def served_inference(size: models.Size, batch_max: int) -> tuple[str, float]:
    """The backend the service serves the model of `size` with here, and its seconds per clip."""
    from service.infer import load_engine
    from service.settings import Settings

    artifact, _ = models.student(size)
    settings = Settings(cache_dir=SCRATCH / "cache", batch_max=batch_max)
    engine = load_engine(artifact, settings)
    point, _ = run_at(engine.backend, calibration_batch(engine.spec, 4 * batch_max), batch_max)
    return engine.backend.name, point.ms_per_clip / 1000


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lumos bench queue", description=__doc__)
    parser.add_argument("--size", choices=("paper", "demo"), default="demo", help="clip shape")
    parser.add_argument("--clips", type=int, default=500, help="clips per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-max", type=int, default=8, help="clips per dequeue")
    parser.add_argument("--profile", action="store_true", help="py-spy the Lumos side")
    add_options(parser)
    args = parser.parse_args(argv)

    size = "tiny" if args.quick else args.size
    n, rounds = (20, 1) if args.quick else (args.clips, args.rounds)
    spec = models.clip_spec(size)
    frames = calibration_batch(spec, 1)[0]
    run = Run("queue", f"{size}-{spec.frames}x{spec.side}", argv, args)
    size_bytes = len(encode(clips(1, frames, False)[0]))
    backend, inference_s = served_inference(size, args.batch_max)
    print(f"served model: {backend}, {inference_s * 1000:.2f} ms of inference per clip")
    print(f"{n} clips of {spec.frames} x {spec.side} x {spec.side}: {size_bytes} bytes each")
    times: dict[str, list[tuple[float, float]]] = {"raw": [], "files": [], "live": []}
    sampler = None
    payload = encode(clips(1, frames, False)[0])
    with RedisServer() as server:
        for i in progress_range(rounds):
            times["raw"].append(asyncio.run(raw(server.url, payload, n, args.batch_max)))
            if args.profile and i == rounds - 1:
                out = SCRATCH / "profiles" / "queue.txt"
                sampler = Sampler(os.getpid(), out, native=False, rate=200).start()
                time.sleep(1.0)
            for lane in ("files", "live"):
                work = lumos(server.url, clips(n, frames, lane == "live"), args.batch_max)
                times[lane].append(asyncio.run(work))
    profile = sampler.stop() if sampler else None

    def per_clip(lane: str) -> dict[str, float]:
        put = statistics.median(t[0] for t in times[lane]) / n
        get = statistics.median(t[1] for t in times[lane]) / n
        return {
            "put_ms": put * 1000,
            "get_ack_ms": get * 1000,
            "clips_per_s": 1 / (put + get),
            "of_inference": (put + get) / inference_s,
        }

    rows = {name: per_clip(name) for name in times}
    columns = {"path": "path", "put ms/clip": "put_ms", "get+ack ms/clip": "get_ack_ms"}
    columns |= {"clips/s": "clips_per_s", "of inference": "of_inference"}
    print(table([{"path": k, **r} for k, r in rows.items()], columns))
    if profile:
        print("\nwhere the Lumos side spends its time:\n" + show(profile))
    worst = max(rows["files"]["of_inference"], rows["live"]["of_inference"])
    run.save(
        {
            "clip_bytes": size_bytes,
            "clips": n,
            "batch_max": args.batch_max,
            "served_backend": backend,
            "inference_ms_per_clip": round(inference_s * 1000, 3),
            "paths": {k: {m: round(v, 4) for m, v in r.items()} for k, r in rows.items()},
            "profile": profile,
        },
        {
            "clip bytes": str(size_bytes),
            "inference ms/clip": f"{inference_s * 1000:.2f} ({backend})",
            "queue ms/clip (redis-py raw; files, live)": "{:.3f}; {:.3f}, {:.3f}".format(
                *(1000 / rows[path]["clips_per_s"] for path in ("raw", "files", "live"))
            ),
            "of inference (raw; files, live)": f"{rows['raw']['of_inference']:.1%}; "
            f"{rows['files']['of_inference']:.1%}, {rows['live']['of_inference']:.1%}",
            "2% target": verdict(worst, TARGET, higher_is_better=False),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

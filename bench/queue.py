"""`lumos bench queue`: clips/s through the Redis clip queue against raw Redis, same payload.

Lumos: one producer puts N clips (`RedisQueue.put`: XADD and the lane's XLEN in one pipeline,
the depth being what backpressure and the live lane's bound act on), then one consumer takes
them in batches of `batch_max` and acknowledges each batch (XREADGROUP, then XACK + XDEL), as the
inference worker does. Raw: redis-benchmark, one connection, XADD of a payload of the same size,
then XREADGROUP COUNT `batch_max`. The overhead is Lumos's time per clip over the raw one. Rounds
alternate Lumos and raw on a private redis-server; the median round counts.

redis-benchmark reads a payload from stdin (`-x`) as a C string, so its payload is the clip's
size in non-zero bytes: Redis's cost depends on the size of a value, not on its bytes.
"""

import argparse
import asyncio
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from redis.asyncio import Redis

from bench import models
from bench.profile import Sampler, show
from bench.report import SCRATCH, Run, add_options, table, verdict
from service.backends import calibration_batch
from service.clips import Clip, Integrity, encode
from service.illumination import measure
from service.queue.redis import GROUP, RedisQueue, lane_key
from tests.servers import RedisServer

TARGET = 0.10


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


def redis_benchmark(port: int, requests: int, command: list[str], stdin: Path | None) -> float:
    """Requests per second redis-benchmark reaches with one connection."""
    line = ["redis-benchmark", "-p", str(port), "-c", "1", "-n", str(requests), "--csv"]
    with open(stdin or os.devnull, "rb") as payload:
        out = subprocess.run(
            line + (["-x"] if stdin else []) + command,
            stdin=payload,
            capture_output=True,
            check=True,
        ).stdout.decode()
    return float(list(csv.DictReader(io.StringIO(out)))[-1]["rps"])


def raw(port: int, n: int, payload: Path, batch_max: int) -> tuple[float, float]:
    """Seconds for n XADDs, and for the XREADGROUPs that read them back."""
    import redis

    client = redis.Redis(port=port)
    key = "bench:raw"
    put_s = n / redis_benchmark(port, n, ["XADD", key, "*", "clip"], payload)
    client.xgroup_create(key, GROUP, id="0")
    reads = -(-n // batch_max)
    read = ["XREADGROUP", "GROUP", GROUP, "c", "COUNT", str(batch_max), "STREAMS", key, ">"]
    get_s = reads / redis_benchmark(port, reads, read, None)
    client.delete(key)
    return put_s, get_s


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
    run = Run("queue", f"{size}-{spec.frames}x{spec.crop}", argv, args)
    size_bytes = len(encode(clips(1, frames, False)[0]))
    print(f"{n} clips of {spec.frames} x {spec.crop} x {spec.crop}: {size_bytes} bytes each")
    times: dict[str, list[tuple[float, float]]] = {"raw": [], "files": [], "live": []}
    sampler = None
    with RedisServer() as server, tempfile.TemporaryDirectory() as scratch:
        payload = Path(scratch) / "payload"
        payload.write_bytes(b"x" * size_bytes)
        for i in range(rounds):
            times["raw"].append(raw(server.port, n, payload, args.batch_max))
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
        return {"put_ms": put * 1000, "get_ack_ms": get * 1000, "clips_per_s": 1 / (put + get)}

    base = per_clip("raw")
    rows = {name: per_clip(name) for name in times}
    for row in rows.values():
        row["overhead"] = base["clips_per_s"] / row["clips_per_s"] - 1
    columns = {"path": "path", "put ms/clip": "put_ms", "get+ack ms/clip": "get_ack_ms"}
    columns |= {"clips/s": "clips_per_s", "overhead": "overhead"}
    print(table([{"path": k, **r} for k, r in rows.items()], columns))
    if profile:
        print("\nwhere the Lumos side spends its time:\n" + show(profile))
    worst = max(rows["files"]["overhead"], rows["live"]["overhead"])
    run.save(
        {
            "clip_bytes": size_bytes,
            "clips": n,
            "batch_max": args.batch_max,
            "paths": {k: {m: round(v, 4) for m, v in r.items()} for k, r in rows.items()},
            "profile": profile,
        },
        {
            "clip bytes": str(size_bytes),
            "raw clips/s": f"{base['clips_per_s']:.0f}",
            "Lumos clips/s (files, live)": f"{rows['files']['clips_per_s']:.0f}, "
            f"{rows['live']['clips_per_s']:.0f}",
            "overhead (files, live)": f"{rows['files']['overhead']:+.0%}, "
            f"{rows['live']['overhead']:+.0%}",
            "10% target": verdict(worst, TARGET, higher_is_better=False),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

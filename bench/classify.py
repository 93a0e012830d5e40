"""`lumos bench classify`: latency and throughput of `POST /v1/classify` for 10 s 720p uploads.

The server is `lumos serve` in its own process (in-memory queue, the backend it picks at
start-up). Clients upload the same file at 1, 2 and 4 at a time, each sending its requests one
after another. The baseline is the work that cannot be avoided for the same clips, done in this
process without HTTP, queue or batching wait: cutting the file into clips with the service's own
decoder (`service.clipping.cut_file`), then inferring them with the backend the server chose, in
batches of `batch_max`. At 1 client a baseline round runs just before each upload, under the
same load (the machine is shared); the overhead ratio is the median of latency over baseline.
"""

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench import models
from bench.inference import run_at, service_backend
from bench.profile import Sampler, show
from bench.report import SCRATCH, Run, add_options, percentiles, table, verdict
from bench.server import lumos_server
from bench.videos import dark_video
from service.clipping import cut_file
from service.settings import Settings

TARGET = 1.15


class Baseline:
    """The unavoidable work for the upload's clips, outside the service: cut the file with the
    service's decoder, infer the clips with the server's backend in batches of `batch_max`."""

    def __init__(self, model: Path, video: Path, backend: str) -> None:
        self.run, self.spec = service_backend(model, backend)
        self.video = video
        self.settings = Settings()
        self.rounds: list[dict[str, float]] = []

    def __call__(self) -> float:
        """One round; its seconds (decode + inference) are also kept in `rounds`."""
        begin = time.perf_counter()
        clips = list(cut_file(self.video, "bench", self.spec, self.settings, threading.Event()))
        decode_s = time.perf_counter() - begin
        frames = np.stack([c.frames for c in clips])
        point, _ = run_at(self.run, frames, self.settings.batch_max)
        infer_s = point.ms_per_clip * len(clips) / 1000
        self.rounds.append({"clips": len(clips), "decode_s": decode_s, "infer_s": infer_s})
        return time.perf_counter() - begin


async def load(
    url: str, video: Path, clients: int, requests: int, between: Baseline | None = None
) -> dict:
    """`clients` concurrent uploaders, `requests` each: latencies, throughput, server timings.
    With `between` (one client), a baseline round runs before each upload, so each upload has
    a baseline measured under the same load; its time is not counted in the throughput."""
    body = video.read_bytes()
    latencies: list[float] = []
    timings: list[dict] = []
    errors: list[str] = []
    aside = 0.0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal aside
        for _ in range(requests):
            if between is not None:
                aside += await asyncio.to_thread(between)
            begin = time.perf_counter()
            response = await http.post(
                f"{url}/v1/classify", files={"file": (video.name, body, "video/mp4")}
            )
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
                continue
            latencies.append(time.perf_counter() - begin)
            timings.append(response.json()["timings"])

    async with httpx.AsyncClient(timeout=600.0) as http:
        begin = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - begin - aside
    server = {k: statistics.median(t[k] for t in timings) for k in timings[0]} if timings else {}
    phase = {
        "clients": clients,
        "requests": len(latencies),
        "error_count": len(errors),
        "errors": errors[:5],
        "latency_s": percentiles(latencies),
        "uploads_per_s": len(latencies) / wall,
        "server_timings_s": server,
    }
    if between is not None and len(latencies) == len(between.rounds):
        floors = [r["decode_s"] + r["infer_s"] for r in between.rounds]
        ratios = [lat / floor for lat, floor in zip(latencies, floors, strict=True)]
        phase["overhead_ratio"] = statistics.median(ratios)
    return phase


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lumos bench classify", description=__doc__)
    parser.add_argument("--size", choices=("demo", "paper"), default="demo", help="the student")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the upload")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=4, help="uploads per client")
    parser.add_argument("--profile", action="store_true", help="then py-spy the server, 1 client")
    add_options(parser)
    args = parser.parse_args(argv)

    size = "tiny" if args.quick else args.size
    video = dark_video("tiny" if args.quick else "720p", 2.0 if args.quick else args.seconds)
    clients = [1] if args.quick else args.clients
    requests = 1 if args.quick else args.requests
    model, random_weights = models.student(size)
    run = Run("classify", f"{size}-{video.stem}", argv, args)
    phases = []
    profile = None
    log = SCRATCH / "logs" / "classify-server.log"
    with lumos_server(model, {}, log) as server:
        print(f"server ready on {server.url}, backend {server.backend}", flush=True)
        baseline = Baseline(model, video, server.backend)
        # Unmeasured: the first upload and round meet first-use costs (e.g. a runtime's kernels
        # for a new batch size) that a serving process pays once.
        asyncio.run(load(server.url, video, 1, 1, baseline))
        baseline.rounds.clear()
        for n in clients:
            between = baseline if n == 1 else None
            phases.append(asyncio.run(load(server.url, video, n, requests, between)))
            print(f"  {n} clients: p50 {phases[-1]['latency_s']['p50']:.2f} s", flush=True)
        if args.profile:  # apart from the measured phases: sampling slows what it watches
            out = SCRATCH / "profiles" / "classify-server.txt"
            sampler = Sampler(server.pid, out, native=False).start()
            time.sleep(1.0)
            asyncio.run(load(server.url, video, 1, requests))
            profile = sampler.stop()

    base = {k: statistics.median(r[k] for r in baseline.rounds) for k in baseline.rounds[0]}
    floor = base["decode_s"] + base["infer_s"]
    print(
        f"\nbaseline for {base['clips']:.0f} clips: decode {base['decode_s']:.2f} s + inference "
        f"{base['infer_s']:.2f} s ({server.backend}) = {floor:.2f} s, each measured just "
        "before a 1-client upload"
    )
    columns = {"clients": "clients", "p50 s": "latency_s.p50", "p95 s": "latency_s.p95"}
    columns |= {"p99 s": "latency_s.p99", "uploads/s": "uploads_per_s"}
    columns |= {"x baseline": "overhead_ratio", "errors": "error_count"}
    print(table(phases, columns))
    if profile:
        print("\nwhere the server spends its time at 1 client:\n" + show(profile))
    one = phases[0]
    run.save(
        {
            "video": {"path": str(video), "bytes": os.path.getsize(video)},
            "model": str(model),
            "random_weights": random_weights,
            "backend": server.backend,
            "baseline": {"median": base, "rounds": baseline.rounds},
            "phases": phases,
            "profile": profile,
        },
        {
            "baseline s (decode + infer)": f"{floor:.2f} ({base['decode_s']:.2f} + "
            f"{base['infer_s']:.2f}, {server.backend})",
            "p50/p95/p99 s by clients": "; ".join(
                f"{p['clients']}: {p['latency_s']['p50']:.2f}/{p['latency_s']['p95']:.2f}/"
                f"{p['latency_s']['p99']:.2f}"
                for p in phases
            ),
            "uploads/s by clients": ", ".join(
                f"{p['clients']}: {p['uploads_per_s']:.2f}" for p in phases
            ),
            "overhead at 1 client": verdict(one["overhead_ratio"], TARGET, higher_is_better=False),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

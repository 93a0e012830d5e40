"""`lumos bench streams`: how many live 720p cameras this machine classifies in real time.

One GStreamer RTSP test camera (25 fps, 1280 x 720, H.264, a generated dark scene) is encoded
once and shared: each subscription opens its own RTSP session to it (the URLs differ by a query
string), so Lumos receives and decodes every one as a separate camera while the camera's own cost
stays that of one encoder. `--camera loop` serves a few seconds of such a scene, encoded once at
start, from `bench/camera.py` instead: no encoder runs while measuring, and it needs no GStreamer
(the GPU machine has none). `lumos serve` (the backend it chooses at start-up: the default CPU
one, or CUDA where there is a GPU) classifies each camera every 2 s: the clip stride is 2 s of the
model's sampled frames.

A camera count is sustained when, over the measuring window, the cameras got at least 90% of the
predictions due (one per camera per 2 s) and the p95 end-to-end latency (from a clip's last frame
being decoded to its result being stored) stayed within the 2 s interval. Counts double (from
`--min-cameras`) until one fails, then are bisected to within an eighth. The pipeline's
throughput at the largest sustained count is set against the clips/s of the same backend on the
same model, measured here without the pipeline.
"""

import argparse
import asyncio
import os
import sys
import time
from collections import Counter

import httpx
import torch

from bench import models
from bench.inference import run_at, service_backend
from bench.profile import Sampler, show
from bench.report import SCRATCH, Run, add_options, percentiles, table, verdict
from bench.server import Server, lumos_server
from bench.servers import ROOT, RtspCamera
from service.backends import calibration_batch
from service.settings import Settings

TARGET = 0.8
INTERVAL_S = 2.0
DUE = 0.9
"""Fraction of the due predictions a sustained count must deliver."""


class LoopCamera(RtspCamera):
    """`bench/camera.py`: a pre-encoded dark scene of `seconds` served in a loop, in this Python
    (run as a script, so from any working directory)."""

    def __init__(self, fps: int, size: tuple[int, int], seconds: int = 4) -> None:
        super().__init__(fps=fps, size=size)
        self.seconds = seconds

    def command(self) -> list[str]:
        width, height = self.size
        command = [sys.executable, str(ROOT / "bench" / "camera.py"), "--port", str(self.port)]
        command += ["--fps", str(self.fps), "--width", str(width), "--height", str(height)]
        return command + ["--seconds", str(self.seconds)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def dropped(http: httpx.AsyncClient, url: str) -> Counter[str]:
    """The server's dropped frames and clips so far, by reason."""
    counts: Counter[str] = Counter()
    for line in (await http.get(f"{url}/metrics")).text.splitlines():
        if line.startswith("lumos_stream_frames_dropped_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] += int(float(line.rsplit(" ", 1)[1]))
    return counts


async def trial(
    server: Server,
    camera: RtspCamera,
    count: int,
    window: float,
    sampler: Sampler | None = None,
) -> dict:
    """Subscribe `count` cameras, measure `window` seconds once all deliver, unsubscribe."""
    ids = [f"n{count}-{i}-{time.monotonic_ns() % 10**6}" for i in range(count)]
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        for camera_id in ids:
            subscription = {"url": f"{camera.url()}?viewer={camera_id}", "id": camera_id}
            (await http.post("/v1/streams", json=subscription)).raise_for_status()

        async def results(camera_id: str, since: float) -> list[dict]:
            """The camera's results; a GET that meets a closing keep-alive connection (likelier
            when the cameras starve the machine) is asked again."""
            url = f"/v1/streams/{camera_id}/predictions"
            for attempt in range(3):
                try:
                    response = await http.get(url, params={"since": since, "limit": 1000})
                    break
                except httpx.TransportError:
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.5)
            return response.json()["results"]

        # Warm-up: connections, first key frames, the first clip of every camera.
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            if all(await asyncio.gather(*(results(i, 0.0) for i in ids))):
                break
            await asyncio.sleep(1.0)
        drops_before = await dropped(http, server.url)
        cpu_before = {"lumos": cpu_seconds(server.pid), "camera": cpu_seconds(camera.process.pid)}
        begin = time.time()
        if sampler:
            sampler.start()
        await asyncio.sleep(window)
        profile = sampler.stop() if sampler else None
        cpu = {
            "lumos": cpu_seconds(server.pid) - cpu_before["lumos"],
            "camera": cpu_seconds(camera.process.pid) - cpu_before["camera"],
        }
        end = time.time()
        await asyncio.sleep(2 * INTERVAL_S)  # clips begun in the window finish and are stored
        drops = await dropped(http, server.url) - drops_before
        per_camera = await asyncio.gather(*(results(i, begin) for i in ids))
        for camera_id in ids:
            await http.delete(f"/v1/streams/{camera_id}")
    got = [[r for r in rs if r["start"] < end and not r["error"]] for rs in per_camera]
    latencies = [r["latency"]["total"] for rs in got for r in rs]
    due = count * window / INTERVAL_S
    delivered = sum(map(len, got)) / due
    latency = percentiles(latencies)
    return {
        "cameras": count,
        "delivered": round(delivered, 3),
        "worst_camera": round(min(map(len, got)) / (window / INTERVAL_S), 3),
        "latency_s": latency,
        "drops": dict(drops),
        "cores_used": {k: round(v / (end - begin), 2) for k, v in cpu.items()},
        "sustained": delivered >= DUE and latency["p95"] <= INTERVAL_S,
        "profile": profile,
    }


def search(run_trial, start: int, limit: int) -> tuple[int, list[dict]]:
    """The largest sustained count up to `limit`: doubling, then bisection to within an eighth
    (exact below 16 cameras; above, one more trial would not change the conclusion)."""
    trials: list[dict] = []

    def sustained(count: int) -> bool:
        trials.append(run_trial(count))
        t = trials[-1]
        print(
            f"  {count:3d} cameras: {t['delivered']:.0%} of predictions, p95 "
            f"{t['latency_s']['p95']:.2f} s, drops {t['drops']}, cores {t['cores_used']}"
            f" -> {'sustained' if t['sustained'] else 'not sustained'}",
            flush=True,
        )
        return t["sustained"]

    good, bad = 0, None
    count = start
    while count <= limit:
        if not sustained(count):
            bad = count
            break
        good, count = count, count * 2
    while bad is not None and bad - good > max(1, good // 8):
        middle = (good + bad) // 2
        good, bad = (middle, bad) if sustained(middle) else (good, middle)
    return good, trials


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lumos bench streams", description=__doc__)
    parser.add_argument("--size", choices=("demo", "paper"), default="demo", help="the student")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per count")
    parser.add_argument("--min-cameras", type=int, default=1, help="where the doubling starts")
    parser.add_argument("--max-cameras", type=int, default=32)
    parser.add_argument("--profile", action="store_true", help="py-spy the first failing count")
    parser.add_argument(
        "--camera", choices=("gstreamer", "loop"), default="gstreamer", help="the test camera"
    )
    parser.add_argument(
        "--no-cuda-streams",
        dest="cuda_streams",
        action="store_false",
        help="on a GPU, serve with LUMOS_CUDA_STREAMS=false",
    )
    add_options(parser)
    args = parser.parse_args(argv)

    size = "tiny" if args.quick else args.size
    width, height = (160, 120) if args.quick else (1280, 720)
    window = 6.0 if args.quick else args.window
    limit = 1 if args.quick else args.max_cameras
    model, random_weights = models.student(size)
    spec = models.clip_spec(size)
    stride = round(INTERVAL_S * spec.fps)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    config = f"{size}-{height}p" + ("-loop" if args.camera == "loop" else "")
    config += ("-cuda" if args.cuda_streams else "-cuda-serial") if device else ""
    run = Run("streams", config, argv, args)
    settings = {"LUMOS_CLIP_STRIDE": str(stride), "LUMOS_LEASE_MS": "3000"}
    settings["LUMOS_CUDA_STREAMS"] = str(args.cuda_streams).lower()
    log = SCRATCH / "logs" / "streams-server.log"
    with lumos_server(model, settings, log) as server:
        backend, _ = service_backend(model, server.backend)
        batch = Settings().batch_max
        rate = run_at(backend, calibration_batch(spec, 4 * batch, seed=1), batch)[0].clips_per_s
        del backend
        print(f"server ready, backend {server.backend}: {rate:.1f} clips/s at batch {batch}")
        camera = (LoopCamera if args.camera == "loop" else RtspCamera)(fps=25, size=(width, height))
        camera.start()
        try:

            def run_trial(count: int, sampler: Sampler | None = None) -> dict:
                result = asyncio.run(trial(server, camera, count, window, sampler))
                time.sleep(2.0)  # the unsubscribed cameras' leases lapse
                return result

            best, trials = search(run_trial, min(args.min_cameras, limit), limit)
            profile = None
            if args.profile and not args.quick:
                out = SCRATCH / "profiles" / "streams-server.txt"
                failing = run_trial(best + 1, Sampler(server.pid, out, native=False))
                profile = failing["profile"]
                print(f"\nwhere the server spends its time at {best + 1} cameras:\n{show(profile)}")
        finally:
            camera.kill()

    throughput = best / INTERVAL_S
    ratio = throughput / rate
    at_best = next((t for t in trials if t["cameras"] == best), None)
    columns = {"cameras": "cameras", "delivered": "delivered", "worst camera": "worst_camera"}
    columns |= {"p50 s": "latency_s.p50", "p95 s": "latency_s.p95", "p99 s": "latency_s.p99"}
    columns |= {"Lumos cores": "cores_used.lumos", "camera cores": "cores_used.camera"}
    print(table(trials, columns | {"sustained": "sustained"}))
    print(
        f"\n{best} cameras sustained: {throughput:.2f} clips/s through the pipeline, "
        f"{ratio:.2f}x of {server.backend}'s {rate:.1f} clips/s"
    )
    latency = at_best["latency_s"] if at_best else {}
    run.save(
        {
            "model": str(model),
            "random_weights": random_weights,
            "backend": server.backend,
            "device": device,
            "camera_server": args.camera,
            "backend_clips_per_s": rate,
            "camera": {"width": width, "height": height, "fps": 25},
            "interval_s": INTERVAL_S,
            "clip_stride": stride,
            "window_s": window,
            "sustained_cameras": best,
            "pipeline_clips_per_s": throughput,
            "trials": trials,
            "profile": profile,
        },
        {
            "cameras sustained": str(best),
            "latency p50/p95/p99 s": "/".join(
                f"{latency.get(p, float('nan')):.2f}" for p in ("p50", "p95", "p99")
            ),
            "pipeline clips/s": f"{throughput:.2f}",
            "backend clips/s": f"{rate:.1f} ({server.backend})",
            "0.8x target": verdict(ratio, TARGET),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The sizing model of docs/scaling.md: what Lumos's parts cost for a load.

Each part's cost is its work times a unit cost, plus a fixed part per process, so one formula
serves a fleet (work per second: cores and bytes per second) and a test run (work over the run:
CPU seconds and bytes). `Costs()` holds the planning values docs/scaling.md derives, each from a
named measurement; the multi-host test (tests/system/test_across_hosts.py) evaluates the same
functions for its own run, with the costs that depend on its cameras, model and Redis measured
beside it, and records formula / measured. `python -m bench.sizing` prints the sizing table.
"""

import argparse
import math
import sys
from dataclasses import dataclass, replace

KB = 1024
MARGIN = 1.5
"""A real camera's noisy night picture costs more to decode than the benchmark's generated one:
a margin chosen, not measured."""


@dataclass(frozen=True)
class Costs:
    """Unit costs: CPU seconds and bytes. Defaults: the demo model (16 frames of 48 x 48) on the
    2-core AMD EPYC (AVX2) development machine, under load. "The multi-host test": the medians
    of its seven runs of 2026-12-03 23:53 to 23:57 UTC (what was left of each role's CPU once
    the costs measured beside the run were taken away; tests/system/sizing.py)."""

    decode_frame_s: float = MARGIN / 952
    """CPU-s to decode one camera frame: 720p at 952 frames per CPU-s (`lumos bench decode`),
    with the margin."""
    live_frame_s: float = 0.0016
    """The ingest's own work per sampled frame beyond decoding it: handing it to the event loop,
    cutting clips, their key frames, queueing them (the multi-host test: 1.3 to 1.7 ms, a clip
    every 8 frames)."""
    model_clip_s: float = 0.012
    """The model, per clip: OpenVINO fp32 at batch 8 (`lumos bench inference --size demo`)."""
    worker_clip_s: float = 0.0018
    """The inference worker's own work per clip beside the model: reading and decoding the
    queue entry, storing the result, acknowledging (the multi-host test: 1.6 to 2.9 ms)."""
    upload_decode_s: float = 0.0
    """Decoding one upload: its frames at the decode rate of its resolution (per workload)."""
    upload_s: float = 0.008
    """The API's own work per upload beside decoding it: receiving and vetting it, queueing its
    clips, waiting for and answering the results (the multi-host test: 7 to 12 ms)."""
    process_cores: float = 0.0075
    """A process doing nothing: leases, heartbeats, polls (the multi-host test: 0.006 to 0.011
    cores)."""

    clip_bytes: int = 16 * 48 * 48 * 3 + 600
    """A queued clip as sent: its frames and a JSON header."""
    entry_bytes: int = 115_164
    """A queued clip in Redis: the clip rounded up to the allocator's size class, and its stream
    node (`MEMORY USAGE` of a stream of demo-sized entries)."""
    key_frame_bytes: int = 48 * 48 * 3 + 128
    """A camera's latest key frame, written with each of its clips: one frame as .npy."""
    result_io_bytes: int = 750
    """A result's JSON, as written and read (11 labels)."""
    result_bytes: int = 1_160
    """A stored result: its key and JSON, its index entry, its share of the key tables (the
    multi-host test, `MEMORY USAGE` and `MEMORY STATS`)."""
    camera_bytes: int = 9 * KB
    """A camera's record, health, lease and latest key frame: 4.4 KB in the multi-host test,
    whose key frame is 3.2 KB; a demo frame is 7 KB."""
    connection_bytes: int = 18 * KB
    """A client connection: its structure and buffers, which grow with the commands it carries
    and shrink when idle (the multi-host test: CLIENT LIST's tot-mem, 17 to 21 KB on average)."""
    connections_per_process: int = 9
    """`LUMOS_REDIS_CONNECTIONS` (8) for the event loop, one for worker threads."""
    empty_bytes: int = 876 * KB
    """An empty Redis 7.0 (`used_memory_startup`)."""
    command_bytes: int = 24_688
    """The latency histogram Redis keeps for each command name it has run (`latency-tracking`,
    on by default since Redis 7.0; measured on a private Redis)."""
    commands: int = 34
    """Command names a deployment runs (the multi-host test, its own probes included)."""


def ingest_cpu(
    costs: Costs, frames_decoded: float, frames_sampled: float, processes: float
) -> float:
    """CPU-s (or cores, for work per second) of the ingest workers."""
    return (
        frames_decoded * costs.decode_frame_s
        + frames_sampled * costs.live_frame_s
        + processes * costs.process_cores
    )


def inference_cpu(costs: Costs, clips: float, processes: float, model: bool = True) -> float:
    """CPU of the inference workers; `model=False` when a GPU runs the model."""
    per_clip = costs.worker_clip_s + (costs.model_clip_s if model else 0.0)
    return clips * per_clip + processes * costs.process_cores


def api_cpu(costs: Costs, uploads: float, processes: float) -> float:
    """CPU of the API processes."""
    return uploads * (costs.upload_decode_s + costs.upload_s) + processes * costs.process_cores


def redis_traffic(
    costs: Costs,
    queued: float,
    delivered: float,
    live: float,
    results_written: float,
    results_read: float,
) -> float:
    """Bytes in and out of Redis: each clip in (XADD) and out to a worker (XREADGROUP, or
    XAUTOCLAIM when reclaimed), each live clip's key frame in, each result in and out."""
    return (
        (queued + delivered) * costs.clip_bytes
        + live * costs.key_frame_bytes
        + (results_written + results_read) * costs.result_io_bytes
    )


def redis_memory(
    costs: Costs, connections: float, queued: float, cameras: float, results: float, commands: float
) -> float:
    """Bytes of Redis memory (`used_memory`)."""
    return (
        costs.empty_bytes
        + commands * costs.command_bytes
        + connections * costs.connection_bytes
        + queued * costs.entry_bytes
        + cameras * costs.camera_bytes
        + results * costs.result_bytes
    )


@dataclass(frozen=True)
class Fleet:
    """A fleet of cameras and how it is planned."""

    cameras: int
    fps: float = 25.0
    sampled_fps: float = 12.0
    stride: int = 16
    utilisation: float = 0.6
    """Planned load: headroom for bursts, a failed worker's share, catching up after an outage."""
    live_queue_s: float = 2.0
    """The live lane's bound in seconds of clips (`LUMOS_QUEUE_LIVE_MAX`, docs/scaling.md)."""
    files_queue: int = 256
    """The upload lane's bound (`LUMOS_QUEUE_FILES_MAX`)."""
    gpu_clips_per_s: float = 10_000.0
    """An H200 at batch 64 (`lumos bench cuda --size demo`)."""

    @property
    def clips_per_s(self) -> float:
        return self.cameras * self.sampled_fps / self.stride


def cores(busy: float, utilisation: float, process_cores: float) -> int:
    """Cores to plan for `busy` cores of work: one process a core, each with its fixed part."""
    processes = math.ceil(busy / utilisation)
    return math.ceil((busy + processes * process_cores) / utilisation)


def plan(fleet: Fleet, costs: Costs, decode_rate: float, ttl_s: float) -> dict[str, float]:
    """The sizing table's row for `fleet` with cameras decoded at `decode_rate` frames per CPU-s
    (as benchmarked: the margin is added)."""
    u, c = fleet.utilisation, fleet.clips_per_s
    at = replace(costs, decode_frame_s=MARGIN / decode_rate)
    ingest = ingest_cpu(at, fleet.cameras * fleet.fps, fleet.cameras * fleet.sampled_fps, 0)
    inference = inference_cpu(costs, c, 0)
    host = inference_cpu(costs, c, 0, model=False)
    processes = math.ceil(ingest / u) + math.ceil(inference / u) + 2  # two API processes
    return {
        "clips_per_s": c,
        "ingest_cores": cores(ingest, u, costs.process_cores),
        "inference_cores": cores(inference, u, costs.process_cores),
        "gpus": math.ceil(c / fleet.gpu_clips_per_s / u),
        "gpu_host_cores": cores(host, u, costs.process_cores),
        "redis_bytes_per_s": redis_traffic(costs, c, c, c, c, 0),
        "redis_memory": redis_memory(
            costs,
            processes * costs.connections_per_process,
            c * fleet.live_queue_s + fleet.files_queue,
            fleet.cameras,
            c * ttl_s,
            costs.commands,
        ),
    }


def _size(value: float, unit: str) -> str:
    """`value` in G, M or k of `unit`, to two significant figures or more."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            digits = 1 if value < 10 * scale else 0
            return f"{value / scale:,.{digits}f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def table(counts: list[int], decode_720p: float, decode_1080p: float) -> str:
    """The sizing table of docs/scaling.md, as Markdown."""
    costs = Costs()
    lines = [
        "| cameras | clips/s | ingest cores, 720p | ingest cores, 1080p | inference: CPU cores "
        "| or: GPUs (+ host cores) | Redis traffic | Redis memory, results kept 1 day / 1 hour |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for count in counts:
        fleet = Fleet(count)
        day = plan(fleet, costs, decode_720p, 86_400)
        hour = plan(fleet, costs, decode_720p, 3_600)
        p1080 = plan(fleet, costs, decode_1080p, 86_400)
        lines.append(
            f"| {count:,} | {day['clips_per_s']:,.0f} | {day['ingest_cores']:,} "
            f"| {p1080['ingest_cores']:,} | {day['inference_cores']:,} "
            f"| {day['gpus']} (+ {day['gpu_host_cores']}) "
            f"| {_size(day['redis_bytes_per_s'], 'B/s')} "
            f"| {_size(day['redis_memory'], 'B')} / {_size(hour['redis_memory'], 'B')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.sizing", description=__doc__)
    parser.add_argument("--cameras", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--decode-720p", type=float, default=952.0, help="frames per CPU-s")
    parser.add_argument("--decode-1080p", type=float, default=360.0, help="frames per CPU-s")
    args = parser.parse_args(argv)
    print(table(args.cameras, args.decode_720p, args.decode_1080p))
    return 0


if __name__ == "__main__":
    sys.exit(main())

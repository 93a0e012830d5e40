"""The sizing model (bench/sizing.py) against a multi-host run: the unit costs that depend on the
run's cameras, model and Redis measured beside it, the formula evaluated for the run's work, and
its answer set against what the run's processes and Redis used.

Measured beside the run, in this process, each on its own thread's CPU clock while the run goes
on (so under the same load): decoding the test camera's stream as an ingest worker does, decoding
one upload as the API does, the served model per batch size, and the latency histogram Redis keeps
per command name (on a private Redis). From the deployment's Redis: each connection's memory
(CLIENT LIST), each queued clip's (MEMORY USAGE of the lanes) and each stored result's. After the
run: what each process costs idle. The service's own work per unit (the ingest's per frame, the
inference worker's per clip, the API's per upload) is the formula's, and that is what is checked.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import redis
import torch

from bench import sizing
from bench.servers import RedisServer
from model.artifact import load_artifact
from service.backends import TorchCpu, calibration_batch
from service.camera_health import key_frame
from service.clips import encode
from service.decode import Limits, decode_frames, open_source
from service.ingest import cut_file, geometry
from service.queue.redis import lane_key
from service.settings import Settings
from tests.system.deployment import CAMERAS, Metrics
from tests.system.multihost import Deployment

LANES = ("files", "live")
T = TypeVar("T")


def thread_cpu_s(task: Callable[[], T], rounds: int) -> tuple[T, float]:
    """`task()`'s answer and the CPU seconds this thread spends on it a round, on average over
    `rounds` after a first that warms it up (lazy set-up, first-touch memory): what a warm
    service pays."""
    answer = task()
    began = time.thread_time()
    for _ in range(rounds):
        task()
    return answer, (time.thread_time() - began) / rounds


def camera_frame_s(url: str, artifact: Path, seconds: float) -> float:
    """CPU-s per frame of decoding the camera at `url` for `seconds` as an ingest worker does (its
    clip geometry, the live limits, one decoder thread), opening the connection left out (13 to
    15 ms of CPU here, once a connection)."""
    spec = load_artifact(artifact).manifest.clip
    limits = Limits.of(Settings(), upload=False)
    with open_source(url, limits) as container:
        frames = decode_frames(
            container, geometry(spec), spec.fps, limits, threads=1, integrate=spec.integrate
        )
        next(frames)
        began, cpu, count = time.monotonic(), time.thread_time(), 0
        for _ in frames:
            count += 1
            if time.monotonic() - began > seconds:
                break
        return (time.thread_time() - cpu) / count


def model_batch_s(artifact: Path, batch_max: int) -> dict[int, float]:
    """CPU-s per batch of the served backend (fp32 eager torch, one thread) at each batch size."""
    network, manifest = load_artifact(artifact)
    backend = TorchCpu(network, manifest.clip)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        costs = {}
        for batch in range(1, batch_max + 1):
            clips = calibration_batch(manifest.clip, batch)
            costs[batch] = thread_cpu_s(lambda c=clips: backend.start(c), 15)[1]
        return costs
    finally:
        torch.set_num_threads(threads)


def command_bytes() -> float:
    """Bytes of the latency histogram Redis allocates for each command name it first runs."""
    with RedisServer() as server:
        client = redis.Redis(port=server.port)

        def state() -> tuple[int, int]:
            info = client.execute_command("INFO", "memory", "latencystats")
            return info["used_memory"], histograms(info)

        used, count = state()
        for command in ("DBSIZE", "TIME", "LASTSAVE", "RANDOMKEY", "EXISTS a", "TTL a", "TYPE a"):
            client.execute_command(*command.split())
        after, after_count = state()
        return (after - used) / (after_count - count)


def histograms(info: dict[str, Any]) -> int:
    return sum(1 for key in info if key.startswith("latency_percentiles_usec_"))


@dataclass
class UnitCosts:
    """The unit costs measured beside the run, on a thread of their own (`start`, `join`)."""

    camera_url: str
    upload: Path
    artifact: Path
    batch_max: int
    camera_s: float = 6.0
    frame_s: float = 0.0
    upload_s: float = 0.0
    clip_bytes: int = 0
    key_frame_bytes: int = 0
    clips_per_upload: int = 0
    batch_s: dict[int, float] = field(default_factory=dict)
    command_bytes: float = 0.0
    _thread: threading.Thread | None = None
    _failed: BaseException | None = None

    def start(self) -> "UnitCosts":
        self._thread = threading.Thread(target=self._measure, daemon=True)
        self._thread.start()
        return self

    def join(self) -> "UnitCosts":
        assert self._thread is not None
        self._thread.join(120)
        assert not self._thread.is_alive(), "the unit costs still being measured after 120 s"
        if self._failed is not None:
            raise self._failed
        return self

    def _measure(self) -> None:
        try:
            self._measure_all()
        except BaseException as exc:  # raised again in the test's thread, by `join`
            self._failed = exc

    def _measure_all(self) -> None:
        self.frame_s = camera_frame_s(self.camera_url, self.artifact, self.camera_s)
        spec = load_artifact(self.artifact).manifest.clip
        clips, self.upload_s = thread_cpu_s(
            lambda: list(cut_file(self.upload, "upload", spec, Settings(), threading.Event())), 7
        )
        self.clip_bytes = len(encode(clips[0]))
        self.key_frame_bytes = len(key_frame(clips[0]))
        self.clips_per_upload = len(clips)
        self.batch_s = model_batch_s(self.artifact, self.batch_max)
        self.command_bytes = command_bytes()


@dataclass(frozen=True)
class RedisSample:
    """Redis's memory at one moment and what the formula needs to explain it."""

    used: int
    connections: int
    connection_bytes: int
    queued: int
    lane_bytes: int
    results: int
    commands: int


_COUNT_KEYS = "return #redis.call('KEYS', ARGV[1])"
"""Counted inside Redis: a SCAN's reply, every key's name, would be most of the probe's traffic."""


def redis_sample(store: redis.Redis) -> RedisSample:
    info = store.execute_command("INFO", "memory", "clients", "latencystats")
    clients = store.client_list()
    with store.pipeline(transaction=False) as pipe:
        for lane in LANES:
            pipe.xlen(lane_key(lane))
            pipe.memory_usage(lane_key(lane), samples=0)
        lanes = pipe.execute()
    return RedisSample(
        used=info["used_memory"],
        connections=len(clients),
        connection_bytes=sum(int(c["tot-mem"]) for c in clients),
        queued=sum(lanes[0::2]),
        lane_bytes=sum(lanes[1::2]),
        results=store.register_script(_COUNT_KEYS)(args=["lumos:result:*"]),
        commands=histograms(info),
    )


def stored_bytes(store: redis.Redis, pattern: str) -> tuple[int, int]:
    """(keys, bytes: MEMORY USAGE summed) of the keys matching `pattern`."""
    keys = list(store.scan_iter(pattern, count=1000))
    return len(keys), sum(store.memory_usage(k, samples=0) or 0 for k in keys)


def result_bytes(store: redis.Redis) -> float:
    """A stored result's memory: its key and JSON, its share of the stream indexes, and of the
    key tables (the main one and the one of expiries) per key."""
    results, result_memory = stored_bytes(store, "lumos:result:*")
    indexes = list(store.scan_iter("lumos:results:*", count=1000))
    indexed = sum(store.zcard(k) for k in indexes)
    index_memory = sum(store.memory_usage(k, samples=0) or 0 for k in indexes)
    stats = store.memory_stats()
    tables = sum(v for v in stats["db.0"].values()) / stats["keys.count"]
    return result_memory / results + index_memory / indexed + tables


def camera_bytes(store: redis.Redis, cameras: int) -> float:
    """A camera's memory: its record, health and latest key frame, its lease."""
    owned = [stored_bytes(store, p)[1] for p in ("lumos:camera*", "lumos:lease:*")]
    return sum(owned) / cameras


def _tasks(pid: int) -> dict[str, int]:
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[task.name] = int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread ended while being read
    return found


def idle_cores(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Cores each process uses over `seconds` of doing nothing, from its threads' run time in
    nanoseconds (/proc/PID/task/TID/schedstat; a thread that ends meanwhile is left out: /proc's
    whole-process ticks are too coarse for milliseconds)."""
    before = {host: _tasks(pid) for host, pid in pids.items()}
    time.sleep(seconds)
    after = {host: _tasks(pid) for host, pid in pids.items()}
    return {
        host: sum(ns - before[host][t] for t, ns in after[host].items() if t in before[host])
        / 1e9
        / seconds
        for host in pids
    }


@dataclass(frozen=True)
class Counters:
    """What the deployment did so far: its own counters (every process's, through the API's
    /metrics)."""

    camera_frames: float
    clips_cut: float
    """Clips of every stream, uploads' and cameras'."""
    live_clips: float
    batches: float
    clips_inferred: float
    batches_of: dict[int, float]
    """Batches of at most 1, at most 2 clips: the histogram's exact buckets."""

    @classmethod
    def read(cls, deployment: Deployment) -> "Counters":
        batch = "lumos_inference_batch_size"
        with deployment.client() as client:
            found = Metrics.read(client)
        return cls(
            camera_frames=sum(
                found.total("lumos_stream_frames_decoded_total", stream=c) for c in CAMERAS
            ),
            clips_cut=found.total("lumos_stream_clips_total"),
            live_clips=sum(found.total("lumos_stream_clips_total", stream=c) for c in CAMERAS),
            batches=found.total(f"{batch}_count"),
            clips_inferred=found.total(f"{batch}_sum"),
            batches_of={n: found.total(f"{batch}_bucket", le=f"{n}.0") for n in (1, 2)},
        )

    def since(self, start: "Counters") -> "Counters":
        def minus(now: Any, then: Any) -> Any:
            return {k: v - then[k] for k, v in now.items()} if isinstance(now, dict) else now - then

        return Counters(
            **{f.name: minus(getattr(self, f.name), getattr(start, f.name)) for f in fields(self)}
        )


def model_cpu_s(counted: Counters, batch_s: dict[int, float]) -> float:
    """The model's CPU over the run's batches: those of 1 and 2 clips at their cost, the rest
    (3 to `batch_max`) at the cost of their mean size, interpolated between whole sizes."""
    ones = counted.batches_of[1]
    twos = counted.batches_of[2] - ones
    rest = counted.batches - ones - twos
    total = ones * batch_s[1] + twos * batch_s[2]
    if rest > 0:
        mean = (counted.clips_inferred - ones - 2 * twos) / rest
        low = min(max(int(mean), 3), max(batch_s) - 1)
        total += rest * (batch_s[low] + (mean - low) * (batch_s[low + 1] - batch_s[low]))
    return total


def ratio(formula: float, measured: float) -> dict[str, float]:
    return {
        "formula": round(formula, 3),
        "measured": round(measured, 3),
        "ratio": round(formula / measured, 2),
    }


@dataclass(frozen=True)
class Run:
    """What the run did and used from its warm start to its end."""

    counted: Counters
    uploads: int
    results_written: int
    results_read: int
    result_json_bytes: int
    cpu_s: dict[str, float]
    alive_s: dict[str, float]
    idle: dict[str, float]
    """Idle cores of each process alive at the end (one of each role)."""
    traffic_bytes: int


def role(host: str) -> str:
    return host.split("-")[0]


def check_cpu_and_traffic(run: Run, units: UnitCosts) -> dict[str, dict[str, Any]]:
    """formula / measured for each role's CPU seconds and for Redis's traffic. For each role also
    its own work per unit (per frame, clip or upload) as the formula has it and as this run
    gives it: what is left of its CPU once the costs measured beside the run are taken away."""
    per_role: dict[str, dict[str, float]] = {}
    for kind in ("cpu_s", "alive_s"):
        for host, value in getattr(run, kind).items():
            per_role.setdefault(role(host), {}).setdefault(kind, 0.0)
            per_role[role(host)][kind] += value
    counted = run.counted
    costs = replace(
        sizing.Costs(),
        decode_frame_s=units.frame_s,
        model_clip_s=model_cpu_s(counted, units.batch_s) / counted.clips_inferred,
        upload_decode_s=units.upload_s,
        clip_bytes=units.clip_bytes,
        key_frame_bytes=units.key_frame_bytes,
        result_io_bytes=run.result_json_bytes,
    )
    own = {"ingest": "live_frame_s", "infer": "worker_clip_s", "api": "upload_s"}
    units_of = {
        # The cameras' 10 fps are below the model's 12: every frame decoded is one sampled.
        "ingest": counted.camera_frames,
        "infer": counted.clips_inferred,
        "api": run.uploads,
    }

    def formula(kind: str, at: sizing.Costs) -> float:
        processes = per_role[kind]["alive_s"]
        if kind == "ingest":
            return sizing.ingest_cpu(at, units_of[kind], units_of[kind], processes)
        if kind == "infer":
            return sizing.inference_cpu(at, units_of[kind], processes)
        return sizing.api_cpu(at, units_of[kind], processes)

    checked: dict[str, dict[str, Any]] = {
        "work": {
            "camera_frames": counted.camera_frames,
            "live_clips": counted.live_clips,
            "clips_cut": counted.clips_cut,
            "clips_inferred": counted.clips_inferred,
            "batches": counted.batches,
            "uploads": run.uploads,
            "process_s": {r: round(v["alive_s"], 1) for r, v in per_role.items()},
        }
    }
    for host, cores in run.idle.items():
        kind = role(host)
        at = replace(costs, process_cores=cores)
        beside = formula(kind, replace(at, **{own[kind]: 0.0}))
        measured = per_role[kind]["cpu_s"]
        checked[f"{kind}_cpu_s"] = ratio(formula(kind, at), measured) | {
            "own_ms_per_unit": {
                "formula": round(getattr(costs, own[kind]) * 1000, 2),
                "this_run": round((measured - beside) / units_of[kind] * 1000, 2),
            }
        }
    traffic = sizing.redis_traffic(
        costs,
        counted.clips_cut,
        counted.clips_inferred,
        counted.live_clips,
        run.results_written,
        run.results_read,
    )
    checked["redis_traffic_bytes"] = ratio(traffic, run.traffic_bytes)
    return checked


def check_memory(
    samples: list[RedisSample],
    units: UnitCosts,
    empty: int,
    used_peak: int,
    result: float,
    camera: float,
) -> dict[str, Any]:
    """formula / measured for Redis's memory at each sample; the sample of most memory in full.
    A connection's and a queued clip's memory are their means over the samples."""
    queued = [s for s in samples if s.queued]
    costs = replace(
        sizing.Costs(),
        empty_bytes=empty,
        command_bytes=round(units.command_bytes),
        connection_bytes=round(
            sum(s.connection_bytes for s in samples) / sum(s.connections for s in samples)
        ),
        entry_bytes=(
            round(sum(s.lane_bytes for s in queued) / sum(s.queued for s in queued))
            if queued
            else sizing.Costs().entry_bytes  # nothing was ever queued: the term is 0
        ),
        result_bytes=round(result),
        camera_bytes=round(camera),
    )

    def formula(s: RedisSample) -> float:
        return sizing.redis_memory(
            costs, s.connections, s.queued, len(CAMERAS), s.results, s.commands
        )

    peak = max(samples, key=lambda s: s.used)
    ratios = [formula(s) / s.used for s in samples]
    return {
        "at_peak": ratio(formula(peak) / 1024, peak.used / 1024),
        "peak_between_samples_kb": round(used_peak / 1024),
        "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
        "samples": len(samples),
        "peak": {
            "connections": peak.connections,
            "connection_kb": round(peak.connection_bytes / 1024),
            "queued": peak.queued,
            "results": peak.results,
            "commands": peak.commands,
        },
        "unit_bytes": {
            "empty": costs.empty_bytes,
            "command": costs.command_bytes,
            "connection": costs.connection_bytes,
            "queued_clip": costs.entry_bytes,
            "result": costs.result_bytes,
            "camera": costs.camera_bytes,
        },
    }


def unit_costs_row(units: UnitCosts, idle: dict[str, float]) -> dict[str, Any]:
    return {
        "camera_frame_ms": round(units.frame_s * 1000, 3),
        "upload_decode_ms": round(units.upload_s * 1000, 2),
        "model_batch_ms": {b: round(s * 1000, 2) for b, s in units.batch_s.items()},
        "idle_cores": {h: round(v, 4) for h, v in idle.items()},
        "clip_bytes": units.clip_bytes,
    }

"""The deployment the system tests fault: every part a real process, as in production.

A redis-server with append-only persistence (every write on disk before it is acknowledged), a
GStreamer RTSP camera serving two dark scenes, `lumos api`, two `lumos ingest` workers and one
`lumos infer` worker, all sharing a PROMETHEUS_MULTIPROC_DIR so that the API's /metrics covers
every process. Tests kill and restart any part by name and read each process's resources from
/proc.
"""

import os
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bench.servers import (
    SYSTEM_PYTHON,
    RedisServer,
    RtspCamera,
    free_port,
    lumos_process,
    stop_processes,
    wait_for,
)
from service.queue.redis import GROUP, lane_key
from tests.api.conftest import API_KEY, Service, service_env, upload

WORKERS = ("ingest-a", "ingest-b", "infer")
STARTUP_S = 420
CAMERAS = {"north": "/north", "south": "/south"}
LEASE_MS = 2000
SETTINGS = dict(
    api_keys=API_KEY,
    upload_max_bytes="400000",
    upload_max_s="20",
    upload_sync_max_s="10",
    lease_ms=str(LEASE_MS),
    claim_idle_ms="2000",
    reconnect_backoff="0.5x1000",
    open_timeout_s="3",
    stall_timeout_s="3",
    queue_files_max="24",
    upload_max_in_flight="8",
    # One key drives every load test here: its own cap is the process's (the per-key cap is
    # tested on a service of its own, tests/system/test_attack_classes.py).
    upload_max_in_flight_per_key="8",
    queue_live_max="8",
)


class AofRedis(RedisServer):
    """redis-server that writes every command to its append-only file before answering, so a
    SIGKILL loses nothing it acknowledged and a restart reloads it all."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory

    def command(self) -> list[str]:
        return super().command() + [
            *("--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory))
        ]


class FaultyCamera(RtspCamera):
    """tests/system/faulty_camera.py: `/resize` changes resolution, `/corrupt` breaks packets."""

    def __init__(self) -> None:
        super().__init__(paths=("/resize", "/corrupt"))

    def command(self) -> list[str]:
        script = Path(__file__).with_name("faulty_camera.py")
        return [SYSTEM_PYTHON, str(script), "--port", str(self.port), "--fps", str(self.fps)]


@dataclass(frozen=True)
class ProcStats:
    rss_kb: int
    peak_rss_kb: int
    fds: int
    threads: int


def proc_stats(pid: int) -> ProcStats:
    """Resident memory (now and its peak), open file descriptors and threads of a live process,
    from /proc."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return ProcStats(
        rss_kb=int(status["VmRSS"].split()[0]),
        peak_rss_kb=int(status["VmHWM"].split()[0]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(status["Threads"]),
    )


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The sum of every sample of `name` with `labels`, over all processes (0 when none)."""
    return Metrics.read(client).total(name, **labels)


@dataclass(frozen=True)
class Metrics:
    """One reading of /metrics, for several sums: each reading costs the API a rendering of
    every process's metrics."""

    samples: list[Sample]

    @classmethod
    def read(cls, client: httpx.Client) -> "Metrics":
        text = client.get("/metrics").text
        return cls([s for family in text_string_to_metric_families(text) for s in family.samples])

    def total(self, name: str, **labels: str) -> float:
        """The sum of every sample of `name` with `labels` (0 when none)."""
        return sum(
            s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()
        )


class System:
    """Start with `start()`, end with `stop()`; `kill(name)` and `start_worker(name)` any worker
    (a restart is both)."""

    def __init__(self, root: Path, artifact: Path) -> None:
        self.root = root
        self.redis = AofRedis(root / "redis")
        self.camera = RtspCamera(paths=tuple(CAMERAS.values()))
        port = free_port()
        self.env = service_env(root, artifact, redis_url=self.redis.url, port=str(port), **SETTINGS)
        self.url = f"http://127.0.0.1:{port}"
        self.env["PROMETHEUS_MULTIPROC_DIR"] = str(root / "prometheus")
        (root / "prometheus").mkdir(exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        self.workers: dict[str, subprocess.Popen] = {}
        self.worker_ids: dict[str, str] = {}
        self.api: Service | None = None
        self._starts: Counter[str] = Counter()

    def start(self, probe_video: Path) -> "System":
        self.redis.start()
        self.camera.start()
        log = self.root / "logs" / "api.log"
        self.api = Service(lumos_process("api", self.env, log), self.url, log, self.env)
        for name in WORKERS:
            self.start_worker(name)
        # Four processes importing torch at once: minutes on a busy machine.
        wait_for(self._api_ready, STARTUP_S, "lumos api to be ready", every=0.5)
        with self.client() as client:
            for camera_id, path in CAMERAS.items():
                answer = client.post(
                    "/v1/streams", json={"id": camera_id, "url": self.camera.url(path)}
                )
                assert answer.status_code == 201, answer.text
            wait_for(lambda: upload(client, probe_video).status_code == 200, STARTUP_S, "inference")
            for camera_id in CAMERAS:
                wait_for(lambda c=camera_id: self.predictions(client, c), 60, f"{camera_id} clips")
        return self

    def _api_ready(self) -> bool:
        assert self.api is not None
        if self.api.process.poll() is not None:
            raise AssertionError(f"lumos api exited:\n{self.api.output()}")
        try:
            return httpx.get(f"{self.api.url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        stop_processes(list(self.workers.values()), 20)
        if self.api is not None:
            self.api.stop()
        self.camera.kill()
        self.redis.kill()

    def client(self, key: str | None = API_KEY, timeout: float = 60.0) -> httpx.Client:
        assert self.api is not None
        return self.api.client(key, timeout)

    def start_worker(self, name: str) -> subprocess.Popen:
        """`lumos ingest|infer` as `name`, under a new worker id each start (a new pod)."""
        self._starts[name] += 1
        worker_id = f"{name}.{self._starts[name]}"
        env = {**self.env, "LUMOS_WORKER_ID": worker_id}
        role = name.split("-")[0]
        self.workers[name] = lumos_process(role, env, self.root / "logs" / f"{name}.log")
        self.worker_ids[name] = worker_id
        return self.workers[name]

    def kill(self, name: str) -> None:
        """SIGKILL: no goodbye, no cleanup, as a crash or an OOM kill."""
        process = self.workers[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def pids(self) -> dict[str, int]:
        assert self.api is not None
        return {"api": self.api.process.pid} | {n: p.pid for n, p in self.workers.items()}

    def alive(self) -> dict[str, bool]:
        assert self.api is not None
        processes = {"api": self.api.process} | self.workers
        return {name: process.poll() is None for name, process in processes.items()}

    def store(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)

    def owners(self) -> dict[str, str | None]:
        """Camera id -> the worker id holding its lease."""
        store = self.store()
        leases = {c: store.get(f"lumos:lease:{c}") for c in self.camera_ids()}
        return {c: holder.decode() if holder else None for c, holder in leases.items()}

    def held_by(self, name: str) -> int:
        """Upload clips delivered to worker `name` and not acknowledged yet."""
        consumers = self.store().xpending(lane_key("files"), GROUP)["consumers"]
        pending = {c["name"].decode(): c["pending"] for c in consumers}
        return pending.get(self.worker_ids[name], 0)

    def camera_ids(self) -> list[str]:
        return [key.decode() for key in self.store().hkeys("lumos:cameras")]

    @staticmethod
    def predictions(client: httpx.Client, camera_id: str, since: float = 0.0) -> list[dict]:
        params = {"since": since, "limit": 1000}
        answer = client.get(f"/v1/streams/{camera_id}/predictions", params=params)
        return answer.json()["results"]

    def log_sizes(self) -> dict[Path, int]:
        return {path: path.stat().st_size for path in (self.root / "logs").glob("*.log")}

    def logs(self, since: dict[Path, int] | None = None) -> str:
        """Every process's log, or what each wrote after `since` (from `log_sizes()`)."""
        text = []
        for path in (self.root / "logs").glob("*.log"):
            with path.open(errors="replace") as log:
                log.seek((since or {}).get(path, 0))
                text.append(log.read())
        return "\n".join(text)

    def uploads_left(self) -> list[Path]:
        return list(Path(self.env["TMPDIR"]).glob("lumos-upload-*"))

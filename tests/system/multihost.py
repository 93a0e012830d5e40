"""A deployment spread over hosts (network namespaces, tests/system/hosts.py): each part a real
process inside its own host, told nothing but where Redis is.

Hosts: `redis`, `api`, `ingest-a`, `ingest-b`, `infer-a`, `infer-b`, `camera`, and any a test adds
(Sentinel's). A process may reach Redis through a `Relay` in the test's namespace instead (its
Redis address is the relay's), so that the test can slow or stall that one link.
"""

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Generic, TypeVar

import httpx
import redis

from bench.servers import ROOT, RedisServer, RtspCamera, stop_processes, wait_for
from bench.streams import cpu_seconds
from service.queue.redis import GROUP, lane_key
from tests.api.conftest import API_KEY, service_env
from tests.system.deployment import CAMERAS, LEASE_MS
from tests.system.hosts import Hosts

REDIS_PORT = 6379
SENTINEL_PORT = 26379
API_PORT = 8000
CAMERA_PORT = 8554
STARTUP_S = 300
HOSTS = ["redis", "api", "ingest-a", "ingest-b", "infer-a", "infer-b", "camera"]
SETTINGS = dict(
    api_keys=API_KEY,
    lease_ms=str(LEASE_MS),
    claim_idle_ms="2000",
    reconnect_backoff="0.5x1000",
    open_timeout_s="3",
    stall_timeout_s="3",
    queue_files_max="24",
    queue_live_max="8",
    upload_max_s="20",
    upload_sync_max_s="10",
    batch_max="4",
    redis_connections="4",
    threads="1",
    decode_threads="1",
)


class HostRedis(RedisServer):
    """redis-server inside `host`, listening on its address, its files (a replica's copy of the
    primary) in `directory`; nothing saved on a schedule."""

    def __init__(self, hosts: Hosts, host: str, directory: Path, *options: str) -> None:
        super().__init__(REDIS_PORT)
        self.hosts, self.host, self.options = hosts, host, options
        self.directory = directory
        self.address = hosts.addresses[host]

    def command(self) -> list[str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        server = super().command() + ["--bind", "0.0.0.0", "--protected-mode", "no"]
        server += ["--dir", str(self.directory), *self.options]
        return self.hosts.command(self.host, server)

    def ready(self) -> bool:
        try:
            probe = redis.Redis(self.address, self.port, socket_connect_timeout=0.3)
            return bool(probe.ping())
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def url(self) -> str:
        return f"redis://{self.address}:{self.port}/0"


class HostSentinel(HostRedis):
    """redis-sentinel inside `host` watching the redis-server of host `primary` as master
    `lumos`; quick to judge it down (1 s), as a test needs."""

    def __init__(self, hosts: Hosts, host: str, directory: Path, primary: str, quorum: int):
        super().__init__(hosts, host, directory)
        self.port = SENTINEL_PORT
        self.primary, self.quorum = hosts.addresses[primary], quorum

    def command(self) -> list[str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "sentinel.conf"  # Sentinel rewrites it as it learns
        config.write_text(
            f"port {self.port}\nbind 0.0.0.0\nprotected-mode no\ndir {self.directory}\n"
            f"sentinel monitor lumos {self.primary} {REDIS_PORT} {self.quorum}\n"
            "sentinel down-after-milliseconds lumos 1000\n"
            "sentinel failover-timeout lumos 4000\n"
            "sentinel parallel-syncs lumos 1\n"
        )
        return self.hosts.command(self.host, ["redis-sentinel", str(config)])


class HostCamera(RtspCamera):
    """The RTSP test camera inside `host`: one dark scene per path of CAMERAS, 96x72 at 10 fps."""

    def __init__(self, hosts: Hosts, host: str = "camera") -> None:
        super().__init__(tuple(CAMERAS.values()), fps=10, size=(96, 72), port=CAMERA_PORT)
        self.hosts, self.host = hosts, host
        self.address = hosts.addresses[host]

    def command(self) -> list[str]:
        camera = super().command() + ["--host", "0.0.0.0"]
        return self.hosts.command(self.host, camera)

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.address, self.port), 0.3):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def url(self, path: str | None = None) -> str:
        return f"rtsp://{self.address}:{self.port}{path or self.paths[0]}"


class Deployment:
    """`lumos api|ingest|infer` processes, each in its host; `client()` reaches the API across
    the bridge, `store()` reads Redis directly (the test's view, not a part of the system)."""

    def __init__(self, hosts: Hosts, root: Path, artifact: Path, redis_env: dict[str, str]):
        self.hosts = hosts
        self.root = root
        self.env = service_env(root, artifact, **SETTINGS)
        self.env["PROMETHEUS_MULTIPROC_DIR"] = str(root / "prometheus")
        self.env.update(redis_env)
        (root / "prometheus").mkdir(exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        self.url = f"http://{hosts.addresses['api']}:{API_PORT}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.cpu: dict[str, float] = {}
        self.killed: dict[str, float] = {}
        """time.monotonic() when `kill` ended a host's process."""
        self.store_url = ""

    def start(self, host: str, role: str, **env: str) -> subprocess.Popen:
        """`lumos ROLE` inside `host`, worker id = the host's name; `env` adds variables."""
        variables = {**self.env, "LUMOS_WORKER_ID": host, **env}
        if role in ("api", "serve"):
            variables |= {"LUMOS_HOST": self.hosts.addresses[host], "LUMOS_PORT": str(API_PORT)}
        command = self.hosts.command(host, [sys.executable, "-m", "service.cli", role])
        with (self.root / "logs" / f"{host}.log").open("ab") as log:
            self.processes[host] = subprocess.Popen(
                command, env=variables, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        return self.processes[host]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each process has used, read from /proc while it runs; a
        process killed keeps the last reading (`kill` reads it first)."""
        for host, process in self.processes.items():
            with suppress(FileNotFoundError, ProcessLookupError):
                self.cpu[host] = cpu_seconds(process.pid)
        return dict(self.cpu)

    def kill(self, host: str) -> None:
        """SIGKILL of the host's process: the host is gone, with whatever it held."""
        self.cpu_seconds()
        process = self.processes[host]
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.killed[host] = time.monotonic()

    def stop(self) -> None:
        stop_processes(list(self.processes.values()), 15)

    def wait_ready(self) -> None:
        def ready() -> bool:
            for host, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{host} exited:\n{self.log(host)}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, STARTUP_S, "lumos api to be ready", every=0.5)

    def log(self, host: str) -> str:
        return (self.root / "logs" / f"{host}.log").read_text(errors="replace")[-4000:]

    def client(self, key: str | None = API_KEY, timeout: float = 60.0) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def store(self) -> redis.Redis:
        return redis.Redis.from_url(self.store_url, socket_timeout=10)

    def held_by(self, worker: str) -> int:
        """Clips (either lane) delivered to `worker` and not acknowledged yet."""
        held = 0
        for lane in ("files", "live"):
            consumers = self.store().xpending(lane_key(lane), GROUP)["consumers"]
            held += sum(c["pending"] for c in consumers if c["name"].decode() == worker)
        return held

    def lag(self) -> int:
        """Clips queued and not yet delivered to any worker, both lanes: the consumer group's
        `lag` (XINFO GROUPS), the number KEDA's redis-streams trigger scales inference on."""
        store = self.store()
        groups = [store.xinfo_groups(lane_key(lane)) for lane in ("files", "live")]
        return sum(g["lag"] or 0 for found in groups for g in found if g["name"] == GROUP.encode())

    def owners(self) -> dict[str, str | None]:
        store = self.store()
        leases = {c: store.get(f"lumos:lease:{c}") for c in CAMERAS}
        return {c: holder.decode() if holder else None for c, holder in leases.items()}


T = TypeVar("T")


class Sampler(Generic[T]):
    """Calls `read()` every `every` seconds in a thread while open; `values` keeps the answers
    (a failed read is skipped: the link being read across may be the one under test)."""

    def __init__(self, read: Callable[[], T], every: float = 0.5) -> None:
        self.read, self.every = read, every
        self.values: list[T] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler[T]":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            with suppress(redis.RedisError):
                self.values.append(self.read())


@contextmanager
def hosts_for(*extra: str) -> Iterator[tuple[Hosts, ExitStack]]:
    """The hosts, and a stack that stops what the test starts in them before they go."""
    with Hosts(HOSTS + list(extra)) as hosts, ExitStack() as stack:
        yield hosts, stack

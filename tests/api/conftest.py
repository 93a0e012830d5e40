"""The service as users run it: `lumos serve` (or `lumos api` and its workers) as real processes,
reached over real HTTP on a free port of 127.0.0.1; and the API in this process (`in_process`),
over the in-memory runtime, for what does not need a server process to be tested."""

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bench.servers import ROOT, TEST_NETWORKS, free_port, lumos_process, wait_for
from service.api.app import create_app
from service.runtime import Runtime
from service.settings import Settings

API_KEY = "test-key-0123456789"


@dataclass
class Service:
    """A running `lumos` process serving HTTP; `log` holds its output for failure messages."""

    process: subprocess.Popen
    url: str
    log: Path
    env: dict[str, str]

    def client(self, key: str | None = API_KEY, timeout: float = 60.0) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def service_env(root: Path, artifact: Path, **settings: str) -> dict[str, str]:
    """Environment of a test service whose every path is under `root` (uploads' temporary files
    included, through TMPDIR), serving `artifact` with the quick fp32 backend."""
    for name in ("models", "artifacts", "data", "runs", "tmp"):
        (root / name).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMOS_")}
    env.update(
        LUMOS_HOST="127.0.0.1",
        LUMOS_MODEL_DIR=str(artifact),
        LUMOS_MODEL_ROOT=str(root / "models"),
        LUMOS_ARTIFACTS_ROOT=str(root / "artifacts"),
        LUMOS_DATA_ROOT=str(root / "data"),
        LUMOS_RUNS_DIR=str(root / "runs"),
        LUMOS_TRAIN_CONFIGS=str(ROOT / "configs" / "cpu-small"),
        LUMOS_BACKEND="fp32",
        LUMOS_BATCH_WAIT_MS="5",
        LUMOS_MODEL_POLL_S="0.3",
        LUMOS_CAMERA_NETWORKS=TEST_NETWORKS,
        LUMOS_WEBHOOK_NETWORKS=TEST_NETWORKS,
        TMPDIR=str(root / "tmp"),
    )
    env.update({f"LUMOS_{k.upper()}": v for k, v in settings.items()})
    return env


def start_service(
    role: str, env: dict[str, str], log: Path, ready: bool = True, timeout: float = 120
) -> Service:
    """Start `lumos ROLE` on a free port; wait until /readyz answers 200 (or /healthz)."""
    port = free_port()
    env = {**env, "LUMOS_PORT": str(port)}
    service = Service(lumos_process(role, env, log), f"http://127.0.0.1:{port}", log, env)

    def up() -> bool:
        if service.process.poll() is not None:
            raise AssertionError(f"lumos {role} exited:\n{service.output()}")
        try:
            answer = httpx.get(f"{service.url}/{'readyz' if ready else 'healthz'}", timeout=2)
        except httpx.TransportError:
            return False
        return answer.status_code == 200

    try:
        wait_for(up, timeout, f"lumos {role} to be ready", every=0.3)
    except BaseException:
        service.stop()
        raise
    return service


@pytest.fixture(scope="module")
def service_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Service]]:
    """Starts `lumos ROLE` services (stopped after the module): factory(role, env)."""
    started: list[Service] = []

    def start(role: str, env: dict[str, str], ready: bool = True) -> Service:
        log = tmp_path_factory.mktemp("logs") / f"{role}.log"
        started.append(start_service(role, env, log, ready))
        return started[-1]

    yield start
    for service in reversed(started):
        service.stop()


def upload(
    client: httpx.Client, path: Path, route: str = "/v1/classify", **params
) -> httpx.Response:
    with path.open("rb") as f:
        return client.post(route, files={"file": (path.name, f, "video/mp4")}, params=params)


def make_dataset(root: Path) -> Path:
    """The generated dark benchmark at its smallest: 2 training and 1 test clip per class."""
    subprocess.run(
        [sys.executable, "-m", "service.cli", "data", "synth", "--out", str(root)]
        + ["--clips-per-class", "2", "--test-clips-per-class", "1", "--frames", "24"]
        + ["--size", "96x72", "--workers", "1"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return root


def job_state(client: httpx.Client, job_id: str, *states: str) -> dict | None:
    """The job's record once it is in one of `states` (for `wait_for`), else None."""
    job = client.get(f"/v1/jobs/{job_id}").json()
    return job if job["state"] in states else None


def service_settings(root: Path, artifact: Path, **settings: object) -> Settings:
    """`service_env`'s settings, for an app in this process (no Redis: the in-memory runtime)."""
    env = service_env(root, artifact)
    fields = {
        name: env[f"LUMOS_{name.upper()}"]
        for name in ("model_dir", "model_root", "artifacts_root", "data_root", "runs_dir")
    }
    fields["train_configs"] = env["LUMOS_TRAIN_CONFIGS"]
    fields["camera_networks"] = fields["webhook_networks"] = TEST_NETWORKS
    return Settings(_env_file=None, redis_url=None, **(fields | settings))


@pytest.fixture
def in_process(tmp_path: Path, tiny_artifact: Path) -> Iterator[Callable[..., TestClient]]:
    """Makes the HTTP API in this process, without the job runner: factory(**settings) -> a
    TestClient whose settings put every path under `tmp_path` (`client.app.state.runtime`)."""
    clients: list[TestClient] = []

    def make(**settings: object) -> TestClient:
        runtime = Runtime.from_settings(service_settings(tmp_path, tiny_artifact, **settings))
        clients.append(TestClient(create_app(runtime, run_trainer=False)).__enter__())
        return clients[-1]

    yield make
    for client in clients:
        client.__exit__(None, None, None)

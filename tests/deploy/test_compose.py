"""The real docker-compose.yml, run end to end on this machine's Docker engine.

This engine gives containers host networking only (docker/engine.sh), so a small override, written
here, puts every service on the host's network with free ports of 127.0.0.1 and uses the local
stand-ins for the third-party images (Grafana has none: it is left out; its provisioning is checked
in test_manifests.py). Host networking also means two ingest replicas cannot share one metrics port:
the override runs them as `ingest` and `ingest-2` (the same service definition), each with its own
port and worker id. For the kill test it widens two budgets (clip staleness, live queue length) so
that every clip the camera yields must get a result, and shortens the time before a dead worker's
clips are reclaimed.
"""

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from bench.servers import free_port, wait_for
from tests.deploy.conftest import (
    ROOT,
    compose,
    container_ids,
    container_logs,
    labels_of,
    upload,
)

# The first test's setup may include a cold `make images` (about 6 min) and the stack's start.
pytestmark = pytest.mark.timeout(1800)

STAND_INS = {
    "redis": "lumos-stand-in/redis:bookworm",
    "prometheus": "lumos-stand-in/prometheus:bookworm",
}
WORKERS = ("ingest", "ingest-2", "infer", "trainer")
PROJECT_LABEL = "com.docker.compose.project"


@dataclass
class Stack:
    project: str
    files: list[Path]
    api: str
    prometheus: str
    redis_port: int
    started: float

    def compose(self, *args: str, check: bool = True) -> str:
        return compose(self.project, self.files, *args, check=check)


def override(ports: dict[str, int], prometheus_config: Path) -> dict:
    """The compose override for a host-networking engine (see the module docstring)."""
    lumos = {
        "LUMOS_REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "LUMOS_HOST": "127.0.0.1",
        "LUMOS_PORT": str(ports["api"]),
        "LUMOS_STALENESS_S": "600",
        "LUMOS_QUEUE_LIVE_MAX": "1000",
        "LUMOS_CLAIM_IDLE_MS": "3000",
        # With host networking the demo camera is on loopback, which the URL policy refuses
        # unless listed; Prometheus is reached by port there, not by its service name.
        "LUMOS_CAMERA_NETWORKS": "private,public,127.0.0.1/32",
        "LUMOS_DENIED_ENDPOINTS": f"127.0.0.1:{ports['prometheus']}",
    }

    def role(name: str, **extra: object) -> dict:
        environment = {**lumos, "LUMOS_WORKER_ID": name}
        if name in WORKERS:
            environment["LUMOS_METRICS_PORT"] = str(ports[name])
        return {"network_mode": "host", "environment": environment, **extra}

    def probe(*command: str) -> dict:
        return {"test": ["CMD", *command], "interval": "2s", "timeout": "10s", "retries": 60}

    api = f"http://127.0.0.1:{ports['api']}"
    camera = f"rtsp://127.0.0.1:{ports['camera']}/demo"
    ingest = {"file": str(ROOT / "docker-compose.yml"), "service": "ingest"}
    listen = f"127.0.0.1:{ports['prometheus']}"
    services = {
        "redis": {
            "network_mode": "host",
            "image": STAND_INS["redis"],
            "command": ["redis-server", "--appendonly", "yes", "--dir", "/data"]
            + ["--bind", "127.0.0.1", "--port", str(ports["redis"])]
            # The compose file's password, which its Lumos containers and health check use.
            + ["--requirepass", "${LUMOS_REDIS_PASSWORD:-change-me-redis}"],
            "healthcheck": probe("redis-cli", "-p", str(ports["redis"]), "ping"),
        },
        "api": role("api"),
        "ingest": role("ingest", deploy={"replicas": 1}),
        "ingest-2": role("ingest-2", deploy={"replicas": 1}, extends=ingest),
        "infer": role("infer"),
        "trainer": role("trainer"),
        "camera": {
            "network_mode": "host",
            "command": ["--host", "127.0.0.1", "--port", str(ports["camera"]), "--path", "/demo"],
            "healthcheck": probe("bash", "-c", f"</dev/tcp/127.0.0.1/{ports['camera']}"),
        },
        "demo-subscription": role("demo-subscription", command=[api, camera]),
        "prometheus": {
            "network_mode": "host",
            "image": STAND_INS["prometheus"],
            "command": [
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                f"--web.listen-address={listen}",
            ],
            "volumes": [f"{prometheus_config}:/etc/prometheus/prometheus.yml:ro"],
            "healthcheck": probe("wget", "-q", "-O", "/dev/null", f"http://{listen}/-/ready"),
        },
        "grafana": {"profiles": ["grafana-needs-a-registry"]},
    }
    return {"services": services}


def prometheus_config(ports: dict[str, int]) -> dict:
    """docker/prometheus/prometheus.yml's jobs, with this run's 127.0.0.1 targets."""
    targets = {
        "api": [ports["api"]],
        "ingest": [ports["ingest"], ports["ingest-2"]],
        "infer": [ports["infer"]],
        "trainer": [ports["trainer"]],
    }
    jobs = [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in job_ports]}]}
        for job, job_ports in targets.items()
    ]
    return {"global": {"scrape_interval": "2s"}, "scrape_configs": jobs}


@pytest.fixture(scope="module")
def stack(images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    names = ("api", "redis", "prometheus", "camera", *WORKERS)
    ports = {name: free_port() for name in names}
    work = tmp_path_factory.mktemp("compose")
    (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(ports)))
    files = [work / "override.yml"]
    files[0].write_text(yaml.safe_dump(override(ports, work / "prometheus.yml")))
    stack = Stack(
        project=f"lumos-test-{os.getpid()}",
        files=files,
        api=f"http://127.0.0.1:{ports['api']}",
        prometheus=f"http://127.0.0.1:{ports['prometheus']}",
        redis_port=ports["redis"],
        started=time.monotonic(),
    )
    try:
        stack.compose("up", "--detach", "--no-build")
        yield stack
    except BaseException:
        print(container_logs(stack.project))
        raise
    finally:
        stack.compose("down", "--volumes", "--timeout", "5", check=False)


def predictions(stack: Stack) -> list[dict]:
    response = httpx.get(f"{stack.api}/v1/streams/demo/predictions?limit=1000", timeout=10)
    return response.json()["results"] if response.status_code == 200 else []


def test_demo_camera_predictions_flow_from_ingest_through_infer_to_the_api(stack, demo_labels):
    results = wait_for(lambda: predictions(stack), timeout=300, what="demo predictions", every=1)
    print(f"first demo prediction {time.monotonic() - stack.started:.0f} s after compose up")
    for result in results:
        assert result["stream"] == "demo" and result["error"] is None
        assert {p["label"] for p in result["top"]} <= demo_labels
    status = httpx.get(f"{stack.api}/v1/streams/demo", timeout=10).json()
    assert status["worker"] in ("ingest", "ingest-2")  # an ingest replica holds the camera


def test_an_upload_is_classified(stack, demo_labels, make_video, tmp_path):
    response = upload(stack.api, make_video(tmp_path / "dark.mp4", frames=48, fps=12.0))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["clip_count"] >= 1
    assert labels_of(answer) and labels_of(answer) <= demo_labels


def scraped(stack: Stack) -> dict[str, list[str]]:
    response = httpx.get(f"{stack.prometheus}/api/v1/query", params={"query": "up"}, timeout=10)
    series: dict[str, list[str]] = {}
    for sample in response.json()["data"]["result"]:
        series.setdefault(sample["metric"]["job"], []).append(sample["value"][1])
    return series


def test_prometheus_scrapes_every_lumos_container(stack):
    expected = {"api": 1, "ingest": 2, "infer": 1, "trainer": 1}

    def all_up() -> dict[str, list[str]] | None:
        series = scraped(stack)
        counts = {job: values.count("1") for job, values in series.items()}
        return series if counts == expected else None

    wait_for(all_up, timeout=60, what=f"up == 1 for {expected}", every=1)
    response = httpx.get(
        f"{stack.prometheus}/api/v1/query",
        params={"query": 'sum(lumos_stream_clips_total{stream="demo"})'},
        timeout=10,
    )
    assert float(response.json()["data"]["result"][0]["value"][1]) > 0


def pending_clips(stack: Stack) -> int:
    """Clips delivered to an infer worker and not yet acknowledged, over both lanes."""
    total = 0
    for lane in ("files", "live"):
        reply = stack.compose(
            "exec", "-T", "redis", "redis-cli", "-p", str(stack.redis_port),
            "XPENDING", f"lumos:clips:{lane}", "lumos-infer",
        )  # fmt: skip
        total += int(reply.split()[0] or 0)
    return total


def test_killing_infer_loses_no_clip(stack, make_video, tmp_path):
    before = predictions(stack)
    assert before, "the stream must be classified before the kill"
    stack.compose("kill", "--signal", "SIGKILL", "infer")
    answer: dict = {}
    # 20 s of video: the API waits up to 10x its length for the results, the outage included.
    video = make_video(tmp_path / "during-outage.mp4", frames=240, fps=12.0)
    uploader = threading.Thread(target=lambda: answer.update(upload(stack.api, video, 300).json()))
    uploader.start()
    time.sleep(5)  # clips queue up (the upload's and the camera's) while no worker runs
    stack.compose("start", "infer")
    uploader.join(timeout=300)
    assert answer.get("status") == "done", answer
    assert answer["clip_count"] == len(answer["clips"]) >= 2
    assert all(clip["error"] is None for clip in answer["clips"])

    last_before = max(r["seq"] for r in before)
    wait_for(
        lambda: max(r["seq"] for r in predictions(stack)) >= last_before + 15,
        timeout=180,
        what="the demo stream to move on past the outage",
        every=1,
    )
    seqs = {r["seq"] for r in predictions(stack)}
    missing = set(range(last_before, max(seqs) + 1)) - seqs
    assert not missing, f"live clips without a result: {sorted(missing)}"
    wait_for(lambda: pending_clips(stack) == 0, timeout=30, what="no clip left pending")


def test_compose_down_leaves_no_container(stack):
    stack.compose("down", "--volumes", "--timeout", "5")
    assert container_ids(stack.project) == []
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label={PROJECT_LABEL}={stack.project}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert volumes.split() == []

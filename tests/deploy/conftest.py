"""Fixtures of the deployment tests: this machine's Docker engine and the images, made the way a
developer makes them (`make docker-engine`, `make images`), so the tests exercise those targets too.
Both are idempotent: a running engine and images already built are reused (a cold build of the
images takes minutes, a warm one seconds)."""

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from model.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
DEMO_ARTIFACT = ROOT / "artifacts" / "demo"


def make(target: str) -> None:
    subprocess.run(["make", "--no-print-directory", target], cwd=ROOT, check=True)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """dockerd and the Compose plugin, installed and started here when missing (as root)."""
    make("docker-engine")


@pytest.fixture(scope="session")
def images(docker_engine: None) -> float:
    """lumos:cpu, lumos-camera:latest and the local stand-ins; returns the seconds it took."""
    started = time.monotonic()
    make("images")
    return time.monotonic() - started


@pytest.fixture(scope="session")
def demo_labels() -> set[str]:
    """The labels of the model the images bake in."""
    return set(load_manifest(DEMO_ARTIFACT).labels)


def compose(project: str, files: list[Path], *args: str, check: bool = True) -> str:
    """`docker compose` on the repository's compose file plus `files`; returns its stdout."""
    command = ["docker", "compose", "-p", project, "-f", str(ROOT / "docker-compose.yml")]
    command += [arg for file in files for arg in ("-f", str(file))]
    result = subprocess.run(
        [*command, *args], cwd=ROOT, check=check, capture_output=True, text=True
    )
    return result.stdout


def upload(api: str, video: Path, timeout: float = 120.0) -> httpx.Response:
    with video.open("rb") as file:
        return httpx.post(
            f"{api}/v1/classify",
            files={"file": (video.name, file, "video/mp4")},
            timeout=timeout,
        )


def labels_of(classification: dict) -> set[str]:
    """Every label a /v1/classify answer names (its summary and each clip's top-k)."""
    labels = {prediction["label"] for prediction in classification["video"]["top"]}
    for clip in classification["clips"]:
        labels |= {prediction["label"] for prediction in clip["top"]}
    return labels


def container_ids(project: str) -> list[str]:
    listing = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return listing.split()


def container_logs(project: str) -> str:
    """Every container's last lines, for a failing test's report."""
    logs = []
    for container in container_ids(project):
        name = json.loads(
            subprocess.run(["docker", "inspect", container], capture_output=True, text=True).stdout
            or "[{}]"
        )[0].get("Name", container)
        tail = subprocess.run(
            ["docker", "logs", "--tail", "30", container], capture_output=True, text=True
        )
        logs.append(f"--- {name}\n{tail.stdout}{tail.stderr}")
    return "\n".join(logs)

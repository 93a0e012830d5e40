"""The lumos:cpu image on its own: `docker run ... lumos:cpu serve` answers an upload with the demo
model it bakes in, as an unprivileged user, and reports itself healthy."""

import json
import os
import subprocess

import httpx
import pytest

from model.manifest import load_manifest
from tests.deploy.conftest import DEMO_ARTIFACT, labels_of, upload
from tests.servers import free_port, wait_for

# This test's setup may include a cold `make images` (about 6 min here).
pytestmark = pytest.mark.timeout(1800)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def health(container: str) -> str:
    state = subprocess.run(
        ["docker", "inspect", "--format", "{{json .State.Health.Status}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(state)


def test_the_image_serves_the_demo_model(images, demo_labels, make_video, tmp_path):
    port = free_port()
    container = f"lumos-serve-{os.getpid()}"
    command = ["docker", "run", "--detach", "--rm", "--name", container, "--network", "host"]
    command += ["lumos:cpu", "serve", "--host", "127.0.0.1", "--port", str(port)]
    subprocess.run(command, check=True, capture_output=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: ready(url), timeout=180, what="lumos serve in docker to be ready", every=1)
        response = upload(url, make_video(tmp_path / "dark.mp4", frames=32, fps=12.0))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model_version"] == load_manifest(DEMO_ARTIFACT).version
        assert labels_of(answer) and labels_of(answer) <= demo_labels

        user = subprocess.run(["docker", "exec", container, "id", "-u"], capture_output=True)
        assert user.stdout.decode().strip() == "10001"
        wait_for(lambda: health(container) == "healthy", 60, "the HEALTHCHECK to pass", every=1)
    except BaseException:
        logs = subprocess.run(["docker", "logs", "--tail", "40", container], capture_output=True)
        print(logs.stdout.decode(), logs.stderr.decode())
        raise
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True)

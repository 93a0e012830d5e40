"""`lumos serve`, `lumos ingest`, `lumos infer` as a user runs them."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench.servers import ROOT, lumos_process
from tests.api.conftest import start_service


def lumos(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LUMOS_")} | env
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_without_a_model_says_what_is_missing(tmp_path: Path) -> None:
    done = lumos("serve", LUMOS_MODEL_DIR=str(tmp_path / "nothing"))
    assert done.returncode != 0
    assert "no model to serve" in done.stderr and "nothing" in done.stderr


@pytest.mark.parametrize("role", ["ingest", "infer"])
def test_worker_roles_need_redis(role: str) -> None:
    done = lumos(role)
    assert done.returncode != 0 and "LUMOS_REDIS_URL" in done.stderr


def test_serve_runs_api_ingest_and_inference_in_one_process(
    tiny_artifact: Path, make_video, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMOS_")} | {
        "LUMOS_MODEL_DIR": str(tiny_artifact),
        "LUMOS_MODEL_ROOT": str(tmp_path / "models"),
        "LUMOS_CACHE_DIR": str(tmp_path / "cache"),
        "LUMOS_BACKEND": "fp32",
    }
    log = tmp_path / "serve.log"
    service = start_service("serve", env, log, timeout=240)
    try:
        metrics = httpx.get(f"{service.url}/metrics", timeout=5).text
        assert 'lumos_model_info{version="tiny-1"} 1.0' in metrics
    finally:
        service.stop()
    # Stopped cleanly by SIGTERM: the roles shut down inside the app's lifespan.
    assert "service roles stopped: api, infer, ingest" in log.read_text()


def test_lumos_process_helper_runs_a_role(tmp_path: Path) -> None:
    process = lumos_process("infer", {"PATH": os.environ["PATH"]}, tmp_path / "infer.log")
    assert process.wait(timeout=60) != 0
    assert "LUMOS_REDIS_URL" in (tmp_path / "infer.log").read_text()

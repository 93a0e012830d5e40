"""A `lumos serve` process for the end-to-end benchmarks, on a free port, isolated from others.

It runs as its own process, as in production, so its CPU is its own and py-spy can watch it. Its
model registry, caches and job folders live in a scratch directory, so neither the models other
people registered under runs/ nor a Redis URL in the environment change what is measured.
"""

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.report import SCRATCH
from bench.servers import TEST_NETWORKS, free_port, lumos_process, wait_for


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    backend: str
    """The inference backend it chose at start-up."""


def _ready(url: str) -> dict | None:
    try:
        response = httpx.get(f"{url}/readyz", timeout=5.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@contextmanager
def lumos_server(model: Path, settings: dict[str, str], log: Path) -> Iterator[Server]:
    """`lumos serve` serving `model`, with LUMOS_* `settings`, ready when this yields."""
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUMOS_")}
        env |= {
            "LUMOS_PORT": str(port),
            "LUMOS_MODEL_DIR": str(model),
            "LUMOS_MODEL_ROOT": f"{scratch}/models",
            "LUMOS_RUNS_DIR": f"{scratch}/jobs",
            "LUMOS_CACHE_DIR": str(SCRATCH / "cache"),
            "LUMOS_CAMERA_NETWORKS": TEST_NETWORKS,  # the benchmark's cameras are on 127.0.0.1
            **settings,
        }
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
        process = lumos_process("serve", env, log)
        url = f"http://127.0.0.1:{port}"
        try:

            def up() -> dict | None:
                if process.poll() is not None:
                    raise RuntimeError(f"lumos serve exited; see {log}")
                return _ready(url)

            # Start-up times every backend candidate on a calibration batch: a minute when busy.
            ready = wait_for(up, 600.0, "lumos serve to be ready", every=1.0)
            yield Server(url, process.pid, ready["checks"]["inference"]["backend"])
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

"""Real servers for tests and benchmarks, each on a free port of 127.0.0.1, that the caller may
kill and restart. Here, not in tests/, because benchmarks launch them too and must not depend on
the test package (tests may import bench, never the other way round).

`RedisServer` is a private redis-server (nothing on disk), so a test can kill it without touching
the shared one on 6379. `RtspCamera` is the GStreamer RTSP test camera
(docker/camera/rtsp_camera.py, run by Debian's python3 that has the GStreamer bindings). Both
restart on the port they first had, as a real server coming back would. `MosquittoBroker` is
Debian's MQTT broker. `WebhookReceiver` is an HTTP server in a thread of the test that keeps what
is POSTed to it.
"""

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
CAMERA_SCRIPT = ROOT / "docker" / "camera" / "rtsp_camera.py"
SYSTEM_PYTHON = "/usr/bin/python3"
# The loopback address every test server listens on, and nothing else of loopback: camera and
# webhook URLs may reach it (LUMOS_CAMERA_NETWORKS / LUMOS_WEBHOOK_NETWORKS), as in a deployment
# that lists its own cameras' network. 127.0.0.2 and ::1 stay refused.
TEST_NETWORKS = "private,public,127.0.0.1/32"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str, every: float = 0.05):
    """Poll `condition()` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class _Server:
    """A child process serving on `port`; `kill` is SIGKILL (no goodbye), `restart` same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return _listening(self.port)

    def start(self, timeout: float = 15.0) -> "_Server":
        # A file, not a pipe: nobody reads a pipe while the server runs, and a full one blocks it.
        errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=errors)

        def up() -> bool:
            if self.process.poll() is not None:
                errors.seek(0)
                raise RuntimeError(f"{self.command()} exited: {errors.read().decode()[-2000:]}")
            return self.ready()

        wait_for(up, timeout, f"{type(self).__name__} on port {self.port}")
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        wait_for(lambda: not _listening(self.port), 5.0, f"port {self.port} to close")

    def restart(self) -> "_Server":
        self.kill()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


class RedisServer(_Server):
    def command(self) -> list[str]:
        return [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    def ready(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.ConnectionError:
            return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class MosquittoBroker(_Server):
    """Mosquitto on 127.0.0.1 only, anonymous, nothing persisted."""

    def command(self) -> list[str]:
        self.config = tempfile.NamedTemporaryFile("w", suffix=".conf")
        self.config.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.config.flush()
        return ["mosquitto", "-c", self.config.name]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


class RtspCamera(_Server):
    """H.264 over RTSP at `fps`, from a looped `file` or a generated dark scene, on `paths`."""

    def __init__(
        self,
        paths: tuple[str, ...] = ("/cam",),
        file: Path | None = None,
        fps: int = 15,
        size: tuple[int, int] = (160, 120),
        port: int | None = None,
    ) -> None:
        super().__init__(port)
        self.paths = paths
        self.file = file
        self.fps = fps
        self.size = size

    def command(self) -> list[str]:
        command = [SYSTEM_PYTHON, str(CAMERA_SCRIPT), "--port", str(self.port)]
        command += ["--fps", str(self.fps), "--width", str(self.size[0])]
        command += ["--height", str(self.size[1])]
        for path in self.paths:
            command += ["--path", path]
        if self.file is not None:
            command += ["--file", str(self.file)]
        return command

    def url(self, path: str | None = None) -> str:
        return f"rtsp://127.0.0.1:{self.port}{path or self.paths[0]}"


class WebhookReceiver:
    """Keeps the body of every JSON POST in `received`, in arrival order (204), and its headers
    and raw bytes in `requests`; anything but JSON is refused (415), as a strict receiver would."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        received, requests = self.received, self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                is_json = self.headers["Content-Type"] == "application/json"
                if is_json:
                    requests.append((dict(self.headers), body))
                    received.append(json.loads(body))
                self.send_response(204 if is_json else 415)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass  # quiet: a test reads `received`, not the access log

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def __enter__(self) -> "WebhookReceiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def lumos_process(role: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`lumos ROLE` as its own process, its output going to the file `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", role],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_processes(processes: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM all at once, then wait for each (killed after `grace` seconds)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""/healthz, /readyz and /metrics of the worker processes (`lumos ingest`, `lumos infer`,
`lumos trainer`) on LUMOS_METRICS_PORT.

The API serves these through FastAPI; the workers have no web app, and prometheus_client's own
server answers 200 on every path, so a Kubernetes or Docker probe of /readyz would pass whatever
state the worker was in. This small threaded server answers those three paths only (404 for any
other); each probe asks the worker itself, through callables that return checks of the same shape
as the API's `/readyz` (`{name: {"ok": bool, ...details}}`), and answers 503 with the failed
checks' reasons unless every check is ok.
"""

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Coroutine
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)

Checks = dict[str, dict[str, Any]]
Probe = Callable[[], Checks]

LOOP_ANSWER_S = 5.0
"""An event loop that takes longer than this to run a probe's check counts as stuck."""


class ProbeServer:
    """Serves `live` at /healthz, `ready` at /readyz and this process's metrics at /metrics, from
    a daemon thread, until `close()`."""

    def __init__(self, host: str, port: int, live: Probe, ready: Probe) -> None:
        probes = {"/healthz": live, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/metrics":
                    self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                elif path in probes:
                    status, body = _answer(probes[path])
                    self._send(status, json.dumps(body).encode(), "application/json")
                else:
                    self._send(404, b'{"status": "not_found"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes come every few seconds: no access log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, name="probes", daemon=True)
        thread.start()
        log.info("probes and metrics on http://%s:%d", host, self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _answer(probe: Probe) -> tuple[int, dict[str, Any]]:
    """(status, body) of one probe: 200 when every check is ok, else 503 naming what failed."""
    try:
        checks = probe()
    except Exception as exc:  # the probe itself failed (e.g. the loop did not answer): not ok
        checks = {"probe": {"ok": False, "error": str(exc) or type(exc).__name__}}
    failed = {name: check for name, check in checks.items() if not check["ok"]}
    if not failed:
        return 200, {"status": "ok", "checks": checks}
    reason = "; ".join(
        f"{name}: {check.get('error', 'not ready')}" for name, check in failed.items()
    )
    return 503, {"status": "not_ready", "reason": reason, "checks": checks}


def on_loop(
    loop: asyncio.AbstractEventLoop, check: Callable[[], Coroutine[Any, Any, Checks]]
) -> Probe:
    """A probe that runs `check()` on `loop` and waits for it: it answers only while the loop
    does, as the API's probes do, which its event loop serves."""

    def probe() -> Checks:
        future = asyncio.run_coroutine_threadsafe(check(), loop)
        try:
            return future.result(LOOP_ANSWER_S)
        except TimeoutError:  # concurrent.futures' is the builtin since Python 3.11
            future.cancel()
            raise TimeoutError(
                f"the event loop did not answer within {LOOP_ANSWER_S:g} s"
            ) from None

    return probe

"""The image's HEALTHCHECK: GET /healthz of the Lumos process that is PID 1 of this container.

One image runs every role, and each role listens on its own setting: `serve` and `api` on
`--port` or LUMOS_PORT, the workers on LUMOS_METRICS_PORT. Role and port are read from PID 1's
command line, so the check stays right whatever command `docker run` or compose gave.
"""

import os
import sys
import urllib.request
from pathlib import Path

HTTP_ROLES = {"serve", "api"}


def health_port() -> int:
    argv = Path("/proc/1/cmdline").read_bytes().decode().split("\0")
    if HTTP_ROLES & set(argv):
        for i, arg in enumerate(argv):
            if arg.startswith("--port="):
                return int(arg.removeprefix("--port="))
            if arg == "--port":
                return int(argv[i + 1])
        return int(os.environ.get("LUMOS_PORT", "8000"))
    return int(os.environ.get("LUMOS_METRICS_PORT", "0"))


def main() -> int:
    port = health_port()
    if port == 0:
        return 0  # a worker without an HTTP port has nothing to probe; `docker ps` shows it running
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as response:
        return 0 if response.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())

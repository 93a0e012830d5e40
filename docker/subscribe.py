"""Subscribe a camera through the API, once: what docker-compose.yml's demo-subscription runs.

Idempotent (the camera has a fixed id, and 409 means it is already subscribed), so a restart of
the stack never adds a second copy. Any other answer exits non-zero and compose retries it.
Usage: subscribe.py API_URL CAMERA_URL [CAMERA_ID]; LUMOS_API_KEYS' first key authenticates.
"""

import json
import os
import sys
import urllib.error
import urllib.request


def main(api: str, camera: str, camera_id: str = "demo") -> int:
    body = json.dumps({"id": camera_id, "url": camera, "name": "Demo camera"}).encode()
    request = urllib.request.Request(f"{api.rstrip('/')}/v1/streams", body, method="POST")
    request.add_header("Content-Type", "application/json")
    key = os.environ.get("LUMOS_API_KEYS", "").split(",")[0].strip()
    if key:
        request.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            print(f"subscribed {camera_id}: HTTP {response.status}")
    except urllib.error.HTTPError as error:
        if error.code != 409:
            print(f"subscribing {camera_id} failed: HTTP {error.code} {error.read()[:500]!r}")
            return 1
        print(f"{camera_id} was already subscribed")
    except urllib.error.URLError as error:
        print(f"subscribing {camera_id} failed: {api} does not answer ({error.reason})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

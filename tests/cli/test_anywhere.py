"""`lumos` as a new user runs it: from a directory outside the checkout, with the bundled demo
model; directories and URLs as inputs, failures reported in the JSON, settings mistakes named."""

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.servers import ROOT

DEMO_VERSION = json.loads((ROOT / "artifacts" / "demo" / "manifest.json").read_text())["version"]


def lumos(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`lumos ARGS` in `cwd`, with no LUMOS_* variable but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LUMOS_")}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "--log-level", "WARNING", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A plain HTTP server of `tmp_path`."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_classify_from_outside_the_checkout(tmp_path, make_video, served):
    assert ROOT not in tmp_path.parents
    make_video(tmp_path / "clip.mp4", frames=36)
    make_video(tmp_path / "videos" / "a.mp4", frames=24)
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"not a video" * 100)
    (tmp_path / "videos" / "notes.txt").write_text("not a video, not an input")
    inputs = ["clip.mp4", "videos", f"{served}/clip.mp4", "missing.mp4"]
    answer = lumos(tmp_path, "classify", *inputs, "--json", LUMOS_BACKEND="fp32")
    assert answer.returncode == 1, answer.stderr  # some inputs failed
    files = {entry["file"]: entry for entry in json.loads(answer.stdout)}
    assert list(files) == [
        "clip.mp4",
        "videos/a.mp4",
        "videos/broken.mp4",
        f"{served}/clip.mp4",
        "missing.mp4",
    ]
    for name in ("clip.mp4", "videos/a.mp4", f"{served}/clip.mp4"):
        assert files[name]["model_version"] == DEMO_VERSION and files[name]["clips"], name
    assert files[f"{served}/clip.mp4"]["clips"] == files["clip.mp4"]["clips"]
    assert "not a readable media container" in files["videos/broken.mp4"]["error"]
    assert files["missing.mp4"]["error"] == "no such file"


def test_settings_mistakes_are_named_in_one_line(tmp_path):
    bad = lumos(tmp_path, "config", LUMOS_PORT="eighty", LUMOS_PROT="80")
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert lines == [
        "lumos: warning: LUMOS_PROT is not a Lumos setting and is ignored "
        "(did you mean LUMOS_PORT?)",
        "lumos: LUMOS_PORT='eighty': Input should be a valid integer, unable to parse string as "
        "an integer",
    ]
    version = lumos(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("lumos ")

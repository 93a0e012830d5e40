"""`lumos classify` and `lumos watch` as people run them: in-process with the bundled model, and
against a real `lumos serve` with API keys on (a real RTSP camera for `watch`)."""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from bench.servers import ROOT
from tests.api.conftest import API_KEY, Service, service_env, start_service, upload
from tests.conftest import ARID_LABELS

PREDICTION = re.compile(rf"^\d\d:\d\d:\d\d  ({'|'.join(ARID_LABELS)}) \d\.\d{{3}}")


@pytest.fixture(scope="module")
def service(tiny_artifact, tmp_path_factory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("cli")
    # Quick leases and reconnects, and a short staleness budget so an outage shows in seconds.
    env = service_env(
        root,
        tiny_artifact,
        api_keys=API_KEY,
        lease_ms="1000",
        staleness_s="2",
        stall_timeout_s="3",
        reconnect_backoff="0.5",
    )
    service = start_service("serve", env, root / "serve.log")
    yield service
    service.stop()


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "service.cli", "--log-level", "WARNING", *map(str, args)]


def lumos(service: Service, *args: object) -> subprocess.CompletedProcess[str]:
    """`lumos ARGS` with the test service's environment (its model for in-process runs)."""
    return subprocess.run(
        command(*args), env=service.env, cwd=ROOT, capture_output=True, text=True, timeout=180
    )


def remote(service: Service) -> list[str]:
    return ["--server", service.url, "--api-key", API_KEY]


def test_classify_in_process_and_through_the_server_agree(service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=36)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).bytes(4096))
    missing = tmp_path / "missing.mp4"
    args = ["classify", broken, video, missing, "--json", "--top", "11"]
    local, served = lumos(service, *args), lumos(service, *args, *remote(service))
    for result in (local, served):  # both refuse the files they cannot read, and say why
        assert result.returncode == 1, result.stderr
        errors = result.stderr.strip().splitlines()
        assert errors[0].startswith(f"lumos classify: {broken}: not a readable media container")
        assert errors[1] == f"lumos classify: {missing}: no such file"
    answers = []
    for result in (local, served):  # the failures are in the array too, in order
        failed_broken, answer, failed_missing = json.loads(result.stdout)
        assert failed_broken["file"] == str(broken) and "not a readable" in failed_broken["error"]
        assert failed_missing == {"file": str(missing), "error": "no such file"}
        answers.append(answer)
    mine, theirs = answers
    assert mine["model_version"] == theirs["model_version"] == "tiny-1"
    assert len(mine["clips"]) == len(theirs["clips"]) == 4  # 36 frames in clips of 8
    for a, b in zip(mine["clips"], theirs["clips"], strict=True):
        assert [a[key] for key in ("seq", "start", "end", "luma")] == [
            b[key] for key in ("seq", "start", "end", "luma")
        ]
        assert [p["label"] for p in a["top"]] == [p["label"] for p in b["top"]]
        assert {p["label"] for p in a["top"]} == set(ARID_LABELS)
        assert [p["score"] for p in a["top"]] == pytest.approx(
            [p["score"] for p in b["top"]], abs=1e-5
        )
    assert [c["start"] for c in mine["clips"]] == pytest.approx(
        [0, 8 / 12, 16 / 12, 24 / 12], abs=1e-3
    )
    video_top = [p["label"] for p in mine["video"]["top"]]
    assert video_top == [p["label"] for p in theirs["video"]["top"]]

    # The unversioned upload route gives the server's answer too, clip by clip.
    with httpx.Client(base_url=service.url, headers={"X-API-Key": API_KEY}, timeout=60) as client:
        versioned, plain = upload(client, video).json(), upload(client, video, "/classify").json()
    for clips in (versioned["clips"], plain["clips"]):
        assert [c["seq"] for c in clips] == [c["seq"] for c in theirs["clips"]]
        for clip, printed in zip(clips, theirs["clips"], strict=True):
            printed_scores = {p["label"]: p["score"] for p in printed["top"]}
            assert clip["scores"] == pytest.approx(printed_scores, abs=1e-5)
    assert plain["video"]["scores"] == pytest.approx(versioned["video"]["scores"], abs=1e-5)


def test_classify_prints_a_table_per_file(service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=36)
    with httpx.Client(base_url=service.url, headers={"X-API-Key": API_KEY}, timeout=60) as client:
        answer = upload(client, video).json()
    table = lumos(service, "classify", video, *remote(service))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == f"{video}: model tiny-1, 4 clips"
    rows = lines[2:]
    assert [row.split()[0] for row in rows] == ["0.0-0.6", "0.7-1.2", "1.3-1.9", "2.0-2.6", "whole"]
    for row, clip in zip(rows[:-1], answer["clips"], strict=True):
        top = clip["top"][:3]  # --top defaults to 3, the server's top_k is 5
        cells = row.split()
        assert cells[1:7:2] == [p["label"] for p in top]
        assert [float(x) for x in cells[2:8:2]] == pytest.approx(
            [p["score"] for p in top], abs=2e-3
        )
        assert row.split()[-1] == f"{clip['illumination']['luma_mean']:.1f}"
    assert rows[-1].split()[2] == answer["video"]["top"][0]["label"]


def test_classify_without_the_key_says_why(service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=16)
    result = lumos(service, "classify", video, "--server", service.url)
    assert result.returncode == 1
    assert f"{video}: send an API key" in result.stderr and "HTTP 401" in result.stderr


class Lines:
    """A child's stdout read in a thread, so a test can wait for a line with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(process.stdout,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} in {timeout} s; seen: {self.seen}")


def watch(service: Service, *args: object) -> subprocess.Popen[str]:
    env = {**service.env, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command("watch", *args),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Ctrl-C, as a person ends it: the exit status and what it said on stderr."""
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    return code, process.stderr.read()


def test_watch_follows_a_camera_through_a_reconnect(service, rtsp_camera):
    camera = rtsp_camera(fps=12)
    process = watch(service, camera.url(), *remote(service))
    try:
        lines = Lines(process)
        lines.wait_for(r"^-- live", 60)
        lines.wait_for(PREDICTION, 30)
        camera.kill()
        lines.wait_for(r"^-- (failing|stalled)", 40)
        camera.start()
        lines.wait_for(PREDICTION, 60)
        lines.wait_for(r"^-- live", 30)
        with httpx.Client(base_url=service.url) as client:
            assert len(client.get("/v1/streams").json()) == 1
    finally:
        code, errors = stop(process)
    assert code == 0, errors
    assert "lumos watch: stopped" in errors
    with httpx.Client(base_url=service.url) as client:
        assert client.get("/v1/streams").json() == []  # it unsubscribed on the way out


def test_watch_plays_a_file_in_process(service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=24)
    process = watch(service, video)
    try:
        lines = Lines(process)
        for _ in range(3):
            lines.wait_for(PREDICTION, 90)
    finally:
        code, errors = stop(process)
    assert code == 0, errors
    assert "camera watch: the stream ended" in errors  # each end of the file is a reconnect
    assert os.path.getsize(video) > 0

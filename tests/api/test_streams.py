"""Cameras through a real `lumos serve` and a real GStreamer RTSP camera: subscribe, status,
predictions by polling and by Server-Sent Events, unsubscribe; bad sources and bad
options refused."""

import json
import time
from itertools import pairwise

import httpx
import pytest

from bench.servers import WebhookReceiver, wait_for
from tests.api.conftest import Service, service_env
from tests.conftest import ARID_LABELS


@pytest.fixture(scope="module")
def service(service_factory, tiny_artifact, tmp_path_factory) -> Service:
    env = service_env(tmp_path_factory.mktemp("streams"), tiny_artifact, lease_ms="1000")
    return service_factory("serve", env)


def read_events(client: httpx.Client, path: str, count: int, timeout: float) -> list[dict]:
    """The first `count` SSE events of `path`, parsed (`event`, `id`, JSON `data`)."""
    events: list[dict] = []
    current: dict = {}
    deadline = time.monotonic() + timeout
    with client.stream("GET", path, timeout=timeout) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith(":"):
                continue  # keep-alive comment
            if not line:
                if "data" in current:
                    events.append(current)
                    if len(events) == count:
                        return events
                current = {}
            else:
                field, _, value = line.partition(": ")
                current[field] = json.loads(value) if field == "data" else value
            assert time.monotonic() < deadline, "no events in time"
    return events


def predictions(client: httpx.Client, since: float = 0) -> list[dict]:
    return client.get("/v1/streams/yard/predictions", params={"since": since}).json()["results"]


def test_camera_delivers_events_and_predictions(service, rtsp_camera):
    camera = rtsp_camera(paths=("/cam",))
    secret_url = camera.url().replace("rtsp://", "rtsp://viewer:s3cret@") + "?token=abc"
    with service.client() as client:
        created = client.post("/v1/streams", json={"url": secret_url, "name": "yard", "id": "yard"})
        assert created.status_code == 201, created.text
        assert "s3cret" not in created.text and "abc" not in created.text
        assert created.json()["url"].startswith("rtsp://***@127.0.0.1")
        assert created.json()["state"] == "connecting"
        assert created.json()["warnings"] == []  # the model's own rate
        assert client.post("/v1/streams", json={"url": secret_url, "id": "yard"}).status_code == 409

        events = read_events(client, "/v1/streams/yard/events", count=2, timeout=60)
        assert [e["event"] for e in events] == ["prediction", "prediction"]
        first, second = (e["data"] for e in events)
        assert first["stream"] == "yard" and second["seq"] > first["seq"]
        assert first["top"][0]["label"] in ARID_LABELS
        assert events[0]["id"] == first["clip_id"]

        def several_clips() -> dict | None:
            status = client.get("/v1/streams/yard").json()
            return status if len(predictions(client)) >= 6 else None

        status = wait_for(several_clips, 30, "a few clips of the camera")
        assert status["state"] == "live" and status["worker"]
        assert status["illumination"]["luma_mean"] < 60
        assert 5 < status["fps"] <= 15  # the camera's 15 fps, sampled towards the model's 12
        assert "s3cret" not in client.get("/v1/streams").text

        polled = client.get("/v1/streams/yard/predictions", params={"since": 0}).json()
        assert len(polled["results"]) >= 2
        assert polled["summary"]["top"][0]["label"] in ARID_LABELS
        newer = client.get(
            "/v1/streams/yard/predictions", params={"since": polled["next_since"]}
        ).json()
        assert all(r["start"] > polled["next_since"] for r in newer["results"])

        assert client.delete("/v1/streams/yard").status_code == 204
        assert client.get("/v1/streams/yard").json()["reason"] == "unknown_stream"
        assert client.delete("/v1/streams/yard").status_code == 404
        assert client.get("/v1/streams/yard/events").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/etc/passwd",
        "file:///etc/passwd",
        "udp://127.0.0.1:5000",
        "concat:/etc/passwd",
        "rtsp:///no-host",
        "ftp://127.0.0.1/video.mp4",
    ],
)
def test_unsupported_sources_are_refused(service, url):
    with service.client() as client:
        answer = client.post("/v1/streams", json={"url": url})
        assert answer.status_code == 422, answer.text
        assert answer.json()["reason"] == "invalid_request"
        assert client.get("/v1/streams").json() == []


def test_camera_with_own_sampling_and_stride_and_a_webhook_posts_no_predictions(
    service, rtsp_camera
):
    camera = rtsp_camera(paths=("/dock",))
    with WebhookReceiver() as receiver, service.client() as client:
        hook = receiver.url.replace("http://", "http://hook:s3cret@") + "?token=abc"
        options = {"sampling": 6, "stride": 4, "webhook": hook}
        created = client.post("/v1/streams", json={"url": camera.url(), "id": "dock", **options})
        assert created.status_code == 201, created.text
        try:
            shown = client.get("/v1/streams/dock").json()
            assert (shown["sampling"], shown["stride"]) == (6, 4)
            assert shown["warnings"] == [
                "sampling 6 fps is not the active model's 12 fps: "
                "it sees motion at another pace than it learnt"
            ]
            assert shown["webhook"] == receiver.url.replace("http://", "http://***@") + "?token=***"
            assert "s3cret" not in client.get("/v1/streams").text

            def results() -> list[dict]:
                return client.get("/v1/streams/dock/predictions").json()["results"]

            stored = wait_for(lambda: len(found := results()) >= 6 and found, 60, "6 results")
            assert stored[0]["top"][0]["label"] in ARID_LABELS
            # A webhook gets events, never predictions; this camera has no rules, so no events.
            assert receiver.received == []
            # Stride 4 of 8-frame clips: each clip starts halfway through the one before.
            ordered = sorted(stored, key=lambda r: r["seq"])
            assert all(
                b["start"] < a["end"] for a, b in pairwise(ordered) if b["seq"] == a["seq"] + 1
            )
            fps = wait_for(lambda: client.get("/v1/streams/dock").json()["fps"], 30, "the fps")
            assert 3 < fps <= 7.5  # the camera's 6, not the model's 12
        finally:
            assert client.delete("/v1/streams/dock").status_code == 204


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sampling", 0),
        ("sampling", 61),
        ("sampling", "fast"),
        ("stride", 0),
        ("stride", 1001),
        ("stride", 2.5),
        ("webhook", "ftp://127.0.0.1/hook"),
        ("webhook", "file:///etc/passwd"),
        ("webhook", "http:///no-host"),
        ("webhook", "http://127.0.0.1/" + "a" * 2048),
    ],
)
def test_bad_camera_options_are_refused(service, field, value):
    with service.client() as client:
        answer = client.post("/v1/streams", json={"url": "rtsp://127.0.0.1/cam", field: value})
        assert answer.status_code == 422, answer.text
        assert answer.json()["reason"] == "invalid_request"
        assert answer.json()["errors"][0]["loc"] == ["body", field]
        assert client.get("/v1/streams").json() == []

"""Uploads through a real `lumos serve`: answers, every class of bad input, and API keys."""

import json
import time
from pathlib import Path

import av
import numpy as np
import pytest

from bench.servers import wait_for
from tests.api.conftest import API_KEY, Service, service_env, upload
from tests.conftest import ARID_LABELS

MAX_BYTES = 300_000


@pytest.fixture(scope="module")
def service(service_factory, tiny_artifact, tmp_path_factory) -> Service:
    env = service_env(
        tmp_path_factory.mktemp("uploads"),
        tiny_artifact,
        api_keys=f"other-key,{API_KEY}",
        upload_max_bytes=str(MAX_BYTES),
        upload_max_s="20",
        upload_sync_max_s="10",
    )
    return service_factory("serve", env)


def leftover_uploads(service: Service) -> list[Path]:
    return list(Path(service.env["TMPDIR"]).glob("lumos-upload-*"))


def write_audio(path: Path) -> Path:
    """One second of a 440 Hz tone in Matroska: a container uploads may use, without video
    (WAV is not a video container: it is refused as such)."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("pcm_s16le", rate=16000)
        tone = (np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(tone[None, :], format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def test_upload_answers_with_clip_and_video_labels(service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=36, fps=12.0)
    with service.client() as client:
        answer = upload(client, video)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "done"
    assert body["model_version"] == "tiny-1"
    assert body["clip_count"] == len(body["clips"]) >= 4  # 36 frames in 8-frame clips
    assert [clip["seq"] for clip in body["clips"]] == sorted(c["seq"] for c in body["clips"])
    top = body["video"]["top"]
    assert top and all(p["label"] in ARID_LABELS for p in top)
    assert [p["score"] for p in top] == sorted((p["score"] for p in top), reverse=True)
    assert set(body["video"]["scores"]) == set(ARID_LABELS)
    for clip in body["clips"]:
        assert clip["top"][0]["label"] in ARID_LABELS
    # The timeline's runs of one label cover every clip, in order, each run one label.
    runs = body["segments"]
    assert [(r["first_seq"], r["last_seq"]) for r in runs][0][0] == 0
    assert sum(r["clips"] for r in runs) == len(body["clips"])
    for run in runs:
        labels = {
            c["top"][0]["label"] for c in body["clips"][run["first_seq"] : run["last_seq"] + 1]
        }
        assert labels == {run["label"]} and run["start"] < run["end"]
        assert clip["illumination"]["luma_mean"] < 40  # the clip is dark
    assert 0 < body["illumination"]["luma_mean"] < 40
    assert body["illumination"]["luma_min"] <= body["illumination"]["luma_max"]
    timings = body["timings"]
    assert timings["total"] >= timings["classify"] > 0 and timings["inference_mean"] > 0
    assert body["info"]["width"] == 64 and body["info"]["height"] == 48
    assert abs(body["info"]["duration"] - 3.0) < 0.2
    assert not leftover_uploads(service)


def test_unversioned_route_answers_the_same(service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=24)
    with service.client() as client:
        versioned, plain = upload(client, video).json(), upload(client, video, "/classify").json()
        paths = client.get("/openapi.json").json()["paths"]
        metrics = client.get("/metrics").text
    assert plain["video"]["scores"] == pytest.approx(versioned["video"]["scores"], abs=1e-4)
    assert plain["clip_count"] == versioned["clip_count"]
    assert "post" in paths["/classify"] and "post" in paths["/v1/classify"]
    schema = paths["/v1/classify"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert schema["schema"]["required"] == ["file"]
    for route in ("/classify", "/v1/classify"):  # counted apart, by route template
        assert f'lumos_requests_total{{code="200",route="{route}"}}' in metrics


def test_async_upload_is_polled_to_its_answer(service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=24)
    long_video = make_video(tmp_path / "long.mp4", frames=12 * 12)  # 12 s > the 10 s sync limit
    with service.client() as client:
        asked = upload(client, video, **{"async": "true"})
        long = upload(client, long_video)
        for answer in (asked, long):
            assert answer.status_code == 202, answer.text
            assert answer.headers["location"] == answer.json()["poll"]

            def done(answer=answer):
                polled = client.get(answer.json()["poll"])
                return polled.json() if polled.status_code == 200 else None

            result = wait_for(done, 60, "the async answer", every=0.2)
            assert result["status"] == "done" and result["clip_count"] >= 1
        assert client.get("/v1/classify/does-not-exist").json()["reason"] == "unknown_task"
    assert result["info"]["duration"] == pytest.approx(12.0, abs=0.2)
    wait_for(lambda: not leftover_uploads(service), 10, "temporary files to be deleted")


def _multipart(field: str, data: bytes) -> tuple[bytes, str]:
    boundary = "lumos-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="v.mp4"\r\n'
        f"Content-Type: video/mp4\r\n\r\n"
    ).encode()
    return (
        body + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def test_each_invalid_upload_gets_its_reason(service, make_video, tmp_path):
    good = make_video(tmp_path / "good.mp4", frames=24).read_bytes()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(7).bytes(5000))
    (tmp_path / "truncated.mp4").write_bytes(good[: len(good) // 2])
    # A video stream whose codec FFmpeg does not know: PyAV gives it no codec context.
    (tmp_path / "forged_codec.mp4").write_bytes(good.replace(b"avc1", b"zzzz"))
    (tmp_path / "big.mp4").write_bytes(np.random.default_rng(8).bytes(MAX_BYTES + 50_000))
    cases = {
        "empty.mp4": (400, "empty_file"),
        "random.mp4": (415, "invalid_container"),
        "truncated.mp4": (415, "invalid_container"),
        "forged_codec.mp4": (422, "undecodable"),
        "audio.mka": (415, "no_video_stream"),
        "one_frame.mp4": (422, "too_few_frames"),
        "long.mp4": (422, "too_long"),
        "big.mp4": (413, "too_large"),
    }
    write_audio(tmp_path / "audio.mka")
    make_video(tmp_path / "one_frame.mp4", frames=1)
    make_video(tmp_path / "long.mp4", frames=25 * 12)  # 25 s > the 20 s limit
    with service.client() as client:
        for name, (status, reason) in cases.items():
            answer = upload(client, tmp_path / name)
            assert answer.status_code == status, (name, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["reason"] == reason, name
        wrong_field = client.post("/v1/classify", files={"video": ("v.mp4", good, "video/mp4")})
        assert wrong_field.status_code == 422 and wrong_field.json()["reason"] == "missing_file"
        raw = client.post("/v1/classify", content=good, headers={"content-type": "video/mp4"})
        assert raw.status_code == 415 and raw.json()["reason"] == "not_multipart"
        # Without a Content-Length (chunked), the limit is enforced while the body streams in.
        body, content_type = _multipart("file", bytes(MAX_BYTES + 50_000))
        chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
        chunked = client.post(
            "/v1/classify", content=chunks, headers={"content-type": content_type}
        )
        assert chunked.status_code == 413 and chunked.json()["reason"] == "too_large"
        # The service kept serving through all of it.
        assert client.get("/healthz").status_code == 200
        assert upload(client, tmp_path / "good.mp4").status_code == 200
    wait_for(lambda: not leftover_uploads(service), 10, "temporary files to be deleted")


def test_mutating_calls_need_an_api_key(service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=24)
    with service.client(key=None) as anonymous, service.client("wrong-key") as wrong:
        for client, reason in ((anonymous, "missing_api_key"), (wrong, "invalid_api_key")):
            for answer in (
                upload(client, video),
                client.post("/v1/streams", json={"url": "rtsp://127.0.0.1:1/x"}),
                client.delete("/v1/streams/any"),
                client.post("/v1/jobs", json={"stage": "pipeline", "dataset": "synth"}),
                client.delete("/v1/jobs/any"),
                client.post("/v1/models/tiny-1/activate"),
            ):
                assert answer.status_code == 401, answer.text
                assert answer.json()["reason"] == reason
        # Reads stay open unless LUMOS_PROTECT_READS is set; probes are always open.
        assert anonymous.get("/v1/models").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
        ready = anonymous.get("/readyz").json()
    assert ready["auth"] == "api_key" and ready["warnings"] == []
    with service.client(key=None) as client:
        client.headers["Authorization"] = f"Bearer {API_KEY}"
        assert upload(client, video).status_code == 200


def test_service_stays_up_under_repeated_bad_uploads(service, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000))
    started = time.monotonic()
    with service.client() as client:
        codes = [upload(client, junk).status_code for _ in range(20)]
        assert client.get("/readyz").status_code == 200
    assert set(codes) == {415}
    assert time.monotonic() - started < 30
    assert service.process.poll() is None


def test_docs_are_served_and_bodies_over_their_limit_get_a_problem(service):
    huge = json.dumps(
        {
            "stage": "pipeline",
            "dataset": "synth",
            "url": "rtsp://x/",
            "overrides": {"x": "y" * 3_000_000},
        }
    ).encode()
    body, multipart = _multipart("file", bytes(MAX_BYTES + 2_000_000))
    with service.client() as client:
        assert "swagger" in client.get("/docs").text.lower()
        answers = []
        for route in ("/v1/jobs", "/v1/streams"):
            # JSON bodies stop at 1 MiB: declared (Content-Length) or counted as they stream in.
            headers = {"content-type": "application/json"}
            answers.append((client.post(route, content=huge, headers=headers), 1024 * 1024))
            chunks = (huge[i : i + 65536] for i in range(0, len(huge), 65536))
            answers.append((client.post(route, content=chunks, headers=headers), 1024 * 1024))
        # An upload declared past the uploads' outer bound (the limit plus 1 MiB).
        declared = client.post("/v1/classify", content=body, headers={"content-type": multipart})
        answers.append((declared, MAX_BYTES + 1024 * 1024))
        for answer, limit in answers:
            assert answer.status_code == 413, answer.text[:200]
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["reason"] == "too_large"
            assert answer.json()["limit_bytes"] == limit
        unknown = client.post("/v1/streams", json={"url": "rtsp://127.0.0.1/x", "fps": 5})
        assert unknown.status_code == 422 and unknown.json()["reason"] == "invalid_request"

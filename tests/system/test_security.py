"""Security of the running deployment: API keys on every mutating endpoint, data sets and camera
sources confined, credentials never shown, artifacts never unpickled, uploads kept in the
temporary directory, request bodies and headers bounded.

Covered elsewhere and not repeated: each mutating endpoint's 401 on `lumos serve`
(tests/api/test_uploads.py), the first data set escapes (tests/api/test_jobs.py), the first camera
schemes and a redacted URL in the API (tests/api/test_streams.py), in ingest logs
(tests/service/test_live.py) and in metric labels (tests/api/test_distributed.py), and JSON
bodies over 1 MB (tests/api/test_uploads.py).
"""

import http.server
import json
import os
import pickle
import shutil
import socket
import threading
import time
import timeit
import uuid
from pathlib import Path

import pytest

from bench.servers import ROOT, free_port, wait_for
from service.api.deps import key_matches
from tests.api.conftest import API_KEY, upload
from tests.conftest import dark_frames
from tests.system.deployment import CAMERAS, System
from training.video import write_video

MUTATING = ("post", "put", "patch", "delete")


def test_every_mutating_endpoint_refuses_a_missing_or_wrong_key(system, record):
    with system.client(key=None) as anonymous:
        paths = anonymous.get("/openapi.json").json()["paths"]
        endpoints = [
            (method.upper(), path.replace("{", "").replace("}", ""))
            for path, methods in paths.items()
            for method in methods
            if method in MUTATING
        ]
        attempts = {
            "no key": ({}, "missing_api_key"),
            "key in the query string": ({"params": {"api_key": API_KEY}}, "missing_api_key"),
            "wrong X-API-Key": ({"headers": {"X-API-Key": "wrong-key"}}, "invalid_api_key"),
            "wrong bearer": ({"headers": {"Authorization": "Bearer wrong"}}, "invalid_api_key"),
            "key with a suffix": ({"headers": {"X-API-Key": API_KEY + "x"}}, "invalid_api_key"),
            "key prefix": ({"headers": {"X-API-Key": API_KEY[:-1]}}, "invalid_api_key"),
        }
        refused = {
            (method, path, what): anonymous.request(method, path, **options)
            for method, path in endpoints
            for what, (options, _) in attempts.items()
        }
    wrong = {
        key: (answer.status_code, answer.text[:120])
        for key, answer in refused.items()
        if answer.status_code != 401 or answer.json()["reason"] != attempts[key[2]][1]
    }
    record(
        "Security: API keys on every mutating endpoint",
        f"{len(endpoints)} mutating endpoints from /openapi.json x {len(attempts)} kinds of "
        f"missing or wrong key ({', '.join(attempts)})",
        "every one 401 with missing_api_key or invalid_api_key",
        endpoints=len(endpoints),
        requests=len(refused),
        refused=len(refused) - len(wrong),
    )
    assert len(endpoints) >= 8 and not wrong, wrong


def test_key_comparison_takes_as_long_wherever_the_key_differs(record):
    """With 100 KB keys an early-exit comparison is half again as fast on a first-byte mismatch
    as on a last-byte one; a constant-time one takes as long either way."""
    key = "k" * 100_000
    keys = [key]
    first = "x" + key[1:]
    last = key[:-1] + "x"

    def best(given: str) -> float:
        return min(timeit.repeat(lambda: key_matches(given, keys), number=20, repeat=25)) / 20

    early, late, equal = best(first), best(last), best(key)
    ratio = late / early
    record(
        "Security: constant-time key comparison",
        "100 KB keys differing at the first byte, at the last byte, or not at all; best of 25 "
        "runs of 20 calls each (an early-exit comparison measures 1.5 here)",
        "the same time wherever the difference is (hmac.compare_digest)",
        first_byte_us=round(early * 1e6, 1),
        last_byte_us=round(late * 1e6, 1),
        equal_us=round(equal * 1e6, 1),
        ratio_last_to_first=round(ratio, 2),
    )
    assert key_matches(key, keys) and not key_matches(first, keys)
    assert 0.8 < ratio < 1.25


def test_data_sets_cannot_escape_the_data_root(system, record, tmp_path):
    data = Path(system.env["LUMOS_DATA_ROOT"])
    (data / "hop-2").symlink_to(tmp_path)
    (data / "hop-1").symlink_to(data / "hop-2")
    (data / "passwd").symlink_to("/etc/passwd")
    names = [
        "..",
        ".",
        "hop-1",
        "passwd",
        "../../etc",
        "sets/../..",
        "%2e%2e",
        "..%2f..%2fetc",
        "..\\..\\etc",
        "synth\x00",
        "~root",
        " synth",
        str(tmp_path),
        "file:///etc",
    ]
    with system.client() as client:
        answers = {
            name: client.post("/v1/jobs", json={"stage": "pipeline", "dataset": name})
            for name in names
        }
        jobs = client.get("/v1/jobs").json()
    reasons = {name: (a.status_code, a.json()["reason"]) for name, a in answers.items()}
    record(
        "Security: data sets confined to the data root",
        f"{len(names)} data set names: .., ., encoded and backslash traversals, a NUL byte, "
        "absolute paths, a symlink chain out of the root, a symlink to /etc/passwd",
        "each refused (invalid_dataset, dataset_outside_root or unknown_dataset); no job queued",
        names=len(names),
        refused=sum(400 <= status < 500 for status, _ in reasons.values()),
        jobs_created=len(jobs),
    )
    refusals = {"invalid_dataset", "dataset_outside_root", "unknown_dataset"}
    assert all(400 <= s < 500 and r in refusals for s, r in reasons.values()), reasons
    assert reasons["hop-1"][1] == reasons["passwd"][1] == "dataset_outside_root"
    assert jobs == []


class _Files(http.server.SimpleHTTPRequestHandler):
    """Serves one directory over HTTP on 127.0.0.1, remembering what was asked."""

    asked: list[str] = []

    def log_message(self, *args) -> None:
        type(self).asked.append(self.path)


@pytest.fixture
def web(tmp_path):
    """An HTTP server on 127.0.0.1 serving `tmp_path/www`: (base URL, the paths asked)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (_Files,), {"asked": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()), lambda *a: handler(*a, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", root, handler.asked
    server.shutdown()


def test_camera_sources_cannot_reach_local_files(system, record, web, tmp_path):
    base, www, asked = web
    local = tmp_path / "local.ts"
    write_video(local, dark_frames(120), 12.0)  # a real video: read, it would yield clips
    (www / "local.m3u8").write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:10.0,\nfile://{local}\n#EXT-X-ENDLIST\n"
    )
    (www / "local.ffconcat").write_text(f"ffconcat version 1.0\nfile {local}\n")
    refused = [
        "FILE:///etc/passwd",
        "File:/etc/passwd",
        "gopher://127.0.0.1/",
        "data:video/mp4;base64,AAAA",
        "subfile:,,start,0,end,100,,:/etc/passwd",
        "crypto:file:///etc/passwd",
        "async:file:/etc/passwd",
        "tcp://127.0.0.1:1",
        "unix:///tmp/socket",
        "rtmp://127.0.0.1/live",
        "hls+http://127.0.0.1/x.m3u8",
        " rtsp://127.0.0.1/x",
        "rtsp:/127.0.0.1/x",
        "http:///etc/passwd",
    ]
    indirect = {"hls-file": f"{base}/local.m3u8", "concat-file": f"{base}/local.ffconcat"}
    with system.client() as client:
        answers = {url: client.post("/v1/streams", json={"url": url}) for url in refused}
        for camera_id, url in indirect.items():
            assert client.post("/v1/streams", json={"id": camera_id, "url": url}).is_success
        wait_for(lambda: {"/local.m3u8", "/local.ffconcat"} <= set(asked), 60, "the playlists")
        time.sleep(8)  # read, the local file would yield a clip every 0.7 s
        clips = {c: len(System.predictions(client, c)) for c in indirect}
        subscribed = {c["id"] for c in client.get("/v1/streams").json()}
        for camera_id in indirect:
            client.delete(f"/v1/streams/{camera_id}")
    record(
        "Security: camera URLs limited to network schemes",
        f"{len(refused)} URLs of other schemes or without a host (file, data, subfile, crypto, "
        "async, tcp, unix, rtmp, hls+...); an HTTP HLS playlist and an ffconcat script that "
        "name a local video file",
        "each direct URL refused (422); the indirect ones fetched but the local file never read "
        "(FFmpeg's protocol whitelist, concat safe mode): no clip",
        refused=sum(a.status_code == 422 for a in answers.values()),
        urls=len(refused),
        playlist_fetches=len(asked),
        clips_from_local_file=sum(clips.values()),
    )
    assert all(a.status_code == 422 for a in answers.values()), {
        u: a.status_code for u, a in answers.items()
    }
    assert subscribed - set(CAMERAS) == set(indirect)
    assert clips == dict.fromkeys(indirect, 0)


def _value(store, key: bytes) -> str:
    """A Redis record's content as text, whatever its type."""
    kind = store.type(key).decode()
    read = {
        "string": store.get,
        "hash": store.hgetall,
        "zset": lambda k: store.zrange(k, 0, -1),
        "list": lambda k: store.lrange(k, 0, -1),
        "set": store.smembers,
        "stream": lambda k: store.xrange(k),
    }
    return repr(read[kind](key)) if kind in read else ""


def test_credentials_are_shown_nowhere(system, record):
    password, token = "S3cr3tPass-" + uuid.uuid4().hex[:6], "T0ken-" + uuid.uuid4().hex[:6]
    # Secrets no name list knows: a query value under an ordinary name, and a webhook's
    # path-embedded token (Slack, Discord and Teams put theirs there).
    signature, hook_token = uuid.uuid4().hex[:16], "xK9" + uuid.uuid4().hex[:21]
    working = system.camera.url("/north").replace("rtsp://", f"rtsp://viewer:{password}@")
    failing = system.camera.url("/no-such-path").replace("rtsp://", f"rtsp://admin:{password}@")
    hook = f"http://127.0.0.1:{free_port()}/services/T0AB12CD3/B0AB12CD3/{hook_token}"
    secrets = (password, token, signature, hook_token, API_KEY)
    logs_before = system.log_sizes()
    with system.client() as client:
        shown = [
            client.post(
                "/v1/streams",
                json={"id": "secret-ok", "url": f"{working}?channel=1&sgn={signature}"},
            ).text,
            client.post(
                "/v1/streams",
                json={"id": "secret-bad", "url": f"{failing}?token={token}", "webhook": hook},
            ).text,
            client.post("/v1/streams", json={"url": f"ftp://u:{password}@h/x?token={token}"}).text,
        ]
        wait_for(lambda: System.predictions(client, "secret-ok"), 60, "the camera's clips")
        wait_for(lambda: "camera secret-bad" in system.logs(logs_before), 60, "a failed connection")
        for path in (
            "/v1/streams",
            "/v1/streams/secret-ok",
            "/v1/streams/secret-bad",
            "/v1/streams/secret-ok/predictions",
            "/v1/jobs",
            "/v1/models",
            "/readyz",
            "/metrics",
        ):
            shown.append(client.get(path).text)
        for camera_id in ("secret-ok", "secret-bad"):
            client.delete(f"/v1/streams/{camera_id}")
    store = system.store()
    # Every record but the subscriptions, which must hold the URL to connect.
    records = [_value(store, key) for key in store.scan_iter("lumos:*") if key != b"lumos:cameras"]
    places = {
        "API answers and /metrics": "\n".join(shown),
        "process logs": system.logs(logs_before),
        "Redis records (results, leases, jobs, tasks)": "\n".join(records),
    }
    leaks = {where: [s for s in secrets if s in text] for where, text in places.items()}
    record(
        "Security: credentials redacted everywhere",
        "cameras with a password (user info), a token and an unlisted signature parameter "
        "(query), a Slack-style webhook token (path), one working and one failing; a refused "
        "URL holding both; the API key in every request",
        "no password, token, signature, webhook token or API key in any API answer, /metrics, "
        "any process log or any Redis record besides the subscription",
        places_checked=len(places),
        redis_records=len(records),
        log_bytes=len(places["process logs"]),
        leaks=sum(map(len, leaks.values())),
    )
    assert not any(leaks.values()), leaks


def test_an_artifact_is_never_unpickled(system, record, tiny_artifact, tmp_path, clip_video):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = Path(system.env["LUMOS_MODEL_ROOT"]) / "evil-1"
    evil.mkdir()
    manifest = json.loads((tiny_artifact / "manifest.json").read_text()) | {"version": "evil-1"}
    (evil / "manifest.json").write_text(json.dumps(manifest))
    for name in ("model.safetensors", "model.pt", "pytorch_model.bin", "model.ckpt"):
        (evil / name).write_bytes(pickle.dumps(Payload()))
    log = system.root / "logs" / "infer.log"
    with system.client() as client:
        activated = client.post("/v1/models/evil-1/activate")
        try:
            wait_for(lambda: "cannot serve model evil-1" in log.read_text(), 60, "the refusal")
            served = upload(client, clip_video).json()
        finally:
            assert client.post("/v1/models/tiny-1/activate").status_code == 200
    shutil.rmtree(evil)
    record(
        "Security: artifacts never unpickled",
        "a model version whose weights (and model.pt, pytorch_model.bin, model.ckpt beside) are "
        "pickles that run a command when loaded; activated through the API",
        "the worker refuses it (not safetensors) and keeps serving the previous version; the "
        "command never runs",
        activate_status=activated.status_code,
        served_by=served["model_version"],
        command_ran=marker.exists(),
    )
    assert not marker.exists()
    assert served["model_version"] == "tiny-1"


def _uploads_open(pid: int) -> list[str]:
    """The upload files process `pid` has open, by path."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if "lumos-upload-" in target:
            found.append(target)
    return found


def test_uploads_are_written_only_to_the_temporary_directory(system, record, clip_video):
    tag = uuid.uuid4().hex[:8]
    names = [f"../../../../../../tmp/pwned-{tag}.mp4", f"/tmp/pwned-{tag}-abs.mp4"]
    names.append(f"..\\..\\pwned-{tag}-win.mp4")
    with system.client() as client:
        codes = []
        for name in names:
            with clip_video.open("rb") as f:
                answer = client.post("/v1/classify", files={"file": (name, f, "video/mp4")})
                codes.append(answer.status_code)

        # While an upload streams in, its file is open in the API process: where is it?
        tmpdir = Path(system.env["TMPDIR"])
        api = system.pids()["api"]
        seen: list[str] = []
        boundary = "slow-boundary"

        def slow_body():
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="../../slow-{tag}.mp4"\r\n\r\n'
            ).encode()
            data = clip_video.read_bytes()
            yield data[:4096]
            seen.extend(wait_for(lambda: _uploads_open(api), 30, "the upload's file to open"))
            yield data[4096:]
            yield f"\r\n--{boundary}--\r\n".encode()

        slow = client.post(
            "/v1/classify",
            content=slow_body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
    found = [
        p
        for where in (Path("/tmp"), ROOT, system.root)
        for p in where.rglob(f"*{tag}*")
        if where != Path("/tmp") or p.parent == where
    ]
    record(
        "Security: uploads written only to the temporary directory",
        "file names with ../ and absolute paths in the multipart part; an upload paused "
        "mid-body to see where its file is",
        "names ignored: every upload is a lumos-upload-* file in TMPDIR, deleted afterwards",
        uploads=len(names) + 1,
        files_outside=len(found),
        open_upload_files=seen,
    )
    assert codes == [200] * len(names) and slow.status_code == 200
    assert seen and all(Path(p).parent == tmpdir for p in seen), seen
    assert not found, found
    wait_for(lambda: not system.uploads_left(), 10, "temporary upload files to be deleted")


def _raw(port: int, request: bytes) -> bytes:
    """Send raw bytes, return what comes back before the server closes (or 10 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(request)
        except OSError:
            pass  # the server may close while we still send: that is an answer too
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer


def test_request_headers_and_bodies_are_bounded(system, record):
    port = int(system.env["LUMOS_PORT"])
    api = system.pids()["api"]
    big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8_000_000 + b"\r\n\r\n"
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))
    many_headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
    answers = {"8 MB header": _raw(port, big_header), "20000 headers": _raw(port, many_headers)}

    def chunks():
        yield b'{"url": "rtsp://127.0.0.1/x", "name": "'
        for _ in range(64):
            yield b"n" * 65536
        yield b'"}'

    with system.client() as client:
        body = client.post(
            "/v1/streams", content=chunks(), headers={"content-type": "application/json"}
        )
        alive = client.get("/healthz").status_code
    status = {what: answer.split(b"\r\n", 1)[0].decode() for what, answer in answers.items()}
    record(
        "Security: request headers and bodies bounded",
        "an 8 MB header line; 20000 headers; a 4 MB chunked JSON body (no Content-Length)",
        "headers refused past 16 KB by the HTTP server (h11), before the app; the body cut at "
        "the 1 MB JSON limit; the API process unharmed",
        **{what: s or "connection closed" for what, s in status.items()},
        chunked_json_body=body.status_code,
    )
    assert all(not s or s.split()[1].startswith("4") for s in status.values()), status
    assert body.status_code == 413
    assert alive == 200 and system.alive()["api"] and system.pids()["api"] == api


def test_ingest_checks_every_connection_against_the_url_policy(system, record):
    """A subscription that passed once may point elsewhere by its next connection (a DNS name
    rebound, or a record written to Redis behind the API's back): the ingest worker checks the
    URL again before every connection, and the denied address sees nothing."""
    denied = socket.create_server(("127.0.0.2", 0))
    denied.settimeout(0.2)
    port = denied.getsockname()[1]
    redis_port = int(system.redis.url.rsplit(":", 1)[1].split("/")[0])
    store = system.store()
    planted = {
        "rebound": f"rtsp://127.0.0.2:{port}/cam",
        "redis": f"rtsp://127.0.0.1:{redis_port}/cam",
        "smuggled": f"rtsp://127.0.0.1:{redis_port}/cam\r\nSET pwned 1\r\n",
    }
    logs_before = system.log_sizes()
    for camera_id, url in planted.items():
        store.hset("lumos:cameras", camera_id, json.dumps({"id": camera_id, "url": url}))
    try:
        wait_for(
            lambda: all(f"camera {c}: " in system.logs(logs_before) for c in planted),
            60,
            "every planted camera's refusal",
        )
        time.sleep(2)  # reconnect attempts come every 0.5 s
        accepted = 0
        try:
            while True:
                conn, _ = denied.accept()
                conn.close()
                accepted += 1
        except TimeoutError:
            pass
    finally:
        store.hdel("lumos:cameras", *planted)
        denied.close()
    refusals = [line for line in system.logs(logs_before).splitlines() if "may not connect" in line]
    record(
        "Security: every camera connection checked",
        "cameras written straight into Redis (as if their host had been rebound after the "
        "subscription): 127.0.0.2, the deployment's own Redis, Redis with a CR/LF command",
        "the ingest worker refuses each before connecting, at every retry; nothing reaches "
        "the denied listener; Redis never ran the smuggled command",
        refusals=len(refusals),
        denied_listener_connections=accepted,
        smuggled_command_ran=bool(store.exists("pwned")),
    )
    assert accepted == 0 and not store.exists("pwned")
    assert any("127.0.0.2" in line for line in refusals)
    assert "whitespace or control characters" in system.logs(logs_before)

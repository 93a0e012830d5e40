"""Security, second pass: the classes of attack an API-key holder (or, for reads, anyone) tried
against a running `lumos serve`, each refused.

One `lumos serve` with tight limits of its own (a small frame limit, short timeouts, small caps,
two API keys, trusted hosts, protected reads), so that the shared deployment's settings stay those
of the other system tests. A TCP listener on 127.0.0.2, an address the service may not reach,
records every connection: none may arrive. The same dark clip is classified before and after the
attacks, with the same answer.

The shared deployment's tests cover the rest (tests/system/test_security.py): the check again at
a camera's reconnect, Redis's own address, and redaction by structure.
"""

import io
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import httpx
import pytest

from bench.servers import free_port, wait_for
from tests.api.conftest import API_KEY, Service, service_env, start_service, upload
from tests.conftest import dark_frames
from tests.system.corpus import encode
from tests.system.deployment import metric, proc_stats
from training.video import write_video

OTHER_KEY = "test-key-other-9876543210"
FRAME_MAX = 320 * 240
TIMEOUT_S = 3
SETTINGS = dict(
    api_keys=f"{API_KEY},{OTHER_KEY}",
    protect_reads="true",
    trusted_hosts="127.0.0.1,localhost",
    frame_max_pixels=str(FRAME_MAX),
    upload_max_s="20",
    header_timeout_s=str(TIMEOUT_S),
    body_read_timeout_s=str(TIMEOUT_S),
    upload_max_in_flight="6",
    upload_max_in_flight_per_key="2",
    sse_max_connections="2",
    cameras_max="4",
)
PROBLEM = "application/problem+json"


@dataclass
class Listener:
    """A TCP server on 127.0.0.2 that accepts and remembers every connection."""

    port: int = 0
    connections: list[bytes] = field(default_factory=list)

    def serve(self) -> "Listener":
        sock = socket.create_server(("127.0.0.2", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock

        def accept() -> None:
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                conn.settimeout(1)
                try:
                    self.connections.append(conn.recv(4096) or b"(nothing)")
                except OSError:
                    self.connections.append(b"(nothing)")
                conn.close()

        threading.Thread(target=accept, daemon=True).start()
        return self

    def close(self) -> None:
        self._sock.close()


@pytest.fixture(scope="module")
def denied() -> Iterator[Listener]:
    listener = Listener().serve()
    yield listener
    listener.close()


@dataclass
class Guarded:
    service: Service
    baseline: dict

    def client(self, key: str | None = API_KEY, **kw) -> httpx.Client:
        return self.service.client(key, **kw)

    @property
    def port(self) -> int:
        return int(self.service.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.service.process.pid


def _classification(answer: httpx.Response) -> dict:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return {"top": body["video"]["top"][0]["label"], "clips": body["clip_count"]}


@pytest.fixture(scope="module")
def guarded(tiny_artifact: Path, tmp_path_factory, clip_video: Path) -> Iterator[Guarded]:
    root = tmp_path_factory.mktemp("guarded")
    env = service_env(root, tiny_artifact, **SETTINGS)
    service = start_service("serve", env, root / "serve.log")
    try:
        with service.client() as client:
            baseline = _classification(upload(client, clip_video))
        yield Guarded(service, baseline)
    finally:
        service.stop()


def _refused(answer: httpx.Response, status: int = 422) -> bool:
    return answer.status_code == status and answer.headers["content-type"] == PROBLEM


def test_camera_and_webhook_urls_reach_only_allowed_networks(guarded, denied, record):
    p = denied.port
    api = guarded.port
    spellings = {
        "dotted": f"rtsp://127.0.0.2:{p}/cam",
        "decimal": f"rtsp://2130706434:{p}/cam",
        "short": f"rtsp://127.2:{p}/cam",
        "hex": f"rtsp://0x7f.0.0.2:{p}/cam",
        "octal": f"rtsp://0177.0.0.02:{p}/cam",
        "ipv4-mapped": f"http://[::ffff:127.0.0.2]:{p}/cam",
        "ipv4-mapped hex": f"http://[::ffff:7f00:2]:{p}/cam",
        "ipv6 loopback": f"rtsp://[::1]:{p}/cam",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "metadata mapped": "http://[::ffff:169.254.169.254]/latest/",
        "ipv6 link-local": "http://[fe80::1]/",
        "this host": f"rtsp://0.0.0.0:{p}/cam",
        "zero": f"rtsp://0:{p}/cam",
        "own API": f"rtsp://127.0.0.1:{api}/cam",
        "own API by name": f"http://localhost:{api}/v1/models",
    }
    camera = f"rtsp://127.0.0.1:{free_port()}/cam"  # allowed; nothing listens
    control = {
        "CR LF in path": f"rtsp://127.0.0.1:{p}/cam\r\nSET pwned 1\r\n",
        "LF in path": f"rtsp://127.0.0.1:{p}/cam\nOPTIONS * RTSP/1.0",
        "CR LF in user info": f"rtsp://a\r\nb:c@127.0.0.1:{p}/cam",
        "tab": f"rtsp://127.0.0.1:{p}/ca\tm",
        "space": f"rtsp://127.0.0.1:{p}/ca m",
        "NUL": f"rtsp://127.0.0.1:{p}/cam\x00",
        "DEL": f"rtsp://127.0.0.1:{p}/cam\x7f",
        "line separator": f"rtsp://127.0.0.1:{p}/cam\u2028x",
        "CR LF in the query": f"http://127.0.0.1:{p}/?a=1\r\nHost: evil",
    }
    with guarded.client() as client:
        cameras = {
            what: client.post("/v1/streams", json={"url": url})
            for what, url in {**spellings, **control}.items()
        }
        webhooks = {
            what: client.post("/v1/streams", json={"url": camera, "webhook": url})
            for what, url in {**spellings, **control}.items()
            if url.startswith("http") or what in control
        }
        time.sleep(2)  # a worker that took one of them would be connecting by now
        subscribed = client.get("/v1/streams").json()
    answers = {("camera", w): a for w, a in cameras.items()}
    answers |= {("webhook", w): a for w, a in webhooks.items()}
    wrong = {k: (a.status_code, a.text[:100]) for k, a in answers.items() if not _refused(a)}
    record(
        "Security: camera and webhook URLs reach only allowed networks",
        f"{len(spellings)} denied destinations (127.0.0.2 in decimal, short, hex, octal, "
        "IPv4-mapped spellings, ::1, metadata, link-local, 0.0.0.0, the API itself) and "
        f"{len(control)} URLs with CR/LF, tab, space, NUL, DEL, U+2028; as camera and as webhook",
        "each refused 422 problem+json; nothing subscribed; no connection reached the denied "
        "listener",
        attempts=len(answers),
        refused=len(answers) - len(wrong),
        subscribed=len(subscribed),
        denied_listener_connections=len(denied.connections),
    )
    assert not wrong, wrong
    assert subscribed == [] and denied.connections == []


def _redirector(target: str) -> tuple[str, list[str], threading.Event]:
    """An HTTP server on 127.0.0.1 (allowed) that redirects every request to `target`."""
    import http.server

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _redirect(self) -> None:
            asked.append(self.path)
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _redirect

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), server.shutdown()), daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", asked, stop


def test_redirects_to_a_denied_host_are_not_followed(guarded, denied, record):
    base, asked, stop = _redirector(f"http://127.0.0.2:{denied.port}/stolen")
    try:
        with guarded.client() as client:
            http_camera = client.post("/v1/streams", json={"id": "hop", "url": f"{base}/cam"})
            assert http_camera.status_code == 201, http_camera.text
            wait_for(lambda: "/cam" in asked, 60, "the camera's GET at the redirector")
            time.sleep(2)
            client.delete("/v1/streams/hop")
    finally:
        stop.set()
    record(
        "Security: redirects to a denied host not followed",
        "an HTTP camera whose server answers 302 to the denied address (event webhooks: "
        "tests/service/test_events.py)",
        "the camera's GET reaches the redirector only (and is retried); the denied listener "
        "sees nothing",
        redirector_requests=len(asked),
        denied_listener_connections=len(denied.connections),
    )
    assert denied.connections == []


def _hls(target: str) -> bytes:
    return (
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:10.0,\n{target}\n#EXT-X-ENDLIST\n"
    ).encode()


def _scripts(secret: Path, beside: Path, denied: Listener) -> dict[str, bytes]:
    """Uploads that, opened by a script or playlist demuxer, would read `secret` (a real video
    outside every root) or `beside` (a real video in the directory uploads are written to, which
    FFmpeg's safe mode lets a relative path reach), or connect to the denied listener; each also
    naming a path that does not exist, whose answer must be the same."""
    sdp = (
        "v=0\no=- 0 0 IN IP4 127.0.0.2\ns=x\nc=IN IP4 127.0.0.2\nt=0 0\n"
        f"m=video {denied.port} RTP/AVP 96\na=rtpmap:96 H264/90000\n"
    )
    scripts = {}
    for name, path, near in (
        ("existing", secret, beside.name),
        ("missing", secret.with_name("no-such-video.mp4"), "no-such-video.ts"),
    ):
        scripts[f"hls absolute ({name})"] = _hls(str(path))
        scripts[f"hls file:// ({name})"] = _hls(f"file://{path}")
        scripts[f"hls relative ({name})"] = _hls(near)
        scripts[f"ffconcat absolute ({name})"] = f"ffconcat version 1.0\nfile '{path}'\n".encode()
        scripts[f"ffconcat relative ({name})"] = f"ffconcat version 1.0\nfile '{near}'\n".encode()
        scripts[f"ffconcat subfile ({name})"] = (
            f"ffconcat version 1.0\nfile 'subfile:,start,0,end,0,:{path}'\n".encode()
        )
    scripts["hls to the denied listener"] = _hls(f"http://127.0.0.2:{denied.port}/seg.ts")
    scripts["sdp to the denied listener"] = sdp.encode()
    return scripts


def test_uploads_that_are_scripts_are_refused_alike(guarded, denied, record, tmp_path):
    secret = tmp_path / "outside" / "secret.mp4"
    secret.parent.mkdir()
    write_video(secret, dark_frames(48), 12.0)  # a real video: read, it would be classified
    beside = Path(guarded.service.env["TMPDIR"]) / "victim.ts"  # say, another client's upload
    write_video(beside, dark_frames(48), 12.0)
    scripts = _scripts(secret, beside, denied)
    with guarded.client() as client:
        answers = {
            name: client.post("/v1/classify", files={"file": ("video.mp4", data, "video/mp4")})
            for name, data in scripts.items()
        }
    details = {n: a.json().get("detail") for n, a in answers.items()}
    pairs = [n for n in scripts if "(existing)" in n]
    differing = [n for n in pairs if details[n] != details[n.replace("existing", "missing")]]
    wrong = {n: (a.status_code, a.text[:120]) for n, a in answers.items() if not _refused(a, 415)}
    record(
        "Security: uploads that are playlists or scripts",
        f"{len(scripts)} uploads: HLS playlists and ffconcat scripts naming a real video outside "
        "the roots (absolute, file://, subfile:) or one beside the upload (relative, as "
        "FFmpeg's safe mode allows), or missing ones; "
        "an HLS playlist and an SDP file pointing at the denied listener",
        "each refused 415 invalid_container (only container demuxers are allowed); the answers "
        "do not differ between an existing and a missing path; nothing connects",
        uploads=len(scripts),
        refused=len(scripts) - len(wrong),
        answers_that_differ_by_path=len(differing),
        denied_listener_connections=len(denied.connections),
    )
    assert not wrong, wrong
    assert {a.json()["reason"] for a in answers.values()} == {"invalid_container"}
    assert not differing and denied.connections == []
    assert str(secret.parent) not in "".join(a.text for a in answers.values())


def _h264_ts(width: int, height: int, frames: int, start: int) -> bytes:
    """MPEG-TS of flat H.264 frames at 12 fps, timestamps from frame `start`."""
    out = io.BytesIO()
    with av.open(out, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.pts, frame.time_base = start + i, Fraction(1, 12)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out.getvalue()


def _peak_rss_during(pid: int, action) -> tuple[int, object]:
    """(KB the process's resident memory rose above its level before, at its highest while
    `action` ran, sampled every 5 ms; what `action` returned)."""
    before = proc_stats(pid).rss_kb
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc_stats(pid).rss_kb)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = action()
    finally:
        done.set()
        sampler.join()
    return peak - before, result


def _forged_duration_mkv(seconds: int) -> bytes:
    """A Matroska file of `seconds` of video at 2 fps whose header says it lasts one second."""
    data = bytearray(encode(dark_frames(seconds * 2, (32, 32)), 2, "matroska"))
    at = data.find(b"\x44\x89")  # Segment Info's Duration: a float of 4 or 8 bytes, in ms
    size = data[at + 2] & 0x0F
    data[at + 3 : at + 3 + size] = struct.pack(">d" if size == 8 else ">f", 1000.0)
    return bytes(data)


def test_limits_hold_on_every_decoded_frame(guarded, record):
    # 24 small frames (the probe's first frames pass), then 6 of 4096 x 4096: 16.8 Mpx each,
    # 25 MB decoded, 219 times the limit.
    big = _h264_ts(64, 48, 24, 0) + _h264_ts(4096, 4096, 6, 24)
    with guarded.client() as client:

        def send() -> httpx.Response:
            return client.post("/v1/classify", files={"file": ("big.ts", big, "video/mp2t")})

        rise_kb, answer = _peak_rss_during(guarded.pid, send)
        long = client.post(
            "/v1/classify",
            files={"file": ("long.mkv", _forged_duration_mkv(40), "video/x-matroska")},
        )
    record(
        "Security: frame and timeline limits on every decoded frame",
        f"an MPEG-TS of 24 frames of 64x48 then 6 of 4096x4096 ({len(big)} bytes; the limit "
        f"is {FRAME_MAX} px); a Matroska file of 40 s whose header says 1 s (limit 20 s)",
        "the big frames refused by the decoder before allocation (422), resident memory of "
        "the service barely moves; the long one refused when its frames pass 20 s (422)",
        big_status=answer.status_code,
        big_reason=answer.json().get("reason"),
        rss_rise_mb=round(rise_kb / 1024, 1),
        long_status=long.status_code,
        long_reason=long.json().get("reason"),
    )
    assert _refused(answer) and answer.json()["reason"] in {"undecodable", "bad_dimensions"}
    assert rise_kb < 48 * 1024, rise_kb  # decoded, six frames alone would be 150 MB
    assert _refused(long) and long.json()["reason"] == "too_long", long.text


def _raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock


def _closed_after(sock: socket.socket, trickle: bytes, every: float, limit: float) -> float:
    """Send `trickle` a byte every `every` s until the server closes; seconds it took."""
    started = time.monotonic()
    for byte in trickle:
        try:
            sock.sendall(bytes([byte]))
            sock.settimeout(every)
            if sock.recv(4096) == b"":
                break
        except TimeoutError:
            pass
        except OSError:
            break
        if time.monotonic() - started > limit:
            break
    return time.monotonic() - started


def _upload_head(key: str, boundary: str = "b0undary") -> bytes:
    body_start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    head = (
        "POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {key}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    return head + f"{len(body_start):x}\r\n".encode() + body_start + b"\r\n"


def _answer(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except OSError:
        pass
    return got


def test_slow_and_greedy_clients_are_cut_off(guarded, record, clip_video, rtsp_camera):
    port = guarded.port
    # Headers a byte a second: closed after the header timeout.
    header_s = _closed_after(
        _raw(port), b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X" * 60, 1.0, 30
    )
    log = guarded.service.log
    log_from = log.stat().st_size
    with guarded.client() as client:
        requests_400 = metric(client, "lumos_requests_total", route="/v1/classify", code="400")
        requests_500 = metric(client, "lumos_requests_total", route="/v1/classify", code="500")
        # Two uploads of one key that stop sending: that key's slots are full, another key's not.
        stalled = [_raw(port) for _ in range(2)]
        for sock in stalled:
            sock.sendall(_upload_head(API_KEY))
        time.sleep(0.5)
        third = upload(client, clip_video)
        with guarded.client(OTHER_KEY) as other:
            other_key = upload(other, clip_video).status_code
        started = time.monotonic()
        stalled_answers = [_answer(sock, 15) for sock in stalled]
        released_s = time.monotonic() - started
        after = upload(client, clip_video).status_code
        # An upload whose client goes away mid-body.
        aborted = _raw(port)
        aborted.sendall(_upload_head(API_KEY) + b"400\r\n" + b"\x00" * 1024 + b"\r\n")
        time.sleep(0.5)
        aborted.close()
        wait_for(
            lambda: "client went away" in log.read_text(errors="replace")[log_from:], 15, "log"
        )
        new_log = log.read_text(errors="replace")[log_from:]
        # Event streams: two at most; cameras: four at most.
        camera = rtsp_camera()
        assert client.post("/v1/streams", json={"id": "m1", "url": camera.url()}).is_success
        with ExitStack() as held:
            for _ in range(2):
                held.enter_context(client.stream("GET", "/v1/streams/m1/events"))
            third_stream = client.get("/v1/streams/m1/events", timeout=10)
        subscribed = [
            client.post("/v1/streams", json={"url": f"rtsp://127.0.0.1:{free_port()}/c{i}"})
            for i in range(4)
        ]
        # The deleted camera's metric series go.
        wait_for(
            lambda: metric(client, "lumos_stream_frames_decoded_total", stream="m1"), 60, "frames"
        )
        client.delete("/v1/streams/m1")
        gone = wait_for(
            lambda: 'stream="m1"' not in client.get("/metrics").text, 30, "m1's series to go"
        )
        for answer in subscribed:
            if answer.is_success:
                client.delete(f"/v1/streams/{answer.json()['id']}")
        aborted_400 = (
            metric(client, "lumos_requests_total", route="/v1/classify", code="400") - requests_400
        )
        new_500 = (
            metric(client, "lumos_requests_total", route="/v1/classify", code="500") - requests_500
        )
    statuses = [a.split(b"\r\n", 1)[0].decode() for a in stalled_answers]
    record(
        "Security: slow and greedy clients",
        "request headers sent a byte a second; two uploads of one key that stop mid-body (per "
        "key cap 2, global 6); an upload whose client disconnects mid-body; 3 event streams "
        "(cap 2); 5 cameras (cap 4); a camera deleted",
        f"headers cut at the {TIMEOUT_S} s timeout; stalled uploads answered 408 and their "
        "slots freed, the key's third upload refused 503 while another key's passes; the abort "
        "a warning and a 400, no traceback or 500; the third event stream and the fifth camera "
        "refused; the deleted camera's series gone from /metrics",
        header_closed_s=round(header_s, 1),
        stalled=statuses,
        stalled_released_s=round(released_s, 1),
        same_key_third=third.status_code,
        other_key=other_key,
        after_release=after,
        aborted_as_400=aborted_400,
        new_500=new_500,
        third_event_stream=third_stream.status_code,
        cameras=[a.status_code for a in subscribed],
    )
    assert header_s < TIMEOUT_S + 2.5
    assert all(s.startswith("HTTP/1.1 408") for s in statuses), statuses
    assert released_s < TIMEOUT_S + 3
    assert _refused(third, 503) and "your uploads" in third.json()["detail"]
    assert other_key == 200 and after == 200
    assert aborted_400 >= 1 and new_500 == 0
    assert "Traceback" not in new_log and not re.search(r"\bERROR\b", new_log), new_log[-2000:]
    assert _refused(third_stream, 503) and third_stream.json()["reason"] == "too_many_event_streams"
    assert [a.status_code for a in subscribed] == [201, 201, 201, 409]
    assert subscribed[-1].json()["reason"] == "too_many_streams"
    assert gone


def test_answers_carry_security_headers_and_check_the_host(guarded, record):
    with guarded.client() as client:
        pages = {path: client.get(path) for path in ("/", "/js/app.js", "/v1/models", "/nope")}
        rebound = client.get("/v1/models", headers={"Host": "attacker.example"})
        rebound_console = client.get("/", headers={"Host": "attacker.example:8000"})
        by_name = client.get("/healthz", headers={"Host": f"localhost:{guarded.port}"})
    with guarded.client(key=None) as anonymous:
        anonymous_read = anonymous.get("/v1/streams")
    wanted = {
        "content-security-policy": "frame-ancestors 'none'",
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    }
    missing = {
        path: [h for h, v in wanted.items() if v not in answer.headers.get(h, "")]
        for path, answer in pages.items()
    }
    record(
        "Security: browser headers, Host check, protected reads",
        "the console, a script, an API read and a 404; requests whose Host is another name "
        "(DNS rebinding); a read without a key with LUMOS_PROTECT_READS",
        "CSP, X-Frame-Options, nosniff and Referrer-Policy on each; a foreign Host refused 400 "
        "untrusted_host; the anonymous read 401",
        pages=len(pages),
        missing_headers=sum(map(len, missing.values())),
        rebound=rebound.status_code,
        rebound_console=rebound_console.status_code,
        anonymous_read=anonymous_read.status_code,
    )
    assert not any(missing.values()), missing
    assert _refused(rebound, 400) and rebound.json()["reason"] == "untrusted_host"
    assert _refused(rebound_console, 400) and by_name.status_code == 200
    assert _refused(anonymous_read, 401)


def test_the_service_still_classifies_a_dark_clip_alike(guarded, clip_video, denied, record):
    """Last: after every attack above, the same clip gets the same answer."""
    with guarded.client() as client:
        after = _classification(upload(client, clip_video))
    record(
        "Security: service unharmed by the attacks",
        "the dark clip classified before the attacks, classified again after them",
        "the same top label and clip count; the process never restarted",
        before=guarded.baseline,
        after=after,
        alive=guarded.service.process.poll() is None,
        denied_listener_connections=len(denied.connections),
    )
    assert after == guarded.baseline
    assert guarded.service.process.poll() is None and denied.connections == []

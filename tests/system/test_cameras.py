"""Cameras failing in each way a real one does, all at once, on the running deployment: a server
killed and restarted, one that stalls without closing its socket (SIGSTOP), one that changes
resolution mid-stream, one that sends corrupt packets, an unreachable host and a wrong path. Each
ends in the right stream status and counters; the ingest workers live on, and the deployment's
own cameras never stop delivering.

tests/service/test_live.py covers a 15 s outage in one process (clips bridging it, nothing
invented meanwhile), tests/api/test_distributed.py the reconnect counter across processes.
"""

import signal
import time

import httpx

from bench.servers import RtspCamera, free_port, wait_for
from tests.system.deployment import CAMERAS, SETTINGS, FaultyCamera, System, metric

STALL_S = float(SETTINGS["stall_timeout_s"])


def status(client: httpx.Client, camera_id: str) -> dict:
    return client.get(f"/v1/streams/{camera_id}").json()


def since(client: httpx.Client, camera_id: str, moment: float) -> list[dict]:
    return System.predictions(client, camera_id, moment)


def test_camera_faults_end_in_the_right_status_and_counters(system, record):
    restarted = RtspCamera().start()
    stalled = RtspCamera().start()
    faulty = FaultyCamera().start()
    urls = {
        "restarted": restarted.url(),
        "stalled": stalled.url(),
        "resized": faulty.url("/resize"),
        "corrupt": faulty.url("/corrupt"),
        "unreachable": f"rtsp://127.0.0.1:{free_port()}/cam",
        "wrong-path": system.camera.url("/no-such-path"),
    }
    started = time.time()
    try:
        with system.client() as client:
            for camera_id, url in urls.items():
                answer = client.post("/v1/streams", json={"id": camera_id, "url": url})
                assert answer.status_code == 201, answer.text
            delivering = ("restarted", "stalled", "resized", "corrupt")
            for camera_id in delivering:
                wait_for(
                    lambda c=camera_id: status(client, c)["state"] == "live",
                    60,
                    f"{camera_id} live",
                )
            first = {c: status(client, c) for c in delivering}

            # The faults: a server gone (connection refused on reconnect), a server frozen with
            # its sockets open (reads block: only the stall watchdog notices).
            restarted.kill()
            stalled.process.send_signal(signal.SIGSTOP)
            fault = time.monotonic()
            stall_seen = wait_for(
                lambda: (
                    metric(client, "lumos_stream_up", stream="stalled") == 0 and time.monotonic()
                ),
                STALL_S + 15,
                "the stall watchdog",
            )
            for camera_id in ("restarted", "stalled"):
                wait_for(
                    lambda c=camera_id: status(client, c)["state"] in ("failing", "stalled"),
                    60,
                    f"{camera_id} to show reconnecting",
                )
            down = {c: status(client, c) for c in ("restarted", "stalled")}
            assert all(metric(client, "lumos_stream_up", stream=c) == 0 for c in down)

            restarted.start()
            stalled.process.send_signal(signal.SIGCONT)
            back, back_wall = time.monotonic(), time.time()
            recovery = {}
            for camera_id in ("restarted", "stalled"):
                wait_for(lambda c=camera_id: since(client, c, back_wall), 60, f"{camera_id} back")
                recovery[camera_id] = round(time.monotonic() - back, 1)
            wait_for(
                lambda: all(status(client, c)["state"] == "live" for c in delivering),
                30,
                "every delivering camera live",
            )
            after = {c: status(client, c) for c in urls}
            results = {c: System.predictions(client, c) for c in urls}
            counters = {
                c: {
                    "up": metric(client, "lumos_stream_up", stream=c),
                    "reconnects": metric(client, "lumos_stream_reconnects_total", stream=c),
                    "decoded": metric(client, "lumos_stream_frames_decoded_total", stream=c),
                }
                for c in urls
            }
            steady = {c: len(since(client, c, started)) for c in CAMERAS}
            for camera_id in urls:
                assert client.delete(f"/v1/streams/{camera_id}").status_code == 204
    finally:
        stalled.process.send_signal(signal.SIGCONT)
        for camera in (restarted, stalled, faulty):
            camera.kill()

    span = round(time.time() - started)
    record(
        "Cameras: server killed and restarted",
        "the RTSP server SIGKILLed, restarted on its port after the stream showed reconnecting",
        f"{first['restarted']['state']} -> {down['restarted']['state']} -> "
        f"{after['restarted']['state']}; reconnect counted; ingest worker alive",
        recovery_s=recovery["restarted"],
        reconnects=counters["restarted"]["reconnects"],
        clips=len(results["restarted"]),
    )
    record(
        "Cameras: stall without closing the socket",
        "the RTSP server frozen with SIGSTOP (socket open, no data), SIGCONT later",
        f"stall watchdog fired, {first['stalled']['state']} -> {down['stalled']['state']} -> "
        f"{after['stalled']['state']}; reconnect counted",
        stall_timeout_s=STALL_S,
        detected_after_s=round(stall_seen - fault, 1),
        recovery_s=recovery["stalled"],
        reconnects=counters["stalled"]["reconnects"],
    )
    fps = {c: (first[c]["fps"], after[c]["fps"]) for c in first}
    record(
        "Cameras: reported frame rate",
        "the four delivering cameras at 15 fps, sampled to the model's 12 fps; read from "
        "/v1/streams/{id} once live and again after the faults",
        "unknown (null) or plausible right after connecting and after reconnecting, plausible "
        "once running: never the burst of buffered frames, never negative across an ingest "
        "restart",
        **{f"{c}_fps": f"{a} -> {b}" for c, (a, b) in fps.items()},
    )
    record(
        "Cameras: resolution changes mid-stream",
        "160x120 <-> 96x72 every 3 s (new SPS in the same RTSP session)",
        f"status {after['resized']['state']}, clips all classified, no reconnect needed",
        clips=len(results["resized"]),
        errors=sum(1 for r in results["resized"] if r["error"]),
        seconds=span,
    )
    record(
        "Cameras: corrupt packets",
        "0.1% of the H.264 bytes overwritten at random (GStreamer breakmydata)",
        f"status {after['corrupt']['state']}, decoder conceals, clips keep coming",
        clips=len(results["corrupt"]),
        frames_missing=sum(r["integrity"]["dropped"] for r in results["corrupt"]),
        errors=sum(1 for r in results["corrupt"] if r["error"]),
    )
    for camera_id, what in (
        ("unreachable", "rtsp://127.0.0.1:<closed port>/cam"),
        ("wrong-path", "a path the RTSP server does not serve (404)"),
    ):
        record(
            f"Cameras: {camera_id.replace('-', ' ')}",
            what,
            f"status {after[camera_id]['state']} (a worker holds it and keeps retrying), "
            "no clip, nothing decoded, stream_up 0",
            clips=len(results[camera_id]),
            decoded=counters[camera_id]["decoded"],
            up=counters[camera_id]["up"],
        )
    assert {c: s["state"] for c, s in first.items()} == dict.fromkeys(first, "live")
    assert all(rate is None or 0 < rate <= 15 for pair in fps.values() for rate in pair), fps
    assert fps["resized"][1] and fps["corrupt"][1], fps  # known once past the first seconds
    assert all(s["state"] in ("failing", "stalled") for s in down.values()), down
    assert stall_seen - fault < STALL_S + 10
    for camera_id in ("restarted", "stalled", "resized", "corrupt"):
        assert after[camera_id]["state"] == "live" and counters[camera_id]["up"] == 1
        assert not any(r["error"] for r in results[camera_id])
    for camera_id in ("restarted", "stalled"):
        assert counters[camera_id]["reconnects"] >= 1
    assert counters["resized"]["reconnects"] == 0 and len(results["resized"]) >= 10
    assert len(results["corrupt"]) >= 10
    for camera_id in ("unreachable", "wrong-path"):
        assert after[camera_id]["state"] == "failing" and after[camera_id]["worker"]
        assert after[camera_id]["last_error"] and after[camera_id]["reconnects"] >= 1
        assert results[camera_id] == [] and counters[camera_id]["decoded"] == 0
    assert all(system.alive().values()), system.alive()
    assert all(count >= span // 3 for count in steady.values()), steady

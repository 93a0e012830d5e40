"""Events end to end: a real RTSP camera in which someone runs for four seconds, `lumos serve`
over a real Redis, a webhook receiver on loopback and a real Mosquitto broker. Exactly one event,
with its evidence, one signed POST, and the event and the camera's retained state over MQTT."""

import io
import json
import queue
import time

import av
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from PIL import Image

from bench.servers import ROOT, MosquittoBroker, RedisServer, WebhookReceiver, wait_for
from model.manifest import load_manifest
from service.encode import write_h264
from service.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.api.conftest import service_env
from training.synth.clip import film
from training.synth.scene import render_scene

DEMO_ARTIFACT = ROOT / "artifacts" / "demo"
SAMPLED = load_manifest(DEMO_ARTIFACT).clip.fps
"""The rate the service samples the camera at, the model's: evidence is kept at it too."""
SECRET = "hook-secret-42"
FPS = 12


def running_video(path) -> None:
    """A person standing still for 6 s, running for 4 s, standing for 5 s: 160 x 120, dark.
    Through this file's encoding and the service's decoder, the demo model gives Run >= 0.6 to
    the clips inside the run and leaves it out of every other clip's top 3 (demo-20261206c and
    demo-20261206d alike: 1.00, 1.00 and 0.97 inside, `lumos classify`; under demo-20261206c, of
    seeds 0-5 and 8, 0 and 5 held by that margin; seed 7, this test's under v2, gave 0.58 once).
    The first 3 s are the same frames twice, since the exposure depends on them all."""
    rng = np.random.default_rng(0)
    scene = render_scene("Run", rng, 4 * FPS, (160, 120))
    still = [np.repeat(scene[:1], 3 * FPS, 0), scene, np.repeat(scene[-1:], 5 * FPS, 0)]
    dark = film(np.concatenate(still), rng)
    write_h264(path, np.concatenate([dark[: 3 * FPS], dark]), FPS)


def consecutive(results: list[dict]) -> list[list[dict]]:
    """`results` (in order of seq) split where a seq is missing."""
    runs: list[list[dict]] = []
    for result in results:
        if runs and runs[-1][-1]["seq"] + 1 == result["seq"]:
            runs[-1].append(result)
        else:
            runs.append([result])
    return runs


class Subscriber:
    """An MQTT client of the test, keeping (topic, payload, retained) of each message."""

    def __init__(self, url: str, topic: str) -> None:
        self.messages: queue.Queue[tuple[str, dict, bool]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = lambda c, u, m: self.messages.put(
            (m.topic, json.loads(m.payload), bool(m.retain))
        )
        host, port = url.removeprefix("mqtt://").split(":")
        self.client.connect(host, int(port))
        self.client.loop_start()

    def next(self, timeout: float) -> tuple[str, dict, bool]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.timeout(240)
def test_one_run_on_a_camera_is_one_event_with_evidence_a_signed_webhook_and_mqtt(
    service_factory, rtsp_camera, tmp_path
):
    video = tmp_path / "run.mp4"
    running_video(video)
    with RedisServer() as redis_server, MosquittoBroker() as broker, WebhookReceiver() as hook:
        env = service_env(
            tmp_path / "service",
            DEMO_ARTIFACT,
            redis_url=redis_server.url,
            lease_ms="1000",
            event_dir=str(tmp_path / "events"),
            webhook_secret=SECRET,
            webhook_backoff_s="0.2",
            mqtt_url=broker.url,
        )
        service = service_factory("serve", env)
        watcher = Subscriber(broker.url, "lumos/yard/#")
        # The camera loops the file from its start; subscribed at once, the service connects
        # within the first idle seconds (a connection's first frames come in a burst, whose
        # wall-clock times say nothing of the action's length).
        camera = rtsp_camera(paths=("/yard",), file=video, fps=FPS)
        rules = {"labels": ["Run"], "min_score": 0.6, "min_clips": 2, "cooldown_s": 120}
        with service.client() as client:
            created = client.post(
                "/v1/streams",
                json={"url": camera.url(), "id": "yard", "webhook": hook.url, "rules": rules},
            )
            assert created.status_code == 201, created.text
            assert created.json()["rules"]["labels"] == ["Run"]

            def closed() -> list[dict]:
                events = client.get("/v1/events", params={"camera": "yard"}).json()["events"]
                return [e for e in events if e["status"] == "closed"]

            (event,) = wait_for(closed, 120, "the event to close", every=0.5)
            time.sleep(3.0)  # the idle seconds after it: still one event
            page = client.get("/v1/events").json()
            assert page["total"] == 1 and page["events"][0]["id"] == event["id"]
            assert event["label"] == "Run" and event["score"] >= 0.6 and event["clips"] >= 2
            assert 2.0 <= event["end"] - event["start"] <= 7.0  # the 4 s run, in whole clips
            # Every clip the rules counted lies inside the event: the standing parts made none.
            # A loaded machine may connect to the camera mid-run: that run's tail before the
            # event is too short for the rules (fewer than min_clips clips in a row).
            results = client.get("/v1/streams/yard/predictions").json()["results"]
            counted = [
                r
                for r in results
                if r["top"][0]["label"] == "Run"
                and r["top"][0]["score"] >= 0.6
                and r["start"] < event["end"] + 5
            ]
            runs = consecutive(sorted(counted, key=lambda r: r["seq"]))
            (inside,) = [run for run in runs if run[-1]["end"] > event["start"]]
            assert all(event["start"] <= r["start"] and r["end"] <= event["end"] for r in inside)
            assert all(len(run) < rules["min_clips"] for run in runs if run is not inside)
            assert client.get(f"/v1/events/{event['id']}").json() == event

            # Evidence: a playable H.264 clip as long as it says, beside its enhanced twin.
            evidence = event["evidence"]
            assert evidence["enhanced"] and evidence["fps"] == SAMPLED
            for enhanced in ("false", "true"):
                answer = client.get(f"/v1/events/{event['id']}/clip", params={"enhanced": enhanced})
                assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4"
                with av.open(io.BytesIO(answer.content)) as container:
                    stream = container.streams.video[0]
                    assert stream.codec_context.name == "h264"
                    frames = sum(1 for _ in container.decode(stream))
                assert frames == evidence["frames"]
                assert frames / SAMPLED == pytest.approx(evidence["duration"], abs=0.01)
                span = event["end"] - event["start"]
                assert span - 0.5 <= evidence["duration"] <= span + 1.5  # + a second before
                snapshot = client.get(
                    f"/v1/events/{event['id']}/snapshot", params={"enhanced": enhanced}
                )
                assert snapshot.headers["content-type"] == "image/jpeg"
                assert Image.open(io.BytesIO(snapshot.content)).format == "JPEG"

            # One signed POST, whose signature verifies (and fails for a tampered body).
            wait_for(lambda: hook.requests, 30, "the webhook")
            time.sleep(1.0)
            assert len(hook.requests) == 1
            headers, body = hook.requests[0]
            assert verify(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body)
            assert not verify(
                SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body + b" "
            )
            assert not verify("other", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body)
            assert json.loads(body)["event"]["id"] == event["id"]

            # MQTT: the watcher saw the camera go active, the event, then idle; a subscriber
            # arriving now gets the retained state at once.
            seen = [watcher.next(10) for _ in range(3)]
            watcher.close()
            assert [(t, m.get("state")) for t, m, _ in seen] == [
                ("lumos/yard/state", "active"),
                ("lumos/yard/event", None),
                ("lumos/yard/state", "idle"),
            ]
            assert seen[1][1]["event"]["id"] == event["id"]
            late = Subscriber(broker.url, "lumos/yard/state")
            topic, state, retained = late.next(10)
            late.close()
            assert (topic, state["state"], retained) == ("lumos/yard/state", "idle", True)

            # Deleting the event takes its evidence with it.
            assert client.delete(f"/v1/events/{event['id']}").status_code == 204
            assert client.get(f"/v1/events/{event['id']}").status_code == 404
            assert client.get(f"/v1/events/{event['id']}/clip").status_code == 404
            assert client.get("/v1/events/not-an-id").status_code == 422
            client.delete("/v1/streams/yard")

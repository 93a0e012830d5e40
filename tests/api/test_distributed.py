"""The service as separate processes over a real Redis: `lumos api`, `lumos ingest`, `lumos infer`
and `lumos trainer`, sharing one PROMETHEUS_MULTIPROC_DIR so the API's /metrics covers them all.

Inference starts late on purpose: meanwhile uploads fill the bounded queue (the API sheds load
with 503) and the camera's live clips overflow their lane (drops counted); then every queued clip
is answered. The Grafana dashboard is checked against the metrics this deployment exposes.
"""

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.servers import ROOT, RedisServer, RtspCamera, lumos_process, wait_for
from tests.api.conftest import (
    Service,
    job_state,
    make_dataset,
    service_env,
    start_service,
    upload,
)
from tests.conftest import ARID_LABELS, dark_frames
from training.video import write_video

REQUIRED_METRICS = [
    "lumos_stream_frames_decoded_total",
    "lumos_stream_frames_dropped_total",
    "lumos_stream_clips_total",
    "lumos_stream_reconnects_total",
    "lumos_stream_up",
    "lumos_stream_luma_mean",
    "lumos_stream_noise_sigma",
    "lumos_clips_gated_total",
    "lumos_queue_depth",
    "lumos_queue_wait_seconds",
    "lumos_inference_batch_size",
    "lumos_inference_seconds",
    "lumos_clip_latency_seconds",
    "lumos_predictions_total",
    "lumos_requests_total",
    "lumos_request_seconds",
    "lumos_jobs",
    "lumos_model_info",
]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "lumos.json"


class Deployment:
    def __init__(self, root: Path, artifact: Path, redis: RedisServer) -> None:
        (root / "prometheus").mkdir()
        self.root = root
        self.env = service_env(
            root,
            artifact,
            redis_url=redis.url,
            queue_files_max="2",
            queue_live_max="2",
            gate_min_luma="3",
            reconnect_backoff="0.3x1000",
            stall_timeout_s="3",
            lease_ms="1000",
            claim_idle_ms="2000",
        )
        self.env["PROMETHEUS_MULTIPROC_DIR"] = str(root / "prometheus")
        self.workers: dict[str, subprocess.Popen] = {}
        self.api: Service | None = None

    def start(self, role: str) -> None:
        self.workers[role] = lumos_process(role, self.env, self.root / f"{role}.log")

    def stop(self) -> None:
        for process in self.workers.values():
            process.terminate()
        for process in self.workers.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.api is not None:
            self.api.stop()


@pytest.fixture(scope="module")
def deployment(tiny_artifact, tmp_path_factory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("distributed")
    with RedisServer() as redis:
        deployment = Deployment(root, tiny_artifact, redis)
        make_dataset(root / "data" / "synth")
        try:
            deployment.api = start_service("api", deployment.env, root / "api.log")
            deployment.start("ingest")
            yield deployment
        finally:
            deployment.stop()


def scrape(client: httpx.Client) -> dict[str, list]:
    """Sample name -> samples of the API's /metrics (all processes, through the shared dir)."""
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def exposed(samples: dict[str, list], metric: str) -> bool:
    """A metric has real samples: itself (counter, gauge) or its buckets (histogram)."""
    return bool(samples.get(metric) or samples.get(f"{metric}_bucket"))


def test_workers_share_the_load_and_metrics_cover_every_process(deployment, tmp_path):
    write_video(tmp_path / "long.mp4", dark_frames(96), 12.0)  # 8 s: 12 clips of 8 frames
    write_video(tmp_path / "short.mp4", dark_frames(24), 12.0)
    write_video(tmp_path / "black.mp4", np.zeros((24, 48, 64, 3), np.uint8), 12.0)
    camera = RtspCamera().start()  # its generated dark scene
    try:
        with deployment.api.client() as client:
            ready = client.get("/readyz").json()
            assert ready["checks"]["queue"]["ok"] and "inference" not in ready["checks"]
            # Rules every clip passes: the camera's first clip opens an event (its metric shows).
            rules = {"min_score": 0, "min_clips": 1}
            stream = {"url": camera.url(), "id": "cam", "rules": rules}
            assert client.post("/v1/streams", json=stream).is_success

            # No inference yet: an upload fills the bounded upload lane, the API sheds load.
            pending = upload(client, tmp_path / "long.mp4", **{"async": "true"})
            assert pending.status_code == 202
            wait_for(
                lambda: client.get("/readyz").json()["checks"]["queue"]["depth"]["files"] >= 2,
                60,
                "the upload lane to fill",
            )
            refused = upload(client, tmp_path / "short.mp4")
            assert refused.status_code == 503 and refused.json()["reason"] == "overloaded"
            assert int(refused.headers["retry-after"]) > 0
            # ...and the camera's live lane overflows, each drop counted by the ingest process.
            wait_for(
                lambda: exposed(scrape(client), "lumos_stream_frames_dropped_total"),
                60,
                "a live clip to be dropped",
            )

            deployment.start("infer")
            poll = pending.json()["poll"]
            answer = wait_for(
                lambda: (r := client.get(poll)).status_code == 200 and r.json(), 90, "the upload"
            )
            assert answer["status"] == "done" and answer["clip_count"] == 12
            assert answer["video"]["top"][0]["label"] in ARID_LABELS
            # Admission reads the depth monitor (every 0.5 s): wait for it to see the drained lane.
            wait_for(
                lambda: client.get("/readyz").json()["checks"]["queue"]["depth"]["files"] < 2,
                10,
                "the upload lane to drain",
            )
            short = upload(client, tmp_path / "short.mp4").json()
            assert short["model_version"] == "tiny-1" and short["clip_count"] == 3
            black = upload(client, tmp_path / "black.mp4").json()
            assert black["clip_count"] == 0 and black["gated"] == 3

            wait_for(
                lambda: client.get("/v1/streams/cam/predictions").json()["results"],
                60,
                "camera predictions",
            )
            camera.restart()  # the source goes away and comes back: a reconnect
            wait_for(
                lambda: exposed(scrape(client), "lumos_stream_reconnects_total"), 60, "reconnect"
            )
            # The event follows the camera's results: the ingest's tracker first passes over the
            # clips dropped before inference started (each after the staleness budget).
            wait_for(lambda: exposed(scrape(client), "lumos_events_total"), 90, "an event")
            samples = scrape(client)
    finally:
        camera.kill()

    missing = [m for m in REQUIRED_METRICS if not exposed(samples, m)]
    assert not missing, f"no samples for {missing}"
    assert {s.labels["reason"] for s in samples["lumos_stream_frames_dropped_total"]} >= {
        "overflow"
    }
    assert any(s.value >= 1 for s in samples["lumos_stream_reconnects_total"])
    assert {s.labels["stream"] for s in samples["lumos_stream_clips_total"]} >= {"cam"}
    assert any(
        s.labels["version"] == "tiny-1" and s.value == 1 for s in samples["lumos_model_info"]
    )
    routes = {s.labels["route"] for s in samples["lumos_requests_total"]}
    assert {"/v1/classify", "/v1/streams", "/readyz"} <= routes
    assert all("rtsp" not in json.dumps(s.labels) for values in samples.values() for s in values)

    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    referenced = {name for expr in expressions for name in re.findall(r"\blumos_\w+", expr)}
    assert referenced and referenced <= set(samples), sorted(referenced - set(samples))
    base_names = {re.sub(r"_(bucket|sum|count)$", "", name) for name in referenced}
    assert base_names >= set(REQUIRED_METRICS)  # every metric is on the dashboard


def test_a_job_whose_trainer_is_killed_fails_once_its_lease_runs_out(deployment):
    lease_s = 3.0
    env = {**deployment.env, "LUMOS_JOB_LEASE_S": str(lease_s), "LUMOS_WORKER_ID": "doomed"}
    log = deployment.root / "doomed-trainer.log"
    trainer = lumos_process("trainer", env, log)
    try:
        with deployment.api.client() as client:
            # Full cpu-small epochs: far longer than the test.
            job = client.post(
                "/v1/jobs", json={"stage": "ssl", "dataset": "synth", "overrides": {"init": None}}
            ).json()
            running = wait_for(
                lambda: job_state(client, job["id"], "running"), 120, "the trainer to start it"
            )
            assert running["worker"] == "doomed"
            started = rf"job {job['id']} \(ssl\) started, pid (\d+)"
            pid = int(wait_for(lambda: re.search(started, log.read_text()), 10, "its pid")[1])
            trainer.kill()
            trainer.wait()
            killed = time.monotonic()
            # Its `lumos train` process, in a process group of its own, outlives it: stop that.
            os.killpg(pid, signal.SIGKILL)

            # Its lease lapses at most lease_s after the kill; the slack is for a busy machine.
            failed = wait_for(
                lambda: job_state(client, job["id"], "failed"), lease_s + 10, "the job to fail"
            )
            assert time.monotonic() - killed < lease_s + 10
            assert failed["error"].startswith("trainer died: doomed ")
            assert failed["finished"] is not None and failed["step"] is None
            listed = {j["id"]: j for j in client.get("/v1/jobs").json()}
            assert listed[job["id"]]["state"] == "failed"
    finally:
        trainer.kill()
        trainer.wait()


def jobs_in(client: httpx.Client, state: str) -> float:
    """The `lumos_jobs` gauge for `state`: jobs in that state, whichever tests made them."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "lumos_jobs" and sample.labels.get("state") == state:
                return sample.value
    return 0.0


def test_trainer_process_runs_and_cancels_queued_jobs(deployment):
    deployment.start("trainer")
    with deployment.api.client() as client:
        before = {state: jobs_in(client, state) for state in ("succeeded", "cancelled")}
        long = client.post(
            "/v1/jobs", json={"stage": "ssl", "dataset": "synth", "overrides": {"init": None}}
        ).json()
        evaluation = client.post(
            "/v1/jobs", json={"stage": "eval", "dataset": "synth", "model": "tiny-1"}
        ).json()
        wait_for(
            lambda: job_state(client, long["id"], "running"),
            60,
            "the trainer to take the first job",
        )
        assert job_state(client, evaluation["id"], "queued")  # one job at a time
        assert client.delete(f"/v1/jobs/{long['id']}").status_code == 202
        wait_for(lambda: job_state(client, long["id"], "cancelled"), 30, "the cancel")

        done = wait_for(
            lambda: job_state(client, evaluation["id"], "succeeded", "failed"), 120, "the eval job"
        )
        assert done["state"] == "succeeded", done["log_tail"]
        top1 = [v for k, v in done["metrics"].items() if k.endswith("single.top1")]
        assert top1 and all(0 <= v <= 1 for v in top1)
        assert done["model_version"] is None  # an evaluation registers nothing
        after = {state: jobs_in(client, state) for state in before}
        assert after == {state: count + 1 for state, count in before.items()}

"""Training jobs through a real `lumos serve` (trainer thread + `lumos train` subprocesses): checks
on cancel, a tiny pipeline that registers a model version the service then serves, and what a
failing job shows. The checks on requests run in-process (test_job_requests.py)."""

from pathlib import Path

import pytest

from bench.servers import wait_for
from tests.api.conftest import Service, job_state, make_dataset, service_env, upload

# The cpu-small pipeline shrunk to seconds: one epoch per stage, a width-4 net on 8 x 32 x 32.
TINY = {
    "all.optim.epochs": 1,
    "all.data.batch_size": 8,
    "all.arch.width": 4,
    "all.arch.frames": 8,
    "all.data.clip": {
        "frames": 8,
        "crop": 32,
        "resize": [44, 32],
        "fps": 12.0,
        "normalize": "per_clip",
    },
}


@pytest.fixture(scope="module")
def service(service_factory, tiny_artifact, tmp_path_factory) -> Service:
    root = tmp_path_factory.mktemp("jobs")
    # No API keys: this service runs open, and must say so (auth is test_uploads' subject).
    env = service_env(root, tiny_artifact, trainer_concurrency="1")
    make_dataset(root / "data" / "synth")
    (root / "data" / "escape").symlink_to(tmp_path_factory.mktemp("outside"))
    return service_factory("serve", env)


def test_queued_and_running_jobs_cancel(service):
    with service.client() as client:
        # Full cpu-small epochs: far longer than the test, so the first is running when cancelled
        # and the second (one job at a time) is still queued.
        first = client.post("/v1/jobs", json={"stage": "pipeline", "dataset": "synth"}).json()
        second = client.post(
            "/v1/jobs", json={"stage": "ssl", "dataset": "synth", "overrides": {"init": None}}
        ).json()
        assert first["state"] == "queued"
        wait_for(lambda: job_state(client, first["id"], "running"), 30, "the first job to run")
        cancelled = client.delete(f"/v1/jobs/{second['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        stopping = client.delete(f"/v1/jobs/{first['id']}")
        assert stopping.status_code == 202 and stopping.json()["cancel_requested"]
        done = wait_for(lambda: job_state(client, first["id"], "cancelled"), 30, "the cancel")
        assert done["finished"] is not None
        assert client.delete(f"/v1/jobs/{first['id']}").json()["reason"] == "job_finished"
        assert client.get("/v1/jobs/nope").status_code == 404
        ids = [j["id"] for j in client.get("/v1/jobs").json()]
        assert ids.index(second["id"]) < ids.index(first["id"])  # newest first


def test_pipeline_job_registers_a_model_that_serves(service, make_video, tmp_path):
    video = make_video(tmp_path / "dark.mp4", frames=24)
    seen: list[tuple[float, str | None]] = []
    with service.client(timeout=120) as client:
        # SSL long enough to be seen running: in bf16 one epoch of these clips takes well under
        # the half-second poll.
        overrides = {**TINY, "ssl.optim.epochs": 30}
        posted = client.post(
            "/v1/jobs", json={"stage": "pipeline", "dataset": "synth", "overrides": overrides}
        )
        assert posted.status_code == 201, posted.text
        job_id = posted.json()["id"]

        def finished() -> dict | None:
            job = client.get(f"/v1/jobs/{job_id}").json()
            seen.append((job["progress"], job["step"]))
            return job if job["state"] in ("succeeded", "failed", "cancelled") else None

        job = wait_for(finished, 300, "the pipeline job", every=0.5)
        assert job["state"] == "succeeded", job["log_tail"]
        assert job["model_version"] == f"job-{job_id}"
        assert 0 <= job["metrics"]["test.top1"] <= 1
        assert "teacher.val.top1" in job["metrics"] and job["log_tail"]
        progress = [p for p, _ in seen]
        assert progress == sorted(progress) and progress[-1] == 1.0
        assert any(0 < p < 1 for p in progress)  # reported between stages too
        assert any(step and step.startswith("ssl epoch") for _, step in seen)

        models = client.get("/v1/models").json()
        assert models["active"] == "tiny-1"
        version = next(v for v in models["versions"] if v["version"] == job["model_version"])
        assert version["manifest"]["clip"]["frames"] == 8 and "test" in version["metrics"]

        assert client.post("/v1/models/nope/activate").json()["reason"] == "unknown_version"
        activated = client.post(f"/v1/models/{job['model_version']}/activate")
        assert activated.status_code == 200 and activated.json()["active"]
        assert client.get("/v1/models").json()["active"] == job["model_version"]

        def served_by_new_model() -> bool:
            return upload(client, video).json()["model_version"] == job["model_version"]

        wait_for(served_by_new_model, 60, "inference to switch models", every=0.5)
        metrics = client.get("/metrics").text
        assert 'lumos_jobs{state="succeeded"} 1.0' in metrics
        assert f'lumos_model_info{{version="{job["model_version"]}"}} 1.0' in metrics
        ready = client.get("/readyz")
        assert ready.json().get("auth") == "open" and ready.json()["warnings"], ready.text
    assert "NO API KEYS CONFIGURED" in service.log.read_text()


def test_a_failing_job_shows_no_server_paths_and_no_file_bytes(service):
    """A `pretrained` file under the artifacts root that is no checkpoint: the job fails, and
    neither its log nor its error quotes the file's bytes or an absolute server path."""
    artifacts = Path(service.env["LUMOS_ARTIFACTS_ROOT"])
    (artifacts / "junk.pth").write_bytes(b"SECRET-BYTES-0123456789")
    teacher = {key.removeprefix("all."): value for key, value in TINY.items()}
    overrides = {**teacher, "pretrained": str(artifacts / "junk.pth")}
    with service.client() as client:
        posted = client.post(
            "/v1/jobs", json={"stage": "teacher", "dataset": "synth", "overrides": overrides}
        )
        assert posted.status_code == 201, posted.text
        job = wait_for(
            lambda: job_state(client, posted.json()["id"], "failed", "succeeded"), 180, "the job"
        )
    shown = "\n".join([*job["log_tail"], job["error"] or ""])
    assert job["state"] == "failed" and "<artifacts>/junk.pth" in job["error"], shown
    assert "SECRET" not in shown and "0123" not in shown
    assert str(artifacts.parent) not in shown

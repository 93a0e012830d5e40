"""Training job requests checked before queueing, in this process (the API over the in-memory
runtime, no job runner): data sets, models, overrides. Overrides are hostile: any change to where
the trainer reads or writes, in any spelling, is refused, and the files a job may name lie under
the artifacts and models roots, refused the same way whether or not they exist."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.jobs.roots import Roots


@pytest.fixture
def api(in_process, tmp_path) -> TestClient:
    (tmp_path / "data" / "synth").mkdir(parents=True)
    (tmp_path / "data" / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    (tmp_path / "outside").mkdir()
    return in_process()


def refused(api: TestClient, body: dict, status: int, reason: str) -> dict:
    answer = api.post("/v1/jobs", json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["reason"] == reason, problem
    assert api.get("/v1/jobs").json() == []  # nothing queued
    return problem


@pytest.mark.parametrize(
    ("request_body", "status", "reason"),
    [
        ({"stage": "pipeline", "dataset": "../data"}, 422, "invalid_dataset"),
        ({"stage": "pipeline", "dataset": "/etc"}, 422, "invalid_dataset"),
        ({"stage": "pipeline", "dataset": "escape"}, 422, "dataset_outside_root"),
        ({"stage": "pipeline", "dataset": "missing"}, 404, "unknown_dataset"),
        ({"stage": "teach", "dataset": "synth"}, 422, "invalid_request"),
        ({"stage": "ssl", "dataset": "synth", "extra": 1}, 422, "invalid_request"),
        ({"stage": "teacher", "dataset": "synth", "overrides": {"optim.epochs": "many"}}, 422,
         "invalid_overrides"),
        ({"stage": "ssl", "dataset": "synth", "overrides": {"optim.nonsense": 1}}, 422,
         "invalid_overrides"),
        # A crop 100 times the frame: refused here, not a failed job in the worker.
        ({"stage": "teacher", "dataset": "synth", "overrides": {"data.scales": [100]}}, 422,
         "invalid_overrides"),
        # Multigrid steps 100,000 pixels wide: the same, before a worker tries to allocate them.
        ({"stage": "teacher", "dataset": "synth",
          "overrides": {"data.multigrid.sizes": [100000]}}, 422, "invalid_overrides"),
        ({"stage": "pipeline", "dataset": "synth", "overrides": {"optim.epochs": 1}}, 422,
         "invalid_overrides"),
        ({"stage": "distill", "dataset": "synth", "overrides": {"export_dir": "/tmp/x"}}, 422,
         "reserved_override"),
        ({"stage": "pipeline", "dataset": "synth", "overrides": {"all.data.root": "/"}}, 422,
         "reserved_override"),
        ({"stage": "eval", "dataset": "synth", "model": "nope"}, 404, "unknown_version"),
        ({"stage": "eval", "dataset": "synth", "overrides": {"crops": 7}}, 422,
         "invalid_overrides"),
        ({"stage": "ssl", "dataset": "synth"}, 422, "missing_checkpoint"),
        ({"stage": "distill", "dataset": "synth", "overrides": {"init": None}}, 422,
         "missing_checkpoint"),
        ({"stage": "distill", "dataset": "synth", "overrides": {"teacher": "/x.pt"}}, 422,
         "reserved_override"),
        ({"stage": "teacher", "dataset": "synth", "model": "tiny-1"}, 422, "invalid_request"),
    ],
)  # fmt: skip
def test_job_requests_are_checked_before_queueing(api, request_body, status, reason):
    refused(api, request_body, status, reason)


# Every spelling of "write checkpoints there" or "read data from there": a whole section, a
# pipeline stage's section, `all.`, a key that smuggles its own `=`, and the nested form of each.
@pytest.mark.parametrize(
    ("stage", "overrides"),
    [
        ("teacher", {"run": {"output_dir": "/tmp/evil"}}),
        ("teacher", {"run": {"output_dir": "/tmp/evil", "seed": 1}}),
        ("ssl", {"data": {"root": "/etc", "split": 1}, "init": None}),
        ("distill", {"run.output_dir": "../../elsewhere", "init": None, "teacher": None}),
        ("teacher", {"run.output_dir=/tmp/evil#": 1}),
        ("teacher", {"data": {"root": "."}}),
        ("distill", {"version": "job-somebody-else", "init": None, "teacher": None}),
        ("distill", {"export_dir": None, "init": None, "teacher": None}),
        ("ssl", {"init": "runs/other/teacher/checkpoints/best.pt"}),
        ("pipeline", {"teacher.run": {"output_dir": "/tmp/evil"}}),
        ("pipeline", {"ssl.data": {"root": "/etc"}}),
        ("pipeline", {"all.run": {"output_dir": "/tmp/evil"}}),
        ("pipeline", {"all.data": {"root": "/"}}),
        ("pipeline", {"distill.export_dir": "/tmp/evil"}),
        ("pipeline", {"distill.version": "v-evil"}),
        ("pipeline", {"teacher.run.output_dir": "/tmp/evil"}),
    ],
)
def test_reserved_fields_cannot_change_through_any_section(api, stage, overrides):
    refused(api, {"stage": stage, "dataset": "synth", "overrides": overrides}, 422,
            "reserved_override")  # fmt: skip


def test_checkpoint_paths_are_confined_without_an_existence_oracle(api, tmp_path):
    """`pretrained` names a file under the artifacts or models roots, or nothing: a file that
    exists outside them, one that does not, a traversal and a symlink out all get one answer."""
    secret = tmp_path / "outside" / "secret.pth"
    secret.write_bytes(b"SECRET-BYTES")
    artifacts = tmp_path / "artifacts"
    (artifacts / "link.pth").symlink_to(secret)
    spellings = [
        str(secret),
        str(tmp_path / "outside" / "absent.pth"),
        "/etc/passwd",
        str(artifacts / ".." / "outside" / "secret.pth"),
        str(artifacts / "link.pth"),
    ]
    details = set()
    for path in spellings:
        for stage, key in (("teacher", "pretrained"), ("pipeline", "all.pretrained")):
            body = {"stage": stage, "dataset": "synth", "overrides": {key: path}}
            problem = refused(api, body, 422, "path_outside_roots")
            assert str(tmp_path) not in problem["detail"]
            details.add((stage, problem["detail"]))
    assert len(details) == 2, details  # one answer per stage, whatever the path


def test_checkpoints_inside_the_roots_are_accepted_and_shown_relative(api, tmp_path):
    weights = tmp_path / "artifacts" / "weights" / "r2plus1d.pth"
    weights.parent.mkdir(parents=True)
    problem = refused(
        api, {"stage": "teacher", "dataset": "synth", "overrides": {"pretrained": str(weights)}},
        422, "missing_checkpoint",
    )  # fmt: skip
    assert "<artifacts>/weights/r2plus1d.pth" in problem["detail"]
    assert str(tmp_path) not in problem["detail"]
    weights.write_bytes(b"weights")
    for overrides in ({"pretrained": str(weights)}, {"pretrained": None, "optim.epochs": 2}):
        answer = api.post("/v1/jobs", json={"stage": "teacher", "dataset": "synth",
                                            "overrides": overrides})  # fmt: skip
        assert answer.status_code == 201, answer.text
        assert answer.json()["state"] == "queued"
    # Clearing a stage's link to an earlier one names no file: allowed.
    answer = api.post("/v1/jobs", json={"stage": "ssl", "dataset": "synth",
                                        "overrides": {"init": None}})  # fmt: skip
    assert answer.status_code == 201, answer.text
    assert len(api.get("/v1/jobs").json()) == 3


def test_paths_shown_are_relative_to_their_roots(api, tmp_path):
    roots = Roots(api.app.state.runtime.settings)
    line = f"lumos train teacher: {tmp_path / 'runs' / 'abc' / 'teacher'} and {Path.cwd()}/x"
    shown = roots.relative(line)
    assert shown.startswith("lumos train teacher: <runs>/abc/teacher and <"), shown
    assert str(tmp_path) not in shown and str(Path.cwd()) not in shown


def test_unknown_jobs_and_versions_answer_from_the_one_status_table(api):
    assert api.get("/v1/jobs/nope").json()["reason"] == "unknown_job"
    assert api.get("/v1/jobs/nope").status_code == 404
    assert api.delete("/v1/jobs/nope").status_code == 404
    answer = api.post("/v1/models/nope/activate")
    assert (answer.status_code, answer.json()["reason"]) == (404, "unknown_version")


def test_a_pipeline_job_plans_the_stages_its_config_dir_holds(in_process, tmp_path):
    """configs/cpu-student (its localiser and the student, no teacher or init) is queued; a
    student-only directory whose student names a teacher checkpoint that is not there is
    refused, since no teacher stage will make it."""
    (tmp_path / "data" / "synth").mkdir(parents=True)
    student = Path(__file__).parents[2] / "configs" / "cpu-student"
    # The localiser the student zooms with is a file a job could name: confined like a checkpoint.
    hostile = {"distill.data.locator": "/etc/passwd"}
    body = {"stage": "pipeline", "dataset": "synth", "overrides": hostile}
    refused(in_process(train_configs=student), body, 422, "path_outside_roots")
    api = in_process(train_configs=student)
    answer = api.post("/v1/jobs", json={"stage": "pipeline", "dataset": "synth"})
    assert answer.status_code == 201, answer.text
    named = tmp_path / "configs-named-teacher"
    named.mkdir()
    text = (student / "distill.yaml").read_text()
    (named / "distill.yaml").write_text(text.replace("teacher: null", "teacher: t/best.pt"))
    problem = refused(in_process(train_configs=named), {"stage": "pipeline", "dataset": "synth"},
                      422, "missing_checkpoint")  # fmt: skip
    assert "teacher=" in problem["detail"]

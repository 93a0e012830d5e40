"""Render docs/reliability.md from the system suite's results (see tests/system/results.py).

    .venv/bin/pytest tests/system                         # writes runs/reliability/results.json
    .venv/bin/python -m tests.system.report [RESULTS.json ...] [--out docs/reliability.md]

Several results files (e.g. the CI run and a long soak run) are merged, rows in file order.
"""

import argparse
import json
from pathlib import Path
from typing import Any

from tests.servers import ROOT
from tests.system.results import RESULTS, load

DOC = ROOT / "docs" / "reliability.md"

# What other suites already prove, so the system suite does not repeat it.
COVERED = [
    (
        "Each upload reason once on `lumos serve`; chunked body over the limit",
        "tests/api/test_uploads.py::test_each_invalid_upload_gets_its_reason",
    ),
    (
        "20 bad uploads in a row: the service stays up",
        "tests/api/test_uploads.py::test_service_stays_up_under_repeated_bad_uploads",
    ),
    (
        "Camera down 15 s: clips resume, none invented, the bridging clip flags the reconnect",
        "tests/service/test_live.py::test_predictions_resume_after_the_camera_is_down_for_15_s",
    ),
    (
        "Camera restarted: reconnect counted, across processes",
        "tests/api/test_distributed.py::test_workers_share_the_load_and_metrics_cover_every_process",
    ),
    (
        "Redis restarted empty: consumer groups re-created",
        "tests/service/test_queue.py::test_queue_recovers_when_redis_restarts_empty",
    ),
    (
        "Inference worker SIGKILLed holding 12 clips: one result each, the first stands",
        "tests/service/test_workers.py::"
        "test_clips_of_an_inference_worker_killed_mid_batch_get_exactly_one_result",
    ),
    (
        "Ingest worker SIGKILLed: its cameras taken over within the lease",
        "tests/service/test_workers.py::"
        "test_two_ingest_workers_share_four_cameras_and_one_takes_over_within_the_lease",
    ),
    (
        "Upload lane full while inference is down: 503 overloaded + Retry-After; live overflow "
        "counted",
        "tests/api/test_distributed.py::test_workers_share_the_load_and_metrics_cover_every_process",
    ),
    (
        "Slow consumer: live lane bounded, drops counted, staleness budget held, memory flat",
        "tests/service/test_live.py::"
        "test_a_slow_consumer_bounds_memory_counts_drops_and_holds_the_staleness_budget",
    ),
    (
        "Upload lane full: the producer waits, nothing dropped",
        "tests/service/test_queue.py::test_full_upload_lane_makes_the_producer_wait_and_drops_nothing",
    ),
    (
        "Corrupt queue entry: dropped, counted, not retried",
        "tests/service/test_queue.py::test_a_corrupt_entry_is_dropped_and_counted_not_retried",
    ),
    (
        "Queue entries are never unpickled: other bytes refused by the clip codec",
        "tests/service/test_clip.py::test_bytes_that_are_not_a_clip_are_refused_clearly",
    ),
    (
        "Mutating calls need a key on `lumos serve`; reads and probes open; Bearer accepted",
        "tests/api/test_uploads.py::test_mutating_calls_need_an_api_key",
    ),
    (
        "Data sets: ../, absolute path, symlink out; job requests checked before queueing",
        "tests/api/test_job_requests.py::test_job_requests_are_checked_before_queueing",
    ),
    (
        "Job overrides: reserved paths changed through a whole section, a pipeline stage, `all.`",
        "tests/api/test_job_requests.py::test_reserved_fields_cannot_change_through_any_section",
    ),
    (
        "Job checkpoint paths confined to the artifacts/models roots, no existence oracle",
        "tests/api/test_job_requests.py::"
        "test_checkpoint_paths_are_confined_without_an_existence_oracle",
    ),
    (
        "A failing job's log and error: no file bytes, paths relative to their roots",
        "tests/api/test_jobs.py::test_a_failing_job_shows_no_server_paths_and_no_file_bytes",
    ),
    (
        "Camera URLs: bare path, file://, udp, concat:, ftp, no host",
        "tests/api/test_streams.py::test_unsupported_sources_are_refused",
    ),
    (
        "Camera credentials redacted in API answers",
        "tests/api/test_streams.py::test_camera_delivers_events_and_predictions",
    ),
    (
        "Camera credentials never in ingest logs",
        "tests/service/test_live.py::test_camera_credentials_never_reach_the_logs",
    ),
    (
        "No camera URL in any metric label",
        "tests/api/test_distributed.py::test_workers_share_the_load_and_metrics_cover_every_process",
    ),
    (
        "Bodies over their limit (JSON 1 MB, declared or chunked) refused: 413 problem+json",
        "tests/api/test_uploads.py::test_docs_are_served_and_bodies_over_their_limit_get_a_problem",
    ),
    (
        "Trainer killed (SIGKILL) mid-job: the job fails once its lease runs out",
        "tests/api/test_distributed.py::test_a_job_whose_trainer_is_killed_fails_once_its_lease_runs_out",
    ),
    (
        "Workers' /readyz 503 with a reason while Redis is away, /healthz 200",
        "tests/service/test_workers.py::test_worker_probes_say_whether_each_role_can_work",
    ),
    (
        "API keys hidden by `lumos config`",
        "tests/api/test_configuration.py::test_effective_settings_hide_api_keys",
    ),
]


def cell(value: Any) -> str:
    """A number, list or mapping as compact table text."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(cell(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(runs: list[dict[str, Any]]) -> str:
    lines = [
        "# Reliability and security",
        "",
        "What the system suite (`tests/system/`) did to a running deployment, and what it saw.",
        "Every part is a real process: `lumos api`, two `lumos ingest` workers and a `lumos infer`",
        "worker over a redis-server with append-only persistence (`appendfsync always`), GStreamer",
        "RTSP cameras, real HTTP; the faults are real signals (SIGKILL, SIGSTOP) and real bytes.",
        "",
        "This page is generated from the suite's results:",
        "",
        "```",
        ".venv/bin/pytest tests/system                    # CI: 60 s soak; writes "
        "runs/reliability/results.json",
        "LUMOS_SOAK_SECONDS=600 LUMOS_RELIABILITY_RESULTS=runs/reliability/soak.json \\",
        "    .venv/bin/pytest tests/system/test_soak.py   # the 10-minute soak",
        ".venv/bin/python -m tests.system.report runs/reliability/results.json "
        "runs/reliability/soak.json",
        "```",
        "",
    ]
    for run in runs:
        lines.append(
            f"- `{run['command']}`: {run['started']}, {run['seconds']:g} s, {run['machine']}."
        )
    lines += [
        "",
        "| Scenario | Injected | Observed | Numbers | Result |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        for row in run["rows"]:
            cells = [row["scenario"], row["injected"], row["observed"], cell(row["numbers"])]
            result = f"{row['outcome']} (`{row['test'].split('::')[-1]}`)"
            lines.append("| " + " | ".join(map(escape, [*cells, result])) + " |")
    lines += [
        "",
        "## Covered by the other suites",
        "",
        "Not repeated by the system suite; `make test` runs them too.",
        "",
        "| Scenario | Test |",
        "|---|---|",
    ]
    lines += [f"| {escape(what)} | `{test}` |" for what, test in COVERED]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", type=Path, default=[RESULTS])
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    args.out.write_text(render([load(path) for path in args.results]))
    print(json.dumps({"wrote": str(args.out), "runs": [str(p) for p in args.results]}))


if __name__ == "__main__":
    main()

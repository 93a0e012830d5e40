"""Redis killed with SIGKILL while cameras stream and uploads run, then restarted from its
append-only file: every clip it had accepted is classified exactly once, the services reconnect
by themselves, and /readyz says not-ready for the outage.

tests/service/test_queue.py covers a Redis that comes back empty (groups re-created).
"""

import signal
import time
from collections import Counter

from service.clips import decode
from service.queue.redis import lane_key
from tests.servers import wait_for
from tests.system.deployment import CAMERAS, System, metric
from tests.system.load import Uploads, doubled, seqs

OUTAGE_S = 4.0


def lanes(system: System) -> dict[str, dict[str, str]]:
    """Lane -> {clip id: stream} of every clip Redis holds, queued or delivered."""
    store = system.store()
    held = {}
    for lane in ("files", "live"):
        entries = store.xrange(lane_key(lane))
        held[lane] = {decode(f[b"clip"]).id: f[b"stream"].decode() for _, f in entries}
    return held


def results_of(system: System, clip_ids) -> dict[str, bool]:
    store = system.store()
    return {i: bool(store.exists(f"lumos:result:{i}")) for i in clip_ids}


def test_redis_killed_mid_work_loses_and_duplicates_nothing(system, record, clip_video):
    with system.client() as client:
        stale_before = sum(
            metric(client, "lumos_stream_frames_dropped_total", stream=c, reason="stale")
            for c in CAMERAS
        )
    later = Uploads(system, clip_video, threads=1, pause_s=1.0, params={"async": "true"})
    with Uploads(system, clip_video, threads=2) as uploads, later:
        wait_for(lambda: uploads.ok_after(0), 60, "uploads to run")
        # Inference frozen while it holds clips, so that Redis holds work both delivered and
        # queued when it dies; the worker resumes during the outage, its batch unstored.
        wait_for(lambda: system.held_by("infer"), 60, "inference to hold clips", every=0.01)
        system.workers["infer"].send_signal(signal.SIGSTOP)
        time.sleep(1.5)
        pending = system.held_by("infer")
        held = lanes(system)
        system.redis.kill()
        crashed = time.monotonic()
        system.workers["infer"].send_signal(signal.SIGCONT)

        during = []
        with system.client(timeout=30) as client:
            while time.monotonic() - crashed < OUTAGE_S:
                asked = time.monotonic()
                answer = client.get("/readyz")
                during.append((answer.status_code, time.monotonic() - asked))
            system.redis.start()
            restarted, restarted_wall = time.monotonic(), time.time()
            wait_for(lambda: client.get("/readyz").status_code == 200, 60, "ready again")
            ready_s = time.monotonic() - restarted
            wait_for(lambda: uploads.ok_after(restarted), 90, "an upload classified again")
            upload_s = time.monotonic() - restarted
            for camera_id in CAMERAS:
                wait_for(
                    lambda c=camera_id: System.predictions(client, c, restarted_wall),
                    60,
                    f"{camera_id} delivering again",
                )
            camera_s = time.monotonic() - restarted
    store = system.store()
    wait_for(lambda: store.xlen(lane_key("files")) == 0, 60, "the upload lane to drain")
    # Asynchronous uploads caught by the outage end answered too, never pending for ever.
    polls = [a.poll for a in later.answers if a.status == 202]
    with system.client() as client:

        def settled() -> dict[str, str] | None:
            records = [client.get(poll).json() for poll in polls]
            states = [
                r["status"] if r["status"] != "failed" else r["problem"]["reason"] for r in records
            ]
            return None if "pending" in states else dict(Counter(states))

        async_outcomes = wait_for(settled, 60, "every asynchronous upload answered")
    files = results_of(system, held["files"])
    live = results_of(system, held["live"])
    with system.client() as client:
        stale = (
            sum(
                metric(client, "lumos_stream_frames_dropped_total", stream=c, reason="stale")
                for c in CAMERAS
            )
            - stale_before
        )
        ready_after = client.get("/readyz").json()
    duplicated = sum(doubled(seqs(store, stream)) for stream in set(held["files"].values()))
    unanswered = sum(1 for ok in live.values() if not ok)
    record(
        "Redis killed (SIGKILL) and restarted from its AOF",
        "SIGKILL of redis-server (appendfsync always), inference frozen 1.5 s before while "
        f"holding clips, so that clips were both delivered and queued; restarted after "
        f"{OUTAGE_S:g} s; 2 cameras and 2 upload clients running throughout",
        "every upload clip Redis held classified exactly once; live clips classified or dropped "
        "as stale (counted); /readyz 503 and uploads 503 store_unavailable during the outage; "
        "asynchronous uploads caught by it answered once it ended; api, ingest and infer "
        "reconnected by themselves",
        upload_clips_held=len(files),
        upload_clips_delivered_unacked=pending,
        upload_clips_classified=sum(files.values()),
        upload_clips_lost=len(files) - sum(files.values()),
        upload_clips_duplicated=duplicated,
        live_clips_held=len(live),
        live_clips_classified=len(live) - unanswered,
        live_stale_drops_counted=stale,
        readyz_during_outage=sorted({code for code, _ in during}),
        readyz_slowest_answer_s=round(max(s for _, s in during), 2),
        ready_again_s=round(ready_s, 1),
        uploads_again_s=round(upload_s, 1),
        cameras_again_s=round(camera_s, 1),
        upload_answers=uploads.statuses(),
        async_upload_answers=later.statuses(),
        async_uploads_ended=async_outcomes,
    )
    assert files and all(files.values()), files
    assert duplicated == 0
    assert unanswered <= stale
    assert {code for code, _ in during} == {503}
    assert ready_after["status"] == "ready"
    assert all(system.alive().values()), system.alive()
    assert {a.status for a in uploads.answers} <= {200, 503}
    assert {a.reason for a in uploads.answers if a.status == 503} <= {
        "store_unavailable",
        "overloaded",
    }
    assert polls and set(async_outcomes) <= {"done", "store_unavailable"}, async_outcomes
    wait_for(lambda: not system.uploads_left(), 10, "temporary upload files to be deleted")

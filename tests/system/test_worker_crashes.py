"""Workers killed with SIGKILL mid-work and restarted, while uploads run and the cameras stream:
no upload clip lost, none classified twice, the cameras reassigned within the lease time and
shared again once the worker is back.

tests/service/test_workers.py covers the same two faults on bare workers (12 queued clips, four
cameras), without an API, uploads or restarts.
"""

import re
import signal
import time

from bench.servers import wait_for
from service.queue.redis import lane_key
from tests.system.deployment import CAMERAS, LEASE_MS, System, metric
from tests.system.load import Uploads, upload_ledger


def test_workers_killed_mid_work_lose_and_duplicate_nothing(system, record, clip_video):
    started = time.time()
    with system.client() as client:
        cut_before = metric(client, "lumos_stream_clips_total", stream="upload")
        inferred_before = metric(client, "lumos_inference_batch_size_sum")
    with Uploads(system, clip_video, threads=3) as uploads:
        # Inference: killed while it holds upload clips (delivered, not yet acknowledged).
        # Frozen first (SIGSTOP) the moment it holds some, so that it dies holding them.
        log = system.root / "logs" / "infer.log"
        wait_for(lambda: system.held_by("infer"), 60, "inference to hold clips", every=0.01)
        system.workers["infer"].send_signal(signal.SIGSTOP)
        held = system.held_by("infer")
        system.kill("infer")
        killed = time.monotonic()
        log_start = log.stat().st_size
        system.start_worker("infer")
        wait_for(lambda: uploads.ok_after(killed + 0.5), 180, "uploads answered again")
        infer_back_s = time.monotonic() - killed

        # Ingest: one worker killed; the other takes its cameras when the leases lapse.
        before = system.owners()
        lost_worker = system.worker_ids["ingest-a"]
        survivor = system.worker_ids["ingest-b"]
        assert lost_worker in before.values(), before
        system.kill("ingest-a")
        killed, killed_wall = time.monotonic(), time.time()
        wait_for(lambda: set(system.owners().values()) == {survivor}, 30, "the survivor to own all")
        takeover_s = time.monotonic() - killed
        with system.client() as client:
            for camera_id in CAMERAS:
                wait_for(
                    lambda c=camera_id: System.predictions(client, c, killed_wall),
                    60,
                    f"{camera_id} delivering again",
                )
        delivering_s = time.monotonic() - killed

        system.start_worker("ingest-a")
        back = time.monotonic()
        wait_for(
            lambda: len(set(system.owners().values())) == len(CAMERAS),
            180,
            "the cameras shared again",
        )
        rebalanced_s = time.monotonic() - back
    wait_for(lambda: system.store().xlen(lane_key("files")) == 0, 60, "the upload lane to drain")
    ledger = upload_ledger(system, cut_before, started)
    with system.client() as client:
        inferred = metric(client, "lumos_inference_batch_size_sum") - inferred_before
    with log.open() as restarted:
        restarted.seek(log_start)
        reclaimed = sum(int(n) for n in re.findall(r"reclaimed (\d+) clips", restarted.read()))
    record(
        "Inference worker killed (SIGKILL) mid-batch, restarted",
        f"SIGKILL while it held {held} upload clips unacknowledged; a new worker started; "
        "3 upload clients running",
        "the new worker reclaimed the dead one's clips after claim_idle_ms; while none ran, "
        "uploads were refused at the door once the lane was full (503) or timed out waiting "
        "(504, their clips classified later); every clip classified once (first result wins)",
        clips_held_at_kill=held,
        clips_reclaimed=reclaimed,
        uploads_answered_again_s=round(infer_back_s, 1),
        upload_answers=uploads.statuses(),
    )
    record(
        "Ingest worker killed (SIGKILL), restarted",
        f"SIGKILL of the worker holding {sum(1 for o in before.values() if o == lost_worker)} "
        f"of {len(CAMERAS)} cameras; restarted once the other had taken them",
        f"the other worker took its cameras within the lease ({LEASE_MS} ms + one renewal "
        "tick); shared again (fair share) after the restart",
        lease_ms=LEASE_MS,
        takeover_s=round(takeover_s, 1),
        cameras_delivering_again_s=round(delivering_s, 1),
        shared_again_after_restart_s=round(rebalanced_s, 1),
    )
    record(
        "Worker crashes: upload clip ledger",
        "both kills above, with uploads running throughout",
        "clips cut by the API = clips classified; no video has two results for a clip",
        clips_cut=ledger.cut,
        clips_classified=ledger.classified,
        clips_lost=ledger.lost,
        clips_duplicated=ledger.duplicated,
        clips_inferred_total=int(inferred),
    )
    assert held > 0 and ledger.cut > 0
    assert ledger.lost == 0 and ledger.duplicated == 0, ledger
    # While inference is away the lane fills and uploads are refused at the door, or time out
    # waiting (their clips are classified once it is back): never an error, never a lost clip.
    assert set(uploads.statuses()) <= {"200", "503 overloaded", "504 inference_timeout"}
    assert takeover_s <= LEASE_MS / 1000 * 4 / 3 + 3.0
    assert all(system.alive().values()), system.alive()

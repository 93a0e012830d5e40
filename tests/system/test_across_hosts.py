"""The service across seven hosts (network namespaces), faulted between hosts while uploads run
and two cameras stream: a link cut and restored, a slow then stalled Redis link, an ingest host
and an inference host killed. No accepted upload clip is lost or classified twice, the cameras
move within the lease time, and every live clip not classified is one the rules dropped and
counted. Beside the faults it measures what the run cost, and checks docs/scaling.md's sizing
model (bench/sizing.py) against it (tests/system/sizing.py).

The file sorts before the suite's shared single-host deployment starts, so the two never run at
the same time on a small machine.
"""

import re
import signal
import statistics
import time

import pytest

from bench.servers import free_port, wait_for
from service.queue.redis import lane_key
from tests.system import hosts as network
from tests.system.deployment import CAMERAS, LEASE_MS, Metrics
from tests.system.load import Uploads, upload_ledger
from tests.system.multihost import (
    SETTINGS,
    Deployment,
    HostCamera,
    HostRedis,
    Sampler,
    hosts_for,
)
from tests.system.relay import Relay
from tests.system.sizing import (
    Counters,
    Run,
    UnitCosts,
    camera_bytes,
    check_cpu_and_traffic,
    check_memory,
    idle_cores,
    redis_sample,
    result_bytes,
    unit_costs_row,
)

pytestmark = pytest.mark.skipif(not network.available(), reason="network namespaces need root")

DELAY_S = 0.02
STALL_S = 3.0
CUT_S = 4.0
IDLE_S = 3.0
ROLES = {"api": "api", "ingest-a": "ingest", "ingest-b": "ingest", "infer-a": "infer"}


def recovery(uploads: Uploads, since: float, timeout: float = 90) -> float:
    """Seconds from `since` until an upload sent after it was answered 200."""
    wait_for(lambda: uploads.ok_after(since), timeout, "an upload answered again")
    answered = [a.sent + a.seconds for a in uploads.answers if a.status == 200 and a.sent > since]
    return round(min(answered) - since, 1)


def results_stored(deployment: Deployment) -> int:
    return sum(1 for _ in deployment.store().scan_iter("lumos:result:*", count=1000))


def served_during(uploads: Uploads, start: float, end: float) -> int:
    return sum(1 for a in uploads.answers if a.status == 200 and start < a.sent < end)


def test_faults_between_hosts_lose_and_duplicate_no_accepted_clip(
    tiny_artifact, tmp_path, clip_video, record
):
    began = time.monotonic()
    with hosts_for() as (hosts, stack):
        store = HostRedis(hosts, "redis", tmp_path / "redis")
        stack.callback(store.kill)
        store.start()
        camera = HostCamera(hosts)
        stack.callback(camera.kill)
        camera.start()
        relay = Relay((hosts.gateway, free_port()), (store.address, store.port))
        relay.delay_s = DELAY_S
        stack.enter_context(relay)
        deployment = Deployment(hosts, tmp_path, tiny_artifact, {"LUMOS_REDIS_URL": store.url})
        deployment.store_url = store.url
        stack.callback(deployment.stop)
        for host, role in ROLES.items():
            deployment.start(host, role)
        relayed = f"redis://{relay.listen[0]}:{relay.listen[1]}/0"
        deployment.start("infer-b", "infer", LUMOS_REDIS_URL=relayed)
        deployment.wait_ready()
        with deployment.client() as client:
            for camera_id, path in CAMERAS.items():
                answer = client.post("/v1/streams", json={"id": camera_id, "url": camera.url(path)})
                assert answer.status_code == 201, answer.text
        started = time.monotonic()
        startup_s = started - began

        lag = Sampler(deployment.lag)
        probe = deployment.store()
        memory = Sampler(lambda: redis_sample(probe))
        with lag, memory, Uploads(deployment, clip_video, threads=2) as uploads:
            wait_for(lambda: uploads.ok_after(0), 120, "a first upload classified")
            with deployment.client() as client:
                for camera_id in CAMERAS:
                    wait_for(
                        lambda c=camera_id: client.get(f"/v1/streams/{c}/predictions").json()[
                            "results"
                        ],
                        60,
                        f"{camera_id} predictions",
                    )

            # What the parts cost is counted from here, once all are warm (imports, the model);
            # the sizing model's unit costs are measured beside it (tests/system/sizing.py).
            warm_cpu, warm_results = deployment.cpu_seconds(), results_stored(deployment)
            warm_traffic, warm_uploads = deployment.store().info("stats"), len(uploads.answers)
            warm_counters = Counters.read(deployment)
            warm = time.monotonic()
            camera_memory = camera_bytes(deployment.store(), len(CAMERAS))
            units = UnitCosts(
                camera.url(CAMERAS["north"]), clip_video, tiny_artifact, int(SETTINGS["batch_max"])
            ).start()

            # 1. infer-b's Redis link stalls: nothing passes either way, connections stay open.
            wait_for(lambda: deployment.held_by("infer-b"), 30, "infer-b holding clips", 0.02)
            relay.stall()
            stalled = time.monotonic()
            held_stall = deployment.held_by("infer-b")
            time.sleep(STALL_S)
            relay.resume()
            resumed = time.monotonic()
            stall_row = dict(
                clips_held_at_stall=held_stall,
                uploads_served_during=served_during(uploads, stalled, resumed),
                recovery_s=recovery(uploads, resumed),
            )

            # 2. infer-a's link cut while it holds clips (a batch takes milliseconds: tried
            # again when it had just acknowledged), then restored.
            for _ in range(10):
                wait_for(lambda: deployment.held_by("infer-a"), 30, "infer-a holding", 0.02)
                hosts.cut("infer-a")
                cut = time.monotonic()
                if held_cut := deployment.held_by("infer-a"):
                    break
                hosts.restore("infer-a")
            time.sleep(CUT_S)
            hosts.restore("infer-a")
            restored = time.monotonic()
            cut_row = dict(
                clips_held_at_cut=held_cut,
                uploads_served_during=served_during(uploads, cut, restored),
                recovery_s=recovery(uploads, restored),
            )

            # 3. The ingest host holding a camera dies; the other takes it within the lease.
            wait_for(lambda: "ingest-a" in deployment.owners().values(), 30, "ingest-a's share")
            deployment.kill("ingest-a")
            killed, killed_wall = time.monotonic(), time.time()
            wait_for(
                lambda: set(deployment.owners().values()) == {"ingest-b"},
                30,
                "ingest-b to own every camera",
            )
            takeover_s = time.monotonic() - killed
            with deployment.client() as client:
                for camera_id in CAMERAS:
                    wait_for(
                        lambda c=camera_id: client.get(
                            f"/v1/streams/{c}/predictions", params={"since": killed_wall}
                        ).json()["results"],
                        60,
                        f"{camera_id} delivering again",
                    )
            delivering_s = time.monotonic() - killed

            # 4. The inference host dies mid-batch: frozen holding clips (thawed and tried again
            # when it had just acknowledged them), then SIGKILL.
            infer_a = deployment.processes["infer-a"]
            for _ in range(10):
                wait_for(lambda: deployment.held_by("infer-a"), 30, "infer-a holding", 0.01)
                infer_a.send_signal(signal.SIGSTOP)
                if held_kill := deployment.held_by("infer-a"):
                    break
                infer_a.send_signal(signal.SIGCONT)
            deployment.kill("infer-a")
            infer_killed = time.monotonic()
            infer_recovery_s = recovery(uploads, infer_killed)
        faults_s = time.monotonic() - started
        store_client = deployment.store()
        wait_for(lambda: store_client.xlen(lane_key("files")) == 0, 60, "the upload lane drained")
        ledger = upload_ledger(deployment, 0.0, 0.0)  # a fresh deployment: every upload

        # Live clips: stop the cameras, let the lane drain, then account for every clip cut.
        with deployment.client() as client:
            for camera_id in CAMERAS:
                assert client.delete(f"/v1/streams/{camera_id}").status_code in (200, 204)
            wait_for(lambda: store_client.xlen(lane_key("live")) == 0, 30, "the live lane drained")
            time.sleep(1.0)
            found = Metrics.read(client)
            live_cut = sum(found.total("lumos_stream_clips_total", stream=c) for c in CAMERAS)
            dropped = {
                reason: sum(
                    found.total("lumos_stream_frames_dropped_total", stream=c, reason=reason)
                    for c in CAMERAS
                )
                for reason in ("stale", "overflow", "queue_error")
            }
            # Every part alive does nothing now: what a process costs idle.
            pids = {h: p.pid for h, p in deployment.processes.items() if p.poll() is None}
            idle = idle_cores(pids, IDLE_S)
        counted = Counters.read(deployment).since(warm_counters)
        ended = time.monotonic()
        live_stored = sum(store_client.zcard(f"lumos:results:{c}") for c in CAMERAS)
        reclaimed = sum(
            int(n) for n in re.findall(r"reclaimed (\d+) clips", deployment.log("infer-b"))
        )
        alive = {h: p.poll() is None for h, p in deployment.processes.items()}
        cpu = {h: s - warm_cpu.get(h, 0.0) for h, s in deployment.cpu_seconds().items()}
        traffic = {
            way: store_client.info("stats")[f"total_net_{way}_bytes"]
            - warm_traffic[f"total_net_{way}_bytes"]
            for way in ("input", "output")
        }
        classified = results_stored(deployment) - warm_results
        redis_memory = store_client.info("memory")
        kept = [k for c in CAMERAS for k in store_client.zrange(f"lumos:results:{c}", 0, 49)]
        result_json = statistics.mean(store_client.strlen(b"lumos:result:" + k) for k in kept)
        uploaded = len(uploads.answers) - warm_uploads
        units.join()
        run = Run(
            counted=counted,
            uploads=uploaded,
            results_written=classified,
            results_read=uploaded * units.clips_per_upload,
            result_json_bytes=round(result_json),
            cpu_s=cpu,
            alive_s={h: min(deployment.killed.get(h, ended), ended) - warm for h in cpu},
            idle=idle,
            traffic_bytes=sum(traffic.values()),
        )
        checked = check_cpu_and_traffic(run, units)
        checked["redis_memory_kb"] = check_memory(
            memory.values,
            units,
            redis_memory["used_memory_startup"],
            redis_memory["used_memory_peak"],
            result_bytes(store_client),
            camera_memory,
        )
    wall_s = time.monotonic() - began

    topology = "7 hosts (redis, api, ingest-a/b, infer-a/b, camera); uploads from 2 clients"
    record(
        "Hosts: Redis link of an inference host slowed, then stalled",
        f"{topology}; a relay adds {DELAY_S * 1000:.0f} ms per chunk each way on infer-b's "
        f"Redis link throughout, then holds every byte for {STALL_S:.0f} s",
        "infer-a serves on; infer-b's clips are reclaimed after claim_idle_ms, and its late "
        "results lose to the first (SET NX)",
        **stall_row,
    )
    record(
        "Hosts: inference host's link cut and restored",
        f"`ip link set down` on infer-a's only link for {CUT_S:.0f} s while it held clips",
        "infer-b reclaims the clips; infer-a's TCP connections resume when the link returns",
        **cut_row,
    )
    record(
        "Hosts: ingest host killed",
        "SIGKILL of ingest-a's lumos ingest while it held a camera",
        f"ingest-b takes the camera within the lease ({LEASE_MS} ms + one renewal tick)",
        takeover_s=round(takeover_s, 1),
        cameras_delivering_again_s=round(delivering_s, 1),
    )
    record(
        "Hosts: inference host killed mid-batch",
        f"SIGSTOP then SIGKILL of infer-a while it held {held_kill} clips",
        "infer-b reclaims them after claim_idle_ms; each classified once",
        clips_held_at_kill=held_kill,
        clips_reclaimed_by_infer_b=reclaimed,
        recovery_s=infer_recovery_s,
    )
    record(
        "Hosts: clip ledger over all four faults",
        f"the faults above; the API was ready {startup_s:.0f} s after its start",
        "upload clips cut = classified, none twice; live clips cut = classified + dropped by "
        "the staleness / overflow rules (counted)",
        upload_clips_cut=ledger.cut,
        upload_clips_classified=ledger.classified,
        upload_clips_lost=ledger.lost,
        upload_clips_duplicated=ledger.duplicated,
        upload_answers=uploads.statuses(),
        live_clips_cut=int(live_cut),
        live_clips_classified=live_stored,
        live_drops_counted={k: int(v) for k, v in dropped.items()},
        group_lag_max=max(lag.values),
        group_lag_median=statistics.median(lag.values),
        faults_s=round(faults_s),
        test_wall_s=round(wall_s),
    )
    record(
        "Hosts: resources over the run (docs/scaling.md checks its model against these)",
        f"the run above, from the first fault on (every part warm): "
        f"{len(uploads.answers) - warm_uploads} uploads of 4 clips (36 frames, 64x48), 2 cameras "
        "at 96x72 and 10 fps, tiny model (8 x 32 x 32 clips), fp32, 1 thread",
        "CPU seconds of each process (from /proc); Redis bytes in and out; Redis memory at its "
        "peak over the whole run",
        cpu_s={host: round(seconds, 1) for host, seconds in sorted(cpu.items())},
        uploads=len(uploads.answers) - warm_uploads,
        clips_classified=classified,
        redis_net_in_kb=round(traffic["input"] / 1024),
        redis_net_out_kb=round(traffic["output"] / 1024),
        redis_used_memory_peak_kb=round(redis_memory["used_memory_peak"] / 1024),
        redis_used_memory_kb=round(redis_memory["used_memory"] / 1024),
        result_json_bytes=round(result_json),
        seconds=round(ended - warm),
    )
    record(
        "Hosts: the sizing model against the run (docs/scaling.md)",
        "the run above; beside it, on this process's thread clocks: the camera's stream decoded "
        "as an ingest worker does, the upload decoded, the model per batch size; each process "
        f"idle for {IDLE_S:.0f} s at the end",
        "bench/sizing.py's formula for the run's work (frames, clips, uploads, results, "
        "connections) against the CPU seconds of each role and Redis's bytes; Redis memory at "
        "every 0.5 s sample",
        unit_costs=unit_costs_row(units, idle),
        **checked,
    )
    assert ledger.cut > 0 and ledger.lost == 0 and ledger.duplicated == 0, ledger
    assert set(uploads.statuses()) <= {"200", "503 overloaded", "504 inference_timeout"}
    assert held_cut > 0 and held_kill > 0 and reclaimed > 0
    assert takeover_s <= LEASE_MS / 1000 * 4 / 3 + 3.0
    # Every live clip is classified or dropped by a counted rule; one clip per camera may die
    # with the ingest host (cut, not yet queued) or with the subscription's removal.
    assert live_stored <= live_cut <= live_stored + sum(dropped.values()) + 2 * len(CAMERAS)
    assert {h: a for h, a in alive.items() if h != "ingest-a" and h != "infer-a"} == {
        "api": True,
        "ingest-b": True,
        "infer-b": True,
    }
    # The sizing model (bench/sizing.py) accounts for what the run used: Redis's bytes closely;
    # CPU as loosely as a loaded, shared 2-core machine needs (the ingest's few CPU-seconds move
    # most: 0.66 to 1.26 over twelve runs), yet tightly enough to refuse decoding alone as the
    # ingest's cost (0.19). docs/scaling.md has the ratios.
    assert 0.8 <= checked["redis_memory_kb"]["at_peak"]["ratio"] <= 1.25, checked
    assert 0.8 <= checked["redis_traffic_bytes"]["ratio"] <= 1.25, checked
    for kind in ("ingest", "infer", "api"):
        assert 0.4 <= checked[f"{kind}_cpu_s"]["ratio"] <= 2.5, checked

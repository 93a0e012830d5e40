"""Redis that fails over: a primary and a replica on two hosts, three Sentinels (one on each Redis
host and one on the service's), the service told only where the Sentinels are. The primary is
killed while uploads run; Sentinel promotes the replica and the service carries on against it.

Replication is asynchronous, so the test says what the failover lost: with
LUMOS_REDIS_WAIT_REPLICAS=1 every queued upload clip is on the replica before its upload counts as
accepted, so no accepted clip is lost; what the primary had written and not yet sent (a result,
an acknowledgement) is counted. It also measures what WAIT costs a put.
"""

import statistics
import time

import pytest
import redis

from bench.servers import wait_for
from service.queue.redis import lane_key
from tests.system import hosts as network
from tests.system.load import Uploads, seqs, upload_ledger, upload_streams
from tests.system.multihost import (
    SENTINEL_PORT,
    Deployment,
    HostRedis,
    HostSentinel,
    hosts_for,
)

pytestmark = pytest.mark.skipif(not network.available(), reason="network namespaces need root")

SENTINEL_HOSTS = ("redis", "redis-b", "api")
PUTS = 200


def put_seconds(store: redis.Redis, clip: bytes, replicas: int) -> list[float]:
    """Each of PUTS upload-lane puts as the queue makes them (XADD + XLEN, and WAIT when
    `replicas`), timed from the test's host, on a lane of their own."""
    times = []
    for _ in range(PUTS):
        began = time.perf_counter()
        with store.pipeline(transaction=False) as pipe:
            pipe.xadd("bench:wait", {"clip": clip, "stream": "bench"})
            pipe.xlen("bench:wait")
            if replicas:
                pipe.execute_command("WAIT", replicas, 1000)
            pipe.execute()
        times.append(time.perf_counter() - began)
    store.delete("bench:wait")
    return times


def test_primary_killed_under_load_the_replica_takes_over_and_no_accepted_clip_is_lost(
    tiny_artifact, tmp_path, clip_video, record
):
    with hosts_for("redis-b") as (hosts, stack):
        primary = HostRedis(hosts, "redis", tmp_path / "redis")
        stack.callback(primary.kill)
        primary.start()
        follow = ("--replicaof", primary.address, str(primary.port))
        replica = HostRedis(hosts, "redis-b", tmp_path / "redis-b", *follow)
        stack.callback(replica.kill)
        replica.start()
        for host in SENTINEL_HOSTS:
            sentinel = HostSentinel(hosts, host, tmp_path / f"sentinel-{host}", "redis", quorum=2)
            stack.callback(sentinel.kill)
            sentinel.start()
        sentinels = ",".join(f"{hosts.addresses[h]}:{SENTINEL_PORT}" for h in SENTINEL_HOSTS)
        watcher = redis.Redis(
            hosts.addresses["api"], SENTINEL_PORT, socket_timeout=2, decode_responses=True
        )

        def master() -> str:
            return watcher.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "lumos")[0]

        def sees_all() -> bool:
            fields = watcher.execute_command("SENTINEL", "MASTER", "lumos")
            found = dict(zip(fields[::2], fields[1::2], strict=True))
            return found["num-slaves"] == "1" and found["num-other-sentinels"] == "2"

        wait_for(sees_all, 30, "the Sentinels to see the replica and each other")
        deployment = Deployment(
            hosts,
            tmp_path,
            tiny_artifact,
            {"LUMOS_REDIS_SENTINELS": sentinels, "LUMOS_REDIS_WAIT_REPLICAS": "1"},
        )
        deployment.store_url = primary.url
        stack.callback(deployment.stop)
        deployment.start("api", "serve")

        # What WAIT costs a put, primary and replica on two hosts: measured before any load.
        clip = bytes(8 * 32 * 32 * 3)  # the tiny model's clip: 8 frames of 32 x 32 RGB
        store = redis.Redis(primary.address, primary.port)
        plain = put_seconds(store, clip, 0)
        waited = put_seconds(store, clip, 1)
        deployment.wait_ready()

        with Uploads(deployment, clip_video, threads=2) as uploads:
            wait_for(lambda: uploads.ok_after(0), 120, "a first upload classified")
            time.sleep(2.0)
            before = {key for key in store.scan_iter("lumos:result:*", count=1000)}
            acked_before = store.info("replication")["master_repl_offset"]
            primary.kill()
            killed = time.monotonic()
            wait_for(lambda: master() == replica.address, 60, "Sentinel to promote the replica")
            promoted_s = time.monotonic() - killed
            wait_for(lambda: uploads.ok_after(killed + promoted_s), 90, "uploads served again")
            served_s = time.monotonic() - killed
            time.sleep(3.0)
        deployment.store_url = replica.url
        new = deployment.store()
        wait_for(lambda: new.xlen(lane_key("files")) == 0, 60, "the upload lane drained")
        ledger = upload_ledger(deployment, 0.0, 0.0)
        # An upload's clips are queued in order, each put returning once a replica holds it: a
        # clip lost after it was accepted leaves a hole before its upload's later clips. What
        # the ledger misses beyond holes is the put that failed with the primary (the upload
        # answered 503 store_unavailable, its clips never accepted).
        positions = [seqs(new, stream) for stream in upload_streams(new)]
        holes = sum(max(p) + 1 - len(set(p)) for p in positions if p)
        results_lost = sum(1 for key in before if not new.exists(key))
        replica_offset = new.info("replication")["master_repl_offset"]
        alive = deployment.processes["api"].poll() is None

    ms = {
        "put_ms_median": round(statistics.median(plain) * 1000, 2),
        "put_with_wait_ms_median": round(statistics.median(waited) * 1000, 2),
    }
    record(
        "Hosts: Redis primary killed, Sentinel fails over",
        "primary and replica on two hosts, 3 Sentinels (quorum 2, down-after 1 s); `lumos "
        "serve` on a third host knows only the Sentinels; SIGKILL of the primary with 2 upload "
        "clients running; LUMOS_REDIS_WAIT_REPLICAS=1",
        "Sentinel promotes the replica; the service's connections fail, ask the Sentinels again "
        "and reach the new primary; uploads refused (503 store_unavailable) or late meanwhile; "
        "no accepted upload clip lost (each on the replica before its upload was accepted)",
        promoted_s=round(promoted_s, 1),
        uploads_served_again_s=round(served_s, 1),
        upload_clips_cut=ledger.cut,
        upload_clips_classified=ledger.classified,
        upload_clips_refused=ledger.lost - holes,
        accepted_upload_clips_lost=holes,
        upload_clips_duplicated=ledger.duplicated,
        results_stored_before_kill_lost=results_lost,
        replication_offset_at_kill=acked_before,
        replica_offset_after=replica_offset,
        upload_answers=uploads.statuses(),
        **ms,
        put_samples=PUTS,
    )
    assert alive
    assert ledger.cut > 0 and holes == 0 and ledger.duplicated == 0, ledger
    assert ledger.lost - holes <= uploads.statuses().get("503 store_unavailable", 0)
    assert set(uploads.statuses()) <= {
        "200",
        "503 store_unavailable",
        "503 overloaded",
        "504 inference_timeout",
    }, uploads.statuses()

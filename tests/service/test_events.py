"""Events without a camera: the rules step, segments, both stores, the tracker resuming a dead
worker's open event, retention, and signed webhook delivery with retries and dead letters."""

import asyncio
import os
import socket
import time

import pytest

from bench.servers import TEST_NETWORKS, RedisServer, WebhookReceiver
from service.cameras import Camera
from service.events.evidence import EvidenceStore
from service.events.notify import Notifier
from service.events.rules import Rules, TrackerState, step
from service.events.segments import segments
from service.events.store import MemoryEvents, Query, RedisEvents
from service.events.tracker import EventServices, EventTracker
from service.queue.base import ClipResult
from service.queue.memory import MemoryResults
from service.settings import Settings
from service.urls import webhook_destinations
from service.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookNotifier, sign, verify
from tests.service.clips import metric
from tests.service.test_queue import result
from tests.system.test_attack_classes import Listener, _redirector


def clip(seq: int, label: str, score: float, stream: str = "yard") -> ClipResult:
    other = "Walk" if label != "Walk" else "Run"
    r = result(f"c{seq}", stream, start=1000.0 + seq, **{label: score, other: 1 - score})
    return r.model_copy(update={"seq": seq})


def feed(rules: Rules, state: TrackerState, labels: list[tuple[str, float]]) -> list[tuple]:
    changes = []
    for seq, (label, score) in enumerate(labels, start=state.last_seq + 1):
        changes += [
            (kind, e.id, e.label, e.score)
            for kind, e in step(rules, state, clip(seq, label, score))
        ]
    return changes


def test_rules_open_after_min_clips_close_on_the_first_miss_and_then_cool_down() -> None:
    rules = Rules(labels=["Run"], min_score=0.6, min_clips=2, cooldown_s=3)
    state = TrackerState()
    idle = [("Walk", 0.9), ("Run", 0.5), ("Run", 0.9)]  # not Run, too low, one alone
    assert feed(rules, state, idle) == []
    changes = feed(rules, state, [("Run", 0.7)])  # the second in a row: open, from the first
    assert [c[0] for c in changes] == ["opened"]
    event = state.event
    assert event is not None and (event.start, event.clips, event.score) == (1002.0, 2, 0.9)
    assert [c[0] for c in feed(rules, state, [("Run", 0.95), ("Walk", 0.8)])] == [
        "updated",
        "closed",
    ]
    assert event.score == 0.95 and event.end == 1005.0 and state.event is None
    # Cooldown: three seconds after its end (1005 + 3), two Runs start no event; later ones do.
    assert feed(rules, state, [("Run", 0.9), ("Run", 0.9)]) == []  # clips at 1006, 1007
    assert [c[0] for c in feed(rules, state, [("Run", 0.9), ("Run", 0.9)])] == ["opened"]
    any_label = Rules(min_score=0.8, min_clips=1)
    state = TrackerState()
    assert feed(any_label, state, [("Sit", 0.85)])[0][:1] == ("opened",)
    errored = clip(9, "Sit", 0.9).model_copy(update={"error": "inference failed", "top": []})
    assert [k for k, _ in step(any_label, state, errored)] == ["closed"]


def test_segments_are_the_runs_of_one_label() -> None:
    labels = ["Walk", "Walk", "Run", "Run", "Walk"]
    clips = [clip(i, label, 0.6 + i / 20) for i, label in enumerate(labels)]
    found = segments(clips, frames=16, fps=12.0, stride=16)
    assert [(s.label, s.first_seq, s.last_seq) for s in found] == [
        ("Walk", 0, 1),
        ("Run", 2, 3),
        ("Walk", 4, 4),
    ]
    assert (found[1].start, found[1].end, found[1].peak) == (2.667, 5.25, 0.75)


def run_tracker(services: EventServices, camera: Camera, results: list[ClipResult]) -> None:
    async def body() -> None:
        tracker = EventTracker(camera, camera.rules, services, fps=12.0)
        task = asyncio.create_task(tracker.run())
        for r in results:
            await services.results.put(r)
            tracker.queued(r.clip_id, r.end)
        while tracker._clips:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(body())


def services(tmp_path, store) -> EventServices:
    settings = Settings(event_dir=tmp_path, event_resume_s=30)
    return EventServices(
        store, EvidenceStore(tmp_path), MemoryResults(3600), Notifier(settings), settings
    )


def test_a_new_owner_continues_the_open_event_of_a_dead_worker_or_closes_a_stale_one(tmp_path):
    store = MemoryEvents()
    camera = Camera(id="yard", url="rtsp://h/yard", rules=Rules(labels=["Run"], min_clips=2))
    now = time.time()
    fresh = [
        clip(i, "Run", 0.9).model_copy(update={"start": now + i, "end": now + i + 1})
        for i in range(2)
    ]
    run_tracker(services(tmp_path, store), camera, fresh)  # this worker "dies" mid-event
    (opened,), _ = asyncio.run(store.query(Query()))
    assert opened.status == "open"
    ending = [clip(2, "Run", 0.95), clip(3, "Walk", 0.9)]
    ending = [
        r.model_copy(update={"start": now + 2 + i, "end": now + 3 + i})
        for i, r in enumerate(ending)
    ]
    run_tracker(services(tmp_path, store), camera, ending)  # the next owner
    (event,), total = asyncio.run(store.query(Query()))
    assert total == 1 and event.id == opened.id and event.status == "closed"
    assert (event.clips, event.score, event.evidence) == (3, 0.95, None)  # no frames here

    # An event left open for longer than event_resume_s is closed when the camera restarts.
    state = asyncio.run(store.load_state("yard"))
    state.event = opened.model_copy(update={"id": "f" * 32, "end": now - 100, "status": "open"})
    asyncio.run(store.save_state("yard", state))
    run_tracker(services(tmp_path, store), camera, [])
    stale = asyncio.run(store.get("f" * 32))
    assert stale is not None and stale.status == "closed"
    assert asyncio.run(store.load_state("yard")).event is None


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_stores_filter_page_delete_and_keep_state(kind, tmp_path) -> None:
    async def body(store) -> None:
        rules = Rules(min_clips=1, min_score=0.5)
        for i, (camera, label) in enumerate([("a", "Run"), ("b", "Run"), ("a", "Sit")]):
            state = TrackerState()
            ((_, event),) = step(rules, state, clip(i, label, 0.9, stream=camera))
            await store.put(event)
        events, total = await store.query(Query(limit=2))
        assert total == 3 and [e.label for e in events] == ["Sit", "Run"]  # newest first
        assert [e.camera for e in (await store.query(Query(camera="a")))[0]] == ["a", "a"]
        only, total = await store.query(Query(label="Run", offset=1))
        assert total == 2 and only[0].camera == "a"
        assert (await store.query(Query(since=1001.0, until=1002.0)))[1] == 1
        assert [e.label for e in await store.changed(0)] == ["Run", "Run", "Sit"]
        assert await store.delete(events[0].id) and not await store.delete(events[0].id)
        assert await store.get(events[0].id) is None
        state = TrackerState(last_seq=7)
        await store.save_state("a", state)
        assert (await store.load_state("a")).last_seq == 7
        assert (await store.load_state("nobody")).event is None

    if kind == "memory":
        asyncio.run(body(MemoryEvents()))
        return
    from redis.asyncio import Redis

    with RedisServer() as server:

        async def redis_body() -> None:
            client = Redis.from_url(server.url)
            await body(RedisEvents(client))
            await client.aclose()

        asyncio.run(redis_body())


def test_retention_drops_old_evidence_then_the_oldest_beyond_the_byte_limit(tmp_path) -> None:
    evidence = EvidenceStore(tmp_path)
    ids = [f"{i:032x}" for i in range(3)]
    for age, event_id in zip((10_000, 30, 20), ids, strict=True):
        (tmp_path / event_id).mkdir()
        (tmp_path / event_id / "clip.mp4").write_bytes(b"x" * 1000)
        old = time.time() - age
        os.utime(tmp_path / event_id / "clip.mp4", (old, old))
    assert evidence.prune(max_age_s=3600, max_bytes=10_000) == [ids[0]]
    assert evidence.prune(max_age_s=3600, max_bytes=1500) == [ids[1]]
    assert evidence.path(ids[2], "clip", False) is not None
    assert evidence.path("../etc", "clip", False) is None


def test_webhooks_are_signed_retried_and_dead_lettered(tmp_path) -> None:
    body = b'{"a":1}'
    stamp = str(int(time.time()))
    assert verify("k", stamp, sign("k", stamp, body), body)
    assert not verify(
        "k", str(int(time.time()) - 600), sign("k", str(int(time.time()) - 600), body), body
    )
    assert not verify("k", "soon", sign("k", "soon", body), body)
    ((_, event),) = step(Rules(min_clips=1), TrackerState(), clip(0, "Run", 0.9))
    # A port held but not listening: refused every time, and nobody else can take it meanwhile.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    dead = f"http://user:secret@127.0.0.1:{holder.getsockname()[1]}/hook"
    before = {
        o: metric("lumos_notifications_total", channel="webhook", outcome=o)
        for o in ("delivered", "retried", "dead_letter")
    }

    def delivered() -> float:
        return metric("lumos_notifications_total", channel="webhook", outcome="delivered")

    async def main(receiver: WebhookReceiver) -> None:
        destinations = webhook_destinations(Settings(webhook_networks=TEST_NETWORKS))
        notifier = WebhookNotifier("k", 1.0, attempts=3, backoff_s=0.01, destinations=destinations)
        task = asyncio.create_task(notifier.run())
        notifier.send(dead, event)
        notifier.send(receiver.url, event)
        # The receiver answers before the notifier counts the delivery: wait for the count.
        while delivered() == before["delivered"] or not receiver.requests:
            assert not task.done()
            await asyncio.sleep(0.05)
        task.cancel()

    with holder, WebhookReceiver() as receiver:
        asyncio.run(asyncio.wait_for(main(receiver), 30))
    headers, raw = receiver.requests[0]
    assert verify("k", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], raw)
    after = {o: metric("lumos_notifications_total", channel="webhook", outcome=o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {
        "delivered": 1,
        "retried": 2,
        "dead_letter": 1,
    }


def test_event_webhooks_never_follow_a_redirect_to_a_refused_host() -> None:
    """A receiver answering 302 to a loopback address the policy refuses: the POST reaches the
    redirector only, and the refused address sees no connection."""
    denied = Listener().serve()
    base, asked, stop = _redirector(f"http://127.0.0.2:{denied.port}/stolen")
    ((_, event),) = step(Rules(min_clips=1), TrackerState(), clip(0, "Run", 0.9))

    async def main() -> None:
        destinations = webhook_destinations(Settings(webhook_networks=TEST_NETWORKS))
        notifier = WebhookNotifier("k", 1.0, attempts=2, backoff_s=0.01, destinations=destinations)
        task = asyncio.create_task(notifier.run())
        notifier.send(f"{base}/hook", event)
        while len(asked) < 2:  # the first try and its retry, both answered 302
            assert not task.done()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        task.cancel()

    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        stop.set()
        denied.close()
    assert asked == ["/hook", "/hook"] and denied.connections == []

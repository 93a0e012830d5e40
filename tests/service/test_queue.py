"""Clip queue and result store, each test on both backends: in-process and a real Redis."""

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from bench.servers import RedisServer
from service.queue.base import ClipQueue, ClipResult, Latency, Prediction, ResultStore, summarize
from service.queue.memory import MemoryQueue, MemoryResults
from service.queue.redis import RedisQueue, RedisResults, lane_key
from tests.service.clips import make_clip, metric

Test = Callable[[ClipQueue, ResultStore], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
def run(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Runs an async test body with a fresh queue and store of the parametrised backend."""

    def go(test: Test, files_max: int = 8, live_max: int = 8, staleness_s: float = 60.0) -> None:
        async def main() -> None:
            if request.param == "memory":
                await test(MemoryQueue(files_max, live_max, staleness_s), MemoryResults(3600))
                return
            server: RedisServer = request.getfixturevalue("redis_server")
            client = Redis.from_url(server.url)
            queue = RedisQueue(client, files_max, live_max, staleness_s)
            await queue.ensure_groups()
            results, stopping = RedisResults(client, 3600), asyncio.Event()
            listening = asyncio.create_task(results.listen(stopping))
            try:
                await test(queue, results)
            finally:
                stopping.set()
                await listening
                await client.aclose()

        asyncio.run(main())

    return go


def test_clips_go_through_both_lanes_intact(run) -> None:
    async def body(queue: ClipQueue, _: ResultStore) -> None:
        live, upload = make_clip("cam", 1, live=True), make_clip("up", 2, live=False)
        await queue.put(live)
        await queue.put(upload)
        assert await queue.depth() == {"files": 1, "live": 1}
        got = await queue.get("w1", 10, 1.0)
        assert {(d.lane, d.clip.id) for d in got} == {("live", live.id), ("files", upload.id)}
        for d in got:
            assert d.clip.frames.tobytes() == (live if d.clip.live else upload).frames.tobytes()
            assert time.time() - 5 < d.enqueued <= time.time()
        assert await queue.depth() == {"files": 1, "live": 1}  # delivered, not yet acknowledged
        await queue.ack(got)
        assert await queue.depth() == {"files": 0, "live": 0}
        assert await queue.get("w1", 10, 0.05) == []

    run(body)


def test_full_live_lane_drops_its_oldest_undelivered_clips_counted(run) -> None:
    async def body(queue: ClipQueue, _: ResultStore) -> None:
        before = metric("lumos_stream_frames_dropped_total", stream="cam-o", reason="overflow")
        first = await queue.get("w1", 1, 0.01)  # nothing yet
        assert first == []
        await queue.put(make_clip("cam-o", 0))
        held = await queue.get("w1", 1, 1.0)  # in progress: must survive the overflow
        for seq in range(1, 6):
            await queue.put(make_clip("cam-o", seq))
        assert (await queue.depth())["live"] == 3
        dropped = metric("lumos_stream_frames_dropped_total", stream="cam-o", reason="overflow")
        assert dropped - before == 3  # seqs 1, 2, 3
        rest = await queue.get("w1", 10, 1.0)
        assert [d.clip.seq for d in rest] == [4, 5]
        await queue.ack(held + rest)
        assert (await queue.depth())["live"] == 0

    run(body, live_max=3)


def test_full_upload_lane_makes_the_producer_wait_and_drops_nothing(run) -> None:
    async def body(queue: ClipQueue, _: ResultStore) -> None:
        for seq in range(2):
            await queue.put(make_clip("up", seq, live=False))
        third = asyncio.create_task(queue.put(make_clip("up", 2, live=False)))
        await asyncio.sleep(0.3)
        assert not third.done()  # backpressure
        got = await queue.get("w1", 1, 1.0)
        await queue.ack(got)
        await asyncio.wait_for(third, 2.0)
        rest = await queue.get("w1", 10, 1.0)
        assert [d.clip.seq for d in got + rest] == [0, 1, 2]

    run(body, files_max=2)


def test_live_clips_past_the_staleness_budget_are_dropped_not_delivered(run) -> None:
    async def body(queue: ClipQueue, _: ResultStore) -> None:
        before = metric("lumos_stream_frames_dropped_total", stream="cam-s", reason="stale")
        await queue.put(make_clip("cam-s", 0, end=time.time() - 30))
        await queue.put(make_clip("up-s", 1, live=False, end=time.time() - 30))  # files never
        await queue.put(make_clip("cam-s", 2))
        got = await queue.get("w1", 10, 1.0)
        assert sorted(d.clip.seq for d in got) == [1, 2]
        stale = metric("lumos_stream_frames_dropped_total", stream="cam-s", reason="stale")
        assert stale - before == 1
        await queue.ack(got)
        assert await queue.depth() == {"files": 0, "live": 0}

    run(body, staleness_s=10.0)


def result(clip_id: str, stream: str = "s", start: float = 0.0, **scores: float) -> ClipResult:
    scores = scores or {"Run": 0.7, "Walk": 0.3}
    best = max(scores, key=scores.__getitem__)
    return ClipResult(
        clip_id=clip_id,
        stream=stream,
        seq=0,
        start=start,
        end=start + 1,
        model_version="v1",
        backend="fp32",
        top=[Prediction(label=best, score=scores[best])],
        scores=scores,
        latency=Latency(queue_wait=0.0, inference=0.0, total=0.0),
        illumination=make_clip().illumination,
        integrity=make_clip().integrity,
    )


def test_first_result_wins_and_results_read_by_id_and_by_stream(run) -> None:
    async def body(_: ClipQueue, store: ResultStore) -> None:
        now = time.time()
        assert await store.put(result("a", start=now + 1, Run=0.9, Walk=0.1))
        assert not await store.put(result("a", start=now + 1, Run=0.1, Walk=0.9))  # redelivery
        assert await store.put(result("b", start=now + 3))
        assert await store.put(result("c", start=now + 2))
        assert await store.put(result("x", stream="other", start=now + 2))
        found = await store.get_many(["a", "missing"])
        assert list(found) == ["a"] and found["a"].scores["Run"] == 0.9
        assert [r.clip_id for r in await store.for_stream("s")] == ["a", "c", "b"]
        assert [r.clip_id for r in await store.for_stream("s", since=now + 1)] == ["c", "b"]
        assert [r.clip_id for r in await store.for_stream("s", limit=1)] == ["a"]

    run(body)


def test_wait_returns_once_every_result_is_stored_in_the_order_asked(run) -> None:
    async def body(_: ClipQueue, store: ResultStore) -> None:
        await store.put(result("early"))
        waiting = asyncio.create_task(store.wait("s", ["late", "early"], timeout=5.0))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await store.put(result("late"))
        got = await asyncio.wait_for(waiting, 2.0)
        assert [r.clip_id for r in got] == ["late", "early"]
        with pytest.raises(TimeoutError):
            await store.wait("s", ["never"], timeout=0.2)

    run(body)


def test_a_follower_is_woken_by_a_stored_result_not_by_polling(run) -> None:
    async def body(_: ClipQueue, store: ResultStore) -> None:
        now = time.time()
        await store.put(result("old", start=now - 10))
        assert [r.clip_id for r in await store.newer("s", now - 20, timeout=1.0)] == ["old"]
        assert await store.newer("s", now, timeout=0.2) == []  # nothing newer: waits, then []
        waiting = asyncio.create_task(store.newer("s", now, timeout=4.0))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await store.put(result("other", stream="elsewhere", start=now + 1))
        await store.put(result("new", start=now + 1))
        started = time.monotonic()
        assert [r.clip_id for r in await asyncio.wait_for(waiting, 2.0)] == ["new"]
        assert time.monotonic() - started < 1.0  # announced: the Redis recheck is 5 s away

    run(body)


def test_summary_is_the_mean_of_clip_scores() -> None:
    clips = [result("a", Run=0.8, Walk=0.2), result("b", Run=0.2, Walk=0.6, Jump=0.2)]
    summary = summarize(clips, top_k=2)
    assert summary.clips == 2 and summary.model_versions == ["v1"]
    assert summary.scores == pytest.approx({"Run": 0.5, "Walk": 0.4, "Jump": 0.1})
    assert [p.label for p in summary.top] == ["Run", "Walk"]


def test_clips_held_by_a_dead_consumer_are_reclaimed(redis_server: RedisServer) -> None:
    async def main() -> None:
        client = Redis.from_url(redis_server.url)
        queue = RedisQueue(client, 8, 8, 60.0)
        await queue.ensure_groups()
        for seq in range(3):
            await queue.put(make_clip("up", seq, live=False))
        held = await queue.get("dead", 10, 1.0)
        assert len(held) == 3
        assert await queue.reclaim("alive", idle_ms=2000, count=10) == []  # not idle long enough
        await asyncio.sleep(2.1)
        claimed = await queue.reclaim("alive", idle_ms=2000, count=10)
        assert sorted(d.clip.seq for d in claimed) == [0, 1, 2]
        await queue.ack(claimed)
        assert await queue.depth() == {"files": 0, "live": 0}
        assert await queue.reclaim("alive", idle_ms=0, count=10) == []
        await client.aclose()

    asyncio.run(main())


def test_a_corrupt_entry_is_dropped_and_counted_not_retried(redis_server: RedisServer) -> None:
    async def main() -> None:
        client = Redis.from_url(redis_server.url)
        queue = RedisQueue(client, 8, 8, 60.0)
        await queue.ensure_groups()
        before = metric("lumos_stream_frames_dropped_total", stream="evil", reason="corrupt")
        await client.xadd(lane_key("live"), {"clip": b"\x00\x00\x00\x02{}", "stream": "evil"})
        await queue.put(make_clip("good", 1))
        got = await queue.get("w", 10, 1.0)
        assert [d.clip.stream for d in got] == ["good"]
        after = metric("lumos_stream_frames_dropped_total", stream="evil", reason="corrupt")
        assert after - before == 1
        await queue.ack(got)
        assert await queue.depth() == {"files": 0, "live": 0}
        await client.aclose()

    asyncio.run(main())


def test_queue_recovers_when_redis_restarts_empty(redis_server: RedisServer) -> None:
    async def main() -> None:
        client = Redis.from_url(redis_server.url)
        queue = RedisQueue(client, 8, 8, 60.0)
        await queue.ensure_groups()
        await asyncio.to_thread(redis_server.restart)  # no persistence: groups are gone
        assert await queue.get("w", 10, 0.1) == []  # recreates the groups
        await queue.put(make_clip("up", 7, live=False))
        assert [d.clip.seq for d in await queue.get("w", 10, 1.0)] == [7]
        await client.aclose()

    asyncio.run(main())

"""Webhook delivery on its own: results reach a real receiver, a dead URL or a full queue only
costs counted deliveries, never the sender."""

import asyncio

from bench.servers import TEST_NETWORKS, WebhookReceiver, free_port, wait_for
from service.queue.base import ClipResult, Latency
from service.settings import Settings
from service.urls import webhook_destinations
from service.webhooks import WebhookSender
from tests.service.clips import make_clip, metric


def result_of(seq: int) -> ClipResult:
    clip = make_clip(stream="dock", seq=seq)
    return ClipResult(
        clip_id=clip.id,
        stream=clip.stream,
        seq=clip.seq,
        start=clip.start,
        end=clip.end,
        model_version="v1",
        backend="fp32",
        top=[],
        scores={},
        latency=Latency(queue_wait=0.0, inference=0.0, total=0.0),
        illumination=clip.illumination,
        integrity=clip.integrity,
        error=None,
    )


def outcomes() -> dict[str, float]:
    return {
        o: metric("lumos_webhook_deliveries_total", outcome=o)
        for o in ("delivered", "failed", "dropped")
    }


def test_a_dead_url_fails_counted_and_later_results_still_arrive(caplog) -> None:
    dead = f"http://user:secret@127.0.0.1:{free_port()}/hook"  # nothing listens there
    before = outcomes()

    async def main(receiver: WebhookReceiver) -> None:
        sender = WebhookSender(1.0, webhook_destinations(Settings(webhook_networks=TEST_NETWORKS)))
        task = asyncio.create_task(sender.run())
        sender.send(dead, result_of(0))
        sender.send(receiver.url, result_of(1))
        sender.send(receiver.url, result_of(2))
        while len(receiver.received) < 2:
            assert not task.done(), task
            await asyncio.sleep(0.05)
        task.cancel()

    with WebhookReceiver() as receiver:
        asyncio.run(asyncio.wait_for(main(receiver), 30))
    assert [r["seq"] for r in receiver.received] == [1, 2]
    assert receiver.received[0]["stream"] == "dock"
    after = outcomes()
    assert after["delivered"] - before["delivered"] == 2
    assert after["failed"] - before["failed"] == 1
    assert "127.0.0.1" in caplog.text and "secret" not in caplog.text


def test_a_full_queue_drops_the_newest_results_and_counts_them() -> None:
    before = outcomes()["dropped"]

    async def main(receiver: WebhookReceiver) -> None:
        sender = WebhookSender(
            1.0, webhook_destinations(Settings(webhook_networks=TEST_NETWORKS)), capacity=2
        )
        for seq in range(5):  # nothing drains the queue yet: two fit
            sender.send(receiver.url, result_of(seq))
        task = asyncio.create_task(sender.run())
        await asyncio.to_thread(wait_for, lambda: len(receiver.received) == 2, 10, "deliveries")
        task.cancel()

    with WebhookReceiver() as receiver:
        asyncio.run(main(receiver))
    assert [r["seq"] for r in receiver.received] == [0, 1]
    assert outcomes()["dropped"] - before == 3

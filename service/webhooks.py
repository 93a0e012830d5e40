"""Camera webhooks: each result of a camera's clips is POSTed as JSON to the URL it subscribed.

A subscriber's server is outside the service's control, so the inference worker never waits on
it: `send` only puts the result in a small bounded queue (full: the result is dropped, counted)
and one task drains it, each POST limited to `webhook_timeout_s` and retried once. Every outcome
is counted in `lumos_webhook_deliveries_total{outcome}`; failures are logged with the URL redacted.
Each POST goes to an address the URL policy checked just before (`service.urls`), never follows a
redirect, and a URL whose host now resolves somewhere refused is not posted to at all (`refused`).
"""

import asyncio
import logging

import httpx

from service.metrics import WEBHOOK_DELIVERIES
from service.queue.base import ClipResult
from service.urls import Destinations, RefusedURL, redact_url

log = logging.getLogger(__name__)

_ATTEMPTS = 2


class WebhookSender:
    """Delivers results to webhooks in the background, in the order they were sent."""

    def __init__(self, timeout_s: float, destinations: Destinations, capacity: int = 256) -> None:
        self.timeout_s = timeout_s
        self.destinations = destinations
        self._pending: asyncio.Queue[tuple[str, ClipResult]] = asyncio.Queue(capacity)

    def send(self, url: str, result: ClipResult) -> None:
        """Queue `result` for `url` and return at once; dropped (counted) when the queue is full."""
        try:
            self._pending.put_nowait((url, result))
        except asyncio.QueueFull:
            WEBHOOK_DELIVERIES.labels(outcome="dropped").inc()

    async def run(self) -> None:
        """Deliver until cancelled; results still queued then are lost."""
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:
            while True:
                url, result = await self._pending.get()
                await self._deliver(client, url, result)

    async def _deliver(self, client: httpx.AsyncClient, url: str, result: ClipResult) -> None:
        body = result.model_dump_json()
        error = ""
        for _ in range(_ATTEMPTS):
            try:
                parsed, address = await asyncio.to_thread(self.destinations.check, url)
            except RefusedURL as exc:
                WEBHOOK_DELIVERIES.labels(outcome="refused").inc()
                log.warning("webhook %s: not delivered: %s", redact_url(url), exc)
                return
            # To the checked address; the name stays in Host and in TLS (SNI, certificate).
            headers = {"content-type": "application/json", "host": parsed.authority}
            try:
                answer = await client.post(
                    parsed.with_host(str(address)),
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": parsed.host},
                )
            except Exception as exc:  # whatever the subscriber's server did, deliveries go on
                error = type(exc).__name__  # its text may quote the URL
                continue
            if answer.is_success:
                WEBHOOK_DELIVERIES.labels(outcome="delivered").inc()
                return
            error = f"HTTP {answer.status_code}"
        WEBHOOK_DELIVERIES.labels(outcome="failed").inc()
        log.warning(
            "webhook %s: result of clip %s (stream %s) not delivered: %s",
            redact_url(url),
            result.clip_id,
            result.stream,
            error,
        )

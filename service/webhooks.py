"""Event webhooks: one signed POST per finished event to its camera's webhook (not per clip).

The body is signed with HMAC-SHA256 over `<timestamp>.<body>` under `LUMOS_WEBHOOK_SECRET`, sent
as `X-Lumos-Timestamp` and `X-Lumos-Signature: v1=<hex>`, so a receiver can check both where it
came from and that it is not a replay (`verify`). A subscriber's server is outside the service's
control, so the caller never waits on it: `send` queues (full: dropped, counted) and one task
POSTs, each try limited to `webhook_timeout_s` and retried with doubling backoff; one that never
succeeds is dead-lettered (logged with the URL redacted, counted). Each POST goes to an address
the URL policy checked just before (`service.urls`), never follows a redirect, and a URL whose host
now resolves somewhere refused is not posted to at all (`refused`). Every outcome is counted in
`lumos_notifications_total{channel="webhook", outcome}`.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from service.events.rules import Event
from service.metrics import NOTIFICATIONS
from service.urls import Destinations, RefusedURL, redact_url

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Lumos-Timestamp"
SIGNATURE_HEADER = "X-Lumos-Signature"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


def verify(
    secret: str, timestamp: str, signature: str, body: bytes, window_s: float = 300.0
) -> bool:
    """What a receiver runs: the signature matches, and the timestamp is within `window_s` of
    now (an old, captured request replayed later fails)."""
    try:
        fresh = abs(time.time() - float(timestamp)) <= window_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def payload(event: Event) -> dict[str, Any]:
    base = f"/v1/events/{event.id}"
    return {
        "type": "event",
        "event": event.model_dump(mode="json"),
        "links": {"self": base, "clip": f"{base}/clip", "snapshot": f"{base}/snapshot"},
    }


class WebhookNotifier:
    """POSTs events to webhooks in the background, in order; never blocks its caller."""

    def __init__(
        self,
        secret: str,
        timeout_s: float,
        attempts: int,
        backoff_s: float,
        destinations: Destinations,
    ) -> None:
        self.secret = secret
        self.destinations = destinations
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._pending: asyncio.Queue[tuple[str, Event]] = asyncio.Queue(256)

    def send(self, url: str, event: Event) -> None:
        try:
            self._pending.put_nowait((url, event))
        except asyncio.QueueFull:
            NOTIFICATIONS.labels(channel="webhook", outcome="dropped").inc()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:
            while True:
                url, event = await self._pending.get()
                await self._deliver(client, url, event)

    async def _deliver(self, client: httpx.AsyncClient, url: str, event: Event) -> None:
        body = json.dumps(payload(event), separators=(",", ":")).encode()
        error = ""
        for attempt in range(self.attempts):
            if attempt:
                NOTIFICATIONS.labels(channel="webhook", outcome="retried").inc()
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                parsed, address = await asyncio.to_thread(self.destinations.check, url)
            except RefusedURL as exc:
                NOTIFICATIONS.labels(channel="webhook", outcome="refused").inc()
                log.warning("webhook %s: not delivered: %s", redact_url(url), exc)
                return
            # To the checked address; the name stays in Host and in TLS (SNI, certificate).
            headers = {"content-type": "application/json", "host": parsed.authority}
            if self.secret:  # signed when sent, so a retry is not refused as a replay
                stamp = str(int(time.time()))
                headers |= {
                    TIMESTAMP_HEADER: stamp,
                    SIGNATURE_HEADER: sign(self.secret, stamp, body),
                }
            try:
                answer = await client.post(
                    parsed.with_host(str(address)),
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": parsed.host},
                )
            except Exception as exc:  # whatever the receiver did, deliveries go on
                error = type(exc).__name__  # its text may quote the URL
                continue
            if answer.is_success:
                NOTIFICATIONS.labels(channel="webhook", outcome="delivered").inc()
                return
            error = f"HTTP {answer.status_code}"
        NOTIFICATIONS.labels(channel="webhook", outcome="dead_letter").inc()
        log.warning(
            "webhook %s: event %s (camera %s) dead-lettered after %d attempts: %s",
            redact_url(url),
            event.id,
            event.camera,
            self.attempts,
            error,
        )

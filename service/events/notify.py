"""Telling the world about events: signed webhooks and MQTT.

Webhooks (`service.webhooks`): the camera's webhook gets one signed POST per finished event.

MQTT (`LUMOS_MQTT_URL`): `<prefix>/<camera>/event` gets each finished event and
`<prefix>/<camera>/state` the camera's state (`active` with the open event, or `idle`), retained,
so a subscriber (Home Assistant, Node-RED) knows the state as soon as it subscribes; both QoS 1.
paho-mqtt keeps the connection (reconnects with backoff) and queues messages while it is down.

Every outcome is counted in `lumos_notifications_total{channel, outcome}`.
"""

import json
import logging
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from service.events.rules import Event
from service.metrics import NOTIFICATIONS
from service.settings import Settings
from service.urls import redact_url, webhook_destinations
from service.webhooks import WebhookNotifier, payload

log = logging.getLogger(__name__)


class MqttPublisher:
    """One MQTT connection per process, run by paho's own network thread."""

    def __init__(self, url: str, client_id: str, prefix: str) -> None:
        parts = urlsplit(url)
        self.prefix = prefix
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if parts.username:
            self.client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if parts.scheme == "mqtts":
            self.client.tls_set()
        self.client.max_queued_messages_set(1000)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_publish = self._published
        default = 8883 if parts.scheme == "mqtts" else 1883
        self.client.connect_async(parts.hostname or "localhost", parts.port or default, 30)
        self.client.loop_start()
        self._url = redact_url(url)

    @staticmethod
    def _published(client: mqtt.Client, userdata: object, mid: int, *rest: object) -> None:
        NOTIFICATIONS.labels(channel="mqtt", outcome="delivered").inc()

    def publish(self, camera: str, topic: str, message: dict[str, Any], retain: bool) -> None:
        info = self.client.publish(
            f"{self.prefix}/{camera}/{topic}", json.dumps(message), qos=1, retain=retain
        )
        # Not connected is fine: QoS 1 messages wait in paho's queue for the reconnect.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            NOTIFICATIONS.labels(channel="mqtt", outcome="dead_letter").inc()
            log.warning("mqtt %s: %s/%s not queued: %s", self._url, camera, topic, info.rc)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Notifier:
    """The channels an event goes out on, as configured."""

    def __init__(self, settings: Settings) -> None:
        self.webhooks = WebhookNotifier(
            settings.webhook_secret.get_secret_value(),
            settings.webhook_timeout_s,
            settings.webhook_attempts,
            settings.webhook_backoff_s,
            webhook_destinations(settings),
        )
        self.mqtt = (
            MqttPublisher(settings.mqtt_url, f"lumos-{settings.worker_id}", settings.mqtt_prefix)
            if settings.mqtt_url
            else None
        )

    async def run(self) -> None:
        """Deliver webhooks until cancelled; then close the MQTT connection."""
        try:
            await self.webhooks.run()
        finally:
            if self.mqtt is not None:
                self.mqtt.close()

    def event(self, event: Event, webhook: str | None) -> None:
        if webhook:
            self.webhooks.send(webhook, event)
        if self.mqtt is not None:
            self.mqtt.publish(event.camera, "event", payload(event), retain=False)

    def state(self, camera: str, event: Event | None) -> None:
        if self.mqtt is not None:
            state = {"state": "active" if event else "idle", "time": round(time.time(), 3)}
            if event is not None:
                state |= {"event": event.id, "label": event.label, "score": event.score}
            self.mqtt.publish(camera, "state", state, retain=True)

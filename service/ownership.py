"""Which ingest worker runs which camera: a lease per camera, a fair share per worker.

A worker takes a free camera's lease and renews its leases every third of the lease time; a worker
that dies stops renewing, its leases lapse, and the others take its cameras within one lease time.
Workers also announce themselves (a heartbeat with the same lifetime), so each takes only its fair
share, ceil(cameras / workers), and gives back the extra when another worker joins.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from service.cameras import Camera, CameraRegistry
from service.pause import pause
from service.urls import redact_url

log = logging.getLogger(__name__)


class Ownership:
    """Keeps this worker's set of cameras right: renews, takes its fair share, gives back extra.

    `start(camera)` and `stop(camera_id)` are called as cameras are won and lost; a camera whose
    subscription changes (new URL) is stopped and started again.
    """

    def __init__(
        self,
        registry: CameraRegistry,
        worker: str,
        lease_ms: int,
        start: Callable[[Camera], Awaitable[None]],
        stop: Callable[[str], Awaitable[None]],
    ) -> None:
        self.registry = registry
        self.worker = worker
        self.lease_ms = lease_ms
        self._start = start
        self._stop = stop
        self.owned: dict[str, Camera] = {}

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick every third of the lease until `stopping`; then give every camera back."""
        renewed = time.monotonic()
        try:
            while not stopping.is_set():
                try:
                    await self.tick()
                    renewed = time.monotonic()
                except (RedisError, OSError) as exc:
                    log.warning("camera ownership tick failed: %s", exc)
                    # Leases we cannot renew lapse, and another worker may take the cameras.
                    if time.monotonic() - renewed > self.lease_ms / 1000:
                        for camera_id in list(self.owned):
                            await self._lose(camera_id)
                await pause(stopping, self.lease_ms / 3000)
        finally:
            for camera_id in list(self.owned):
                await self._lose(camera_id)
                try:
                    await self.registry.release(camera_id, self.worker)
                except (RedisError, OSError):
                    pass  # the lease lapses by itself

    async def tick(self) -> None:
        await self.registry.heartbeat(self.worker, self.lease_ms)
        cameras = {c.id: c for c in await self.registry.all()}
        for camera_id, camera in list(self.owned.items()):
            current = cameras.get(camera_id)
            if current is None or current != camera:
                await self._lose(camera_id)
                await self.registry.release(camera_id, self.worker)
            elif not await self.registry.renew(camera_id, self.worker, self.lease_ms):
                log.warning("lost the lease of camera %s", camera_id)
                await self._lose(camera_id)
        share = math.ceil(len(cameras) / max(1, len(await self.registry.workers())))
        for camera_id in sorted(self.owned)[share:]:
            log.info("handing camera %s over (fair share %d)", camera_id, share)
            await self._lose(camera_id)
            await self.registry.release(camera_id, self.worker)
        for camera_id, camera in cameras.items():
            if len(self.owned) >= share:
                break
            if camera_id not in self.owned and await self.registry.acquire(
                camera_id, self.worker, self.lease_ms
            ):
                log.info("took camera %s (%s)", camera_id, redact_url(camera.url))
                self.owned[camera_id] = camera
                await self._start(camera)

    async def _lose(self, camera_id: str) -> None:
        self.owned.pop(camera_id, None)
        await self._stop(camera_id)

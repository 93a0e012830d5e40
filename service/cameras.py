"""Camera subscriptions, their leases and worker heartbeats, and what each camera's worker
reports: the registry `service.ownership` runs cameras against.

Subscriptions are a small table (Redis hash, or a dict in the embedded service). A lease is held
per camera (SET NX PX, renewed only by its holder); workers announce themselves with a heartbeat
of the same lifetime.
"""

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field
from redis.asyncio import Redis

from service.camera_health import CameraHealth
from service.events.rules import Roi, Rules
from service.urls import WEBHOOK_SCHEMES, RefusedURL, parse, redact_url

_PREFIX = "lumos:"


def _http_url(url: str) -> str:
    """Refused at subscription rather than failing at every clip: an http(s) URL with a host,
    rebuilt by the URL policy (where it may point is checked where it is used)."""
    try:
        return parse(url, WEBHOOK_SCHEMES).url
    except RefusedURL as exc:
        raise ValueError(f"webhook: {exc}") from None


# Shared by the camera and the API's request, so both refuse the same values.
Sampling = Annotated[float, Field(gt=0, le=60)]
Stride = Annotated[int, Field(ge=1, le=1000)]
Webhook = Annotated[str, Field(max_length=2048), AfterValidator(_http_url)]


class Camera(BaseModel):
    """A subscribed live source. Show it with `public()`: its URLs may hold credentials."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    url: str = Field(min_length=1, max_length=2048)
    name: str = Field("", max_length=200)
    sampling: Sampling | None = None
    """Frames per second sampled from the source; None = the active model's rate."""
    stride: Stride | None = None
    """Sampled frames between the starts of consecutive clips; None = `clip_stride` or T."""
    webhook: Webhook | None = None
    """Each finished event of the camera is POSTed here as signed JSON."""
    rules: Rules | None = None
    """When its clips make events; None: the camera makes none."""
    roi: Roi | None = None
    """Clips are cut from this region's bounding box; None: the whole frame."""

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": redact_url(self.url),
            "name": self.name,
            "sampling": self.sampling,
            "stride": self.stride,
            "webhook": self.webhook and redact_url(self.webhook),
            "rules": self.rules and self.rules.model_dump(),
            "roi": self.roi and self.roi.model_dump(),
        }


@dataclass(frozen=True, slots=True)
class CameraView:
    """A camera with who holds its lease and what its worker last reported."""

    camera: Camera
    owner: str | None
    health: CameraHealth | None


class CameraRegistry(ABC):
    """Subscriptions, leases, worker heartbeats, and each camera's health and latest key frame
    as its ingest worker reports them."""

    @abstractmethod
    async def add(self, camera: Camera) -> None:
        """Subscribe `camera`, replacing any camera of the same id."""

    @abstractmethod
    async def remove(self, camera_id: str) -> bool: ...

    @abstractmethod
    async def all(self) -> list[Camera]: ...

    @abstractmethod
    async def acquire(self, camera_id: str, worker: str, ttl_ms: int) -> bool:
        """Take the camera's lease if nobody holds it."""

    @abstractmethod
    async def renew(self, camera_id: str, worker: str, ttl_ms: int) -> bool:
        """Extend the lease if `worker` still holds it."""

    @abstractmethod
    async def release(self, camera_id: str, worker: str) -> None: ...

    @abstractmethod
    async def owner(self, camera_id: str) -> str | None: ...

    @abstractmethod
    async def heartbeat(self, worker: str, ttl_ms: int) -> None:
        """Announce `worker` as alive for `ttl_ms`."""

    @abstractmethod
    async def workers(self) -> list[str]:
        """Ingest workers alive now."""

    @abstractmethod
    async def report(self, camera_id: str, health: CameraHealth) -> None:
        """Record the camera's health (its ingest worker's view)."""

    @abstractmethod
    async def keep_frame(self, camera_id: str, frame: bytes) -> None:
        """Keep the camera's latest key frame (an encoded image, replaced by the next)."""

    @abstractmethod
    async def frame(self, camera_id: str) -> bytes | None: ...

    @abstractmethod
    async def overview(self, camera_ids: list[str] | None = None) -> list[CameraView]:
        """Every camera (or those of `camera_ids`) with its lease holder and health, read in a
        fixed number of round trips however many cameras there are."""

    async def get(self, camera_id: str) -> Camera | None:
        return next((c for c in await self.all() if c.id == camera_id), None)


class MemoryCameras(CameraRegistry):
    """The embedded service's registry: one process, so leases are plain expiring entries."""

    def __init__(self) -> None:
        self._cameras: dict[str, Camera] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._workers: dict[str, float] = {}
        self._health: dict[str, CameraHealth] = {}
        self._frames: dict[str, bytes] = {}

    async def add(self, camera: Camera) -> None:
        self._cameras[camera.id] = camera
        self._health.pop(camera.id, None)

    async def remove(self, camera_id: str) -> bool:
        self._health.pop(camera_id, None)
        self._frames.pop(camera_id, None)
        return self._cameras.pop(camera_id, None) is not None

    async def report(self, camera_id: str, health: CameraHealth) -> None:
        if camera_id in self._cameras:
            self._health[camera_id] = health

    async def keep_frame(self, camera_id: str, frame: bytes) -> None:
        if camera_id in self._cameras:
            self._frames[camera_id] = frame

    async def frame(self, camera_id: str) -> bytes | None:
        return self._frames.get(camera_id)

    async def overview(self, camera_ids: list[str] | None = None) -> list[CameraView]:
        cameras = await self.all()
        return [
            CameraView(c, await self.owner(c.id), self._health.get(c.id))
            for c in cameras
            if camera_ids is None or c.id in camera_ids
        ]

    async def all(self) -> list[Camera]:
        return sorted(self._cameras.values(), key=lambda c: c.id)

    async def acquire(self, camera_id: str, worker: str, ttl_ms: int) -> bool:
        if await self.owner(camera_id) is not None:
            return False
        self._leases[camera_id] = (worker, time.monotonic() + ttl_ms / 1000)
        return True

    async def renew(self, camera_id: str, worker: str, ttl_ms: int) -> bool:
        if await self.owner(camera_id) != worker:
            return False
        self._leases[camera_id] = (worker, time.monotonic() + ttl_ms / 1000)
        return True

    async def release(self, camera_id: str, worker: str) -> None:
        if await self.owner(camera_id) == worker:
            del self._leases[camera_id]

    async def owner(self, camera_id: str) -> str | None:
        holder, expires = self._leases.get(camera_id, (None, 0.0))
        return holder if expires > time.monotonic() else None

    async def heartbeat(self, worker: str, ttl_ms: int) -> None:
        self._workers[worker] = time.monotonic() + ttl_ms / 1000

    async def workers(self) -> list[str]:
        now = time.monotonic()
        return sorted(w for w, expires in self._workers.items() if expires > now)


# Compare-and-act on a lease: only its holder may extend or drop it.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# A report that arrives after its camera was unsubscribed must not bring a record back.
_REPORT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 0
"""


class RedisCameras(CameraRegistry):
    """Keys: `lumos:cameras` (hash id -> camera JSON), `lumos:lease:<id>` (holder, with a PX
    expiry), `lumos:ingest:workers` (sorted set of workers by heartbeat expiry, ms),
    `lumos:camera:health` (hash id -> health JSON), `lumos:camera:frame:<id>` (the latest key
    frame, expiring when no longer refreshed)."""

    FRAME_TTL_S = 120

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._report = redis.register_script(_REPORT)
        self._cameras = f"{_PREFIX}cameras"
        self._workers = f"{_PREFIX}ingest:workers"
        self._health = f"{_PREFIX}camera:health"

    @staticmethod
    def _lease(camera_id: str) -> str:
        return f"{_PREFIX}lease:{camera_id}"

    @staticmethod
    def _frame(camera_id: str) -> str:
        return f"{_PREFIX}camera:frame:{camera_id}"

    async def add(self, camera: Camera) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._cameras, camera.id, camera.model_dump_json())
            pipe.hdel(self._health, camera.id)
            await pipe.execute()

    async def remove(self, camera_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._cameras, camera_id)
            pipe.hdel(self._health, camera_id)
            pipe.delete(self._frame(camera_id))
            removed, _, _ = await pipe.execute()
        return bool(removed)

    async def report(self, camera_id: str, health: CameraHealth) -> None:
        keys = [self._cameras, self._health]
        await self._report(keys=keys, args=[camera_id, health.model_dump_json()])

    async def keep_frame(self, camera_id: str, frame: bytes) -> None:
        await self.redis.set(self._frame(camera_id), frame, ex=self.FRAME_TTL_S)

    async def frame(self, camera_id: str) -> bytes | None:
        return await self.redis.get(self._frame(camera_id))

    async def overview(self, camera_ids: list[str] | None = None) -> list[CameraView]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._cameras)
            pipe.hgetall(self._health)
            entries, healths = await pipe.execute()
        cameras = sorted(
            (Camera.model_validate_json(v) for v in entries.values()), key=lambda c: c.id
        )
        cameras = [c for c in cameras if camera_ids is None or c.id in camera_ids]
        owners = await self.redis.mget([self._lease(c.id) for c in cameras]) if cameras else []
        return [
            CameraView(
                camera,
                owner.decode() if owner is not None else None,
                CameraHealth.model_validate_json(h)
                if (h := healths.get(camera.id.encode()))
                else None,
            )
            for camera, owner in zip(cameras, owners, strict=True)
        ]

    async def all(self) -> list[Camera]:
        entries = await self.redis.hgetall(self._cameras)
        return sorted((Camera.model_validate_json(v) for v in entries.values()), key=lambda c: c.id)

    async def acquire(self, camera_id: str, worker: str, ttl_ms: int) -> bool:
        return bool(await self.redis.set(self._lease(camera_id), worker, nx=True, px=ttl_ms))

    async def renew(self, camera_id: str, worker: str, ttl_ms: int) -> bool:
        return bool(await self._renew(keys=[self._lease(camera_id)], args=[worker, ttl_ms]))

    async def release(self, camera_id: str, worker: str) -> None:
        await self._release(keys=[self._lease(camera_id)], args=[worker])

    async def owner(self, camera_id: str) -> str | None:
        holder = await self.redis.get(self._lease(camera_id))
        return holder.decode() if holder is not None else None

    async def heartbeat(self, worker: str, ttl_ms: int) -> None:
        now_ms = time.time() * 1000
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._workers, {worker: now_ms + ttl_ms})
            pipe.zremrangebyscore(self._workers, "-inf", now_ms)
            await pipe.execute()

    async def workers(self) -> list[str]:
        alive = await self.redis.zrangebyscore(self._workers, time.time() * 1000, "+inf")
        return sorted(w.decode() for w in alive)

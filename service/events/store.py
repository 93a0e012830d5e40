"""Where events and each camera's rule state are kept: Redis, or a dict in the embedded service.

Redis keys: `lumos:event:<id>` (event JSON), `lumos:events` (sorted set of ids by start, for
listing), `lumos:events:updated` (sorted set of ids by last change, for the live feed) and
`lumos:events:state:<camera>` (the camera's `TrackerState`, written after every result, so the
next owner of a camera continues an event its dead worker left open).
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass

from redis.asyncio import Redis

from service.events.rules import Event, TrackerState

_PREFIX = "lumos:"


@dataclass(frozen=True)
class Query:
    camera: str | None = None
    label: str | None = None
    since: float = 0.0
    """Events that started at or after this Unix time..."""
    until: float = float("inf")
    """...and before this one."""
    limit: int = 50
    offset: int = 0

    def keeps(self, event: Event) -> bool:
        return (self.camera is None or event.camera == self.camera) and (
            self.label is None or event.label == self.label
        )


class EventStore(ABC):
    @abstractmethod
    async def put(self, event: Event) -> None:
        """Create or replace the event."""

    @abstractmethod
    async def get(self, event_id: str) -> Event | None: ...

    @abstractmethod
    async def delete(self, event_id: str) -> bool: ...

    @abstractmethod
    async def _newest_first(self, since: float, until: float) -> list[Event]:
        """Every event started in [since, until), newest first."""

    @abstractmethod
    async def changed(self, since: float) -> list[Event]:
        """Events created or changed after `since` (Unix time), oldest change first."""

    @abstractmethod
    async def load_state(self, camera: str) -> TrackerState: ...

    @abstractmethod
    async def save_state(self, camera: str, state: TrackerState) -> None: ...

    async def query(self, query: Query) -> tuple[list[Event], int]:
        """A page of matching events, newest first, and how many match in all."""
        found = [e for e in await self._newest_first(query.since, query.until) if query.keeps(e)]
        return found[query.offset : query.offset + query.limit], len(found)

    async def older_than(self, before: float) -> list[Event]:
        return await self._newest_first(0.0, before)


class MemoryEvents(EventStore):
    def __init__(self) -> None:
        self._events: dict[str, Event] = {}
        self._states: dict[str, TrackerState] = {}

    async def put(self, event: Event) -> None:
        self._events[event.id] = event.model_copy(deep=True)

    async def get(self, event_id: str) -> Event | None:
        return self._events.get(event_id)

    async def delete(self, event_id: str) -> bool:
        return self._events.pop(event_id, None) is not None

    async def _newest_first(self, since: float, until: float) -> list[Event]:
        found = [e for e in self._events.values() if since <= e.start < until]
        return sorted(found, key=lambda e: e.start, reverse=True)

    async def changed(self, since: float) -> list[Event]:
        return sorted(
            (e for e in self._events.values() if e.updated > since), key=lambda e: e.updated
        )

    async def load_state(self, camera: str) -> TrackerState:
        state = self._states.get(camera)
        return state.model_copy(deep=True) if state else TrackerState()

    async def save_state(self, camera: str, state: TrackerState) -> None:
        self._states[camera] = state.model_copy(deep=True)


class RedisEvents(EventStore):
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._by_start = f"{_PREFIX}events"
        self._by_change = f"{_PREFIX}events:updated"

    @staticmethod
    def _key(event_id: str) -> str:
        return f"{_PREFIX}event:{event_id}"

    async def put(self, event: Event) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(event.id), event.model_dump_json())
            pipe.zadd(self._by_start, {event.id: event.start})
            pipe.zadd(self._by_change, {event.id: event.updated})
            await pipe.execute()

    async def get(self, event_id: str) -> Event | None:
        raw = await self.redis.get(self._key(event_id))
        return Event.model_validate_json(raw) if raw is not None else None

    async def delete(self, event_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(event_id))
            pipe.zrem(self._by_start, event_id)
            pipe.zrem(self._by_change, event_id)
            deleted, *_ = await pipe.execute()
        return bool(deleted)

    async def _load(self, ids: list[bytes]) -> list[Event]:
        if not ids:
            return []
        raws = await self.redis.mget([self._key(i.decode()) for i in ids])
        return [Event.model_validate_json(raw) for raw in raws if raw is not None]

    async def _newest_first(self, since: float, until: float) -> list[Event]:
        high = "+inf" if until == float("inf") else f"({until}"
        ids = await self.redis.zrevrangebyscore(self._by_start, high, since)
        return await self._load(ids)

    async def changed(self, since: float) -> list[Event]:
        return await self._load(
            await self.redis.zrangebyscore(self._by_change, f"({since}", "+inf")
        )

    async def load_state(self, camera: str) -> TrackerState:
        raw = await self.redis.get(f"{_PREFIX}events:state:{camera}")
        return TrackerState.model_validate_json(raw) if raw is not None else TrackerState()

    async def save_state(self, camera: str, state: TrackerState) -> None:
        await self.redis.set(f"{_PREFIX}events:state:{camera}", state.model_dump_json())

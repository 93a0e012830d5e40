"""In-process queue and result store for the embedded service (`lumos serve` without Redis).

Everything runs on one event loop, so plain containers and asyncio conditions suffice; clips stay
numpy arrays (no encoding). A consumer here cannot die without the whole process, so there is
nothing to reclaim.
"""

import asyncio
import bisect
import itertools
import time
from collections import deque
from collections.abc import Iterable, Sequence

from service.clips import Clip
from service.queue.base import LANES, ClipQueue, ClipResult, Delivery, ResultStore


class MemoryQueue(ClipQueue):
    def __init__(self, files_max: int, live_max: int, staleness_s: float) -> None:
        super().__init__(files_max, live_max, staleness_s)
        self._lanes: dict[str, deque[Delivery]] = {lane: deque() for lane in LANES}
        self._pending: dict[str, Delivery] = {}
        self._tokens = itertools.count()
        self._changed = asyncio.Condition()

    async def _append(self, lane: str, clip: Clip) -> tuple[int, list[str]]:
        waiting = self._lanes[lane]
        dropped = []
        while lane == "live" and waiting and self._lane_depth(lane) >= self.bounds[lane]:
            dropped.append(waiting.popleft().clip.stream)
        waiting.append(Delivery(clip, lane, str(next(self._tokens)), time.time()))
        async with self._changed:
            self._changed.notify_all()
        return self._lane_depth(lane), dropped

    async def _read(self, consumer: str, count: int, timeout: float) -> list[Delivery]:
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: any(self._lanes.values())), timeout
                )
            except TimeoutError:
                return []
        taken: list[Delivery] = []
        # Alternate between the lanes so a busy camera lane never starves uploads, or the reverse.
        while len(taken) < count and any(self._lanes.values()):
            for waiting in self._lanes.values():
                if waiting and len(taken) < count:
                    taken.append(waiting.popleft())
        self._pending.update((d.token, d) for d in taken)
        return taken

    async def _depths(self) -> dict[str, int]:
        return {lane: self._lane_depth(lane) for lane in LANES}

    def _lane_depth(self, lane: str) -> int:
        pending = sum(1 for d in self._pending.values() if d.lane == lane)
        return len(self._lanes[lane]) + pending

    async def ack(self, deliveries: Iterable[Delivery]) -> None:
        for d in deliveries:
            self._pending.pop(d.token, None)

    async def _claim(self, consumer: str, idle_ms: int, count: int) -> list[Delivery]:
        return []


class MemoryResults(ResultStore):
    """Results of the last `ttl_s` seconds (by clip start), so a long-running camera does not
    grow the process without bound."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._by_id: dict[str, ClipResult] = {}
        self._by_stream: dict[str, list[tuple[float, str]]] = {}
        self._changed = asyncio.Condition()
        self._next_expiry = 0.0

    async def put(self, result: ClipResult) -> bool:
        if result.clip_id in self._by_id:
            return False
        if (now := time.time()) >= self._next_expiry:
            self._expire(now - self.ttl_s)
            self._next_expiry = now + 1.0
        self._by_id[result.clip_id] = result
        bisect.insort(self._by_stream.setdefault(result.stream, []), (result.start, result.clip_id))
        async with self._changed:
            self._changed.notify_all()
        return True

    def _expire(self, before: float) -> None:
        for stream, entries in list(self._by_stream.items()):
            old = bisect.bisect_left(entries, (before, ""))
            for _, clip_id in entries[:old]:
                del self._by_id[clip_id]
            del entries[:old]
            if not entries:
                del self._by_stream[stream]

    async def get_many(self, ids: Sequence[str]) -> dict[str, ClipResult]:
        return {i: self._by_id[i] for i in ids if i in self._by_id}

    async def for_stream(
        self, stream: str, since: float = 0.0, limit: int = 1000
    ) -> list[ClipResult]:
        entries = self._by_stream.get(stream, [])
        first = bisect.bisect_right(entries, (since, "\uffff"))
        return [self._by_id[clip_id] for _, clip_id in entries[first : first + limit]]

    async def wait(self, stream: str, ids: Sequence[str], timeout: float) -> list[ClipResult]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: all(i in self._by_id for i in ids)), timeout
            )
        return [self._by_id[i] for i in ids]

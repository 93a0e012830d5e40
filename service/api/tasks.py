"""Records of asynchronous uploads (`/v1/classify?async=true`), polled by id.

The upload is decoded by the API process that received it, but the record lives in Redis when
there is one, so a client polling through a load balancer may reach any API replica. Records
expire with the results they summarise.
"""

import asyncio
import json
import time
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis


class ClassifyTasks:
    """id -> record dict (`status`: pending | done | failed, plus the answer or the problem)."""

    def __init__(self, redis: Redis | None, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._memory: dict[str, tuple[float, dict[str, Any]]] = {}
        self._running: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run an upload's classification in the background, keeping a reference to it."""
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def __len__(self) -> int:
        """Classifications running in the background."""
        return len(self._running)

    async def close(self) -> None:
        """Cancel the classifications still running (their temporary files are deleted)."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    @staticmethod
    def _key(task_id: str) -> str:
        return f"lumos:classify:{task_id}"

    async def put(self, task_id: str, record: dict[str, Any]) -> None:
        if self._redis is not None:
            await self._redis.set(self._key(task_id), json.dumps(record), ex=self._ttl_s)
            return
        now = time.monotonic()
        self._memory = {k: v for k, v in self._memory.items() if v[0] > now}
        self._memory[task_id] = (now + self._ttl_s, record)

    async def get(self, task_id: str) -> dict[str, Any] | None:
        if self._redis is not None:
            raw = await self._redis.get(self._key(task_id))
            return json.loads(raw) if raw is not None else None
        expires, record = self._memory.get(task_id, (0.0, None))
        return record if expires > time.monotonic() else None

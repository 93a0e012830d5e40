"""Redis Streams queue and Redis result store, shared by every process of a deployment.

Each lane is a stream read by one consumer group. An entry holds the encoded clip plus its stream
id (so a drop can be counted per stream without decoding the frames). Acknowledging deletes the
entry, so a lane's length is exactly its unfinished work. Results are JSON under their clip id,
written with SET NX (first write wins), indexed per stream in a sorted set by clip start and
announced (the stream's id) on one channel, which each API process subscribes to once.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from service.clips import Clip, ClipFormatError, decode, encode
from service.metrics import STREAM_FRAMES_DROPPED
from service.pause import pause
from service.queue.base import LANES, ClipQueue, ClipResult, Delivery, ResultStore

log = logging.getLogger(__name__)

GROUP = "lumos-infer"
_PREFIX = "lumos:"
_ANNOUNCE = f"{_PREFIX}stored"
_RECHECK_S = 5.0
"""How often a waiter looks for its results unwoken: announcements made while the subscription
is down (Redis restarting) are lost."""

# Drop a live lane's oldest undelivered entries beyond its bound, older than the entry just
# appended (ARGV[3]), in one atomic step. Entries already delivered (pending on a consumer) are not
# dropped: their work is under way. Returns the stream ids of the dropped clips, to count them.
_DROP_OLDEST = """
local dropped = {}
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then return dropped end
local start = '-'
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  for i = 1, #group, 2 do
    if group[i] == 'name' and group[i + 1] ~= ARGV[2] then break end
    if group[i] == 'last-delivered-id' then start = '(' .. group[i + 1] end
  end
end
local older = redis.call('XRANGE', KEYS[1], start, '(' .. ARGV[3], 'COUNT', excess)
for _, entry in ipairs(older) do
  redis.call('XDEL', KEYS[1], entry[1])
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'stream' then table.insert(dropped, fields[i + 1]) end
  end
end
return dropped
"""


def lane_key(lane: str) -> str:
    return f"{_PREFIX}clips:{lane}"


class RedisQueue(ClipQueue):
    def __init__(self, redis: Redis, files_max: int, live_max: int, staleness_s: float) -> None:
        super().__init__(files_max, live_max, staleness_s)
        self.redis = redis
        self._drop_oldest = redis.register_script(_DROP_OLDEST)
        self._keys = {lane: lane_key(lane) for lane in LANES}
        self._lanes = {key.encode(): lane for lane, key in self._keys.items()}

    async def ensure_groups(self) -> None:
        """Create the consumer group of each lane (and the lane) if missing; idempotent."""
        for key in self._keys.values():
            try:
                await self.redis.xgroup_create(key, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _append(self, lane: str, clip: Clip) -> tuple[int, list[str]]:
        """Append and read the lane's depth in one round trip; only a live lane past its bound
        costs a second (the drop), so the common case moves the clip's bytes once and no script
        copies them."""
        key = self._keys[lane]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"clip": encode(clip), "stream": clip.stream})
            pipe.xlen(key)
            entry_id, depth = await pipe.execute()
        if lane == "files" or depth <= self.bounds[lane]:
            return depth, []
        dropped = await self._drop_oldest(keys=[key], args=[self.bounds[lane], GROUP, entry_id])
        return depth - len(dropped), [s.decode() for s in dropped]

    async def _read(self, consumer: str, count: int, timeout: float) -> list[Delivery]:
        streams = dict.fromkeys(self._keys.values(), ">")
        block = max(1, int(timeout * 1000))
        try:
            replies = await self.redis.xreadgroup(GROUP, consumer, streams, count, block)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_groups()  # Redis lost its data (restart without persistence)
            return []
        return await self._deliveries(
            (self._lanes[key], entry_id, fields)
            for key, entries in replies
            for entry_id, fields in entries
        )

    async def _deliveries(self, entries: Iterable[tuple[str, bytes, dict]]) -> list[Delivery]:
        """Decode entries; a corrupt one is logged, counted and acknowledged, never retried."""
        good: list[Delivery] = []
        for lane, entry_id, fields in entries:
            token = entry_id.decode()
            enqueued = int(token.split("-")[0]) / 1000
            try:
                good.append(Delivery(decode(fields[b"clip"]), lane, token, enqueued))
            except (ClipFormatError, KeyError) as exc:
                stream = fields.get(b"stream", b"unknown").decode(errors="replace")
                log.error("dropping corrupt queue entry %s of stream %s: %s", token, stream, exc)
                STREAM_FRAMES_DROPPED.labels(stream=stream, reason="corrupt").inc()
                await self._ack_tokens(lane, [token])
        return good

    async def _depths(self) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self._keys.values():
                pipe.xlen(key)
            lengths = await pipe.execute()
        return dict(zip(LANES, lengths, strict=True))

    async def ack(self, deliveries: Iterable[Delivery]) -> None:
        by_lane: dict[str, list[str]] = {}
        for d in deliveries:
            by_lane.setdefault(d.lane, []).append(d.token)
        for lane, tokens in by_lane.items():
            await self._ack_tokens(lane, tokens)

    async def _ack_tokens(self, lane: str, tokens: list[str]) -> None:
        key = self._keys[lane]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(key, GROUP, *tokens)
            pipe.xdel(key, *tokens)
            await pipe.execute()

    async def _claim(self, consumer: str, idle_ms: int, count: int) -> list[Delivery]:
        claimed: list[Delivery] = []
        for lane, key in self._keys.items():
            try:
                _, entries, deleted = await self.redis.xautoclaim(
                    key, GROUP, consumer, idle_ms, start_id="0-0", count=count
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                continue
            if deleted:  # dropped from the lane while their consumer held them
                await self._ack_tokens(lane, [t.decode() for t in deleted])
            claimed += await self._deliveries(
                (lane, entry_id, fields) for entry_id, fields in entries if fields
            )
        return claimed


class RedisResults(ResultStore):
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._waiting: dict[str, set[asyncio.Event]] = {}

    @staticmethod
    def _key(clip_id: str) -> str:
        return f"{_PREFIX}result:{clip_id}"

    @staticmethod
    def _index(stream: str) -> str:
        return f"{_PREFIX}results:{stream}"

    async def put(self, result: ClipResult) -> bool:
        stored = await self.redis.set(
            self._key(result.clip_id), result.model_dump_json(), nx=True, ex=self.ttl_s
        )
        if not stored:
            return False
        index = self._index(result.stream)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(index, {result.clip_id: result.start})
            pipe.zremrangebyscore(index, "-inf", time.time() - self.ttl_s)
            pipe.expire(index, self.ttl_s)
            pipe.publish(_ANNOUNCE, result.stream)
            await pipe.execute()
        return True

    async def get_many(self, ids: Sequence[str]) -> dict[str, ClipResult]:
        if not ids:
            return {}
        values = await self.redis.mget([self._key(i) for i in ids])
        return {i: ClipResult.model_validate_json(v) for i, v in zip(ids, values, strict=True) if v}

    async def for_stream(
        self, stream: str, since: float = 0.0, limit: int = 1000
    ) -> list[ClipResult]:
        ids = await self.redis.zrangebyscore(self._index(stream), f"({since}", "+inf", 0, limit)
        found = await self.get_many([i.decode() for i in ids])
        return list(found.values())

    async def listen(self, stopping: asyncio.Event) -> None:
        """Wake this process's waiters as their streams' results are announced, over one
        subscription for the process's life (one per upload would open and close a socket and cost
        three round trips each time)."""
        while not stopping.is_set():
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(_ANNOUNCE)
                    while not stopping.is_set():
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            for woken in self._waiting.get(message["data"].decode(), ()):
                                woken.set()
            except (RedisError, OSError) as exc:
                log.warning("result announcements interrupted, subscribing again: %s", exc)
                await pause(stopping, 1.0)

    async def wait(self, stream: str, ids: Sequence[str], timeout: float) -> list[ClipResult]:
        deadline = asyncio.get_running_loop().time() + timeout
        found: dict[str, ClipResult] = {}
        woken = asyncio.Event()
        waiting = self._waiting.setdefault(stream, set())
        waiting.add(woken)
        try:
            while True:
                woken.clear()  # before looking: a result stored meanwhile wakes the wait below
                found |= await self.get_many([i for i in ids if i not in found])
                missing = len(set(ids) - found.keys())
                if not missing:
                    return [found[i] for i in ids]
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise TimeoutError(f"{missing} of {len(ids)} results still missing")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(left, _RECHECK_S))
        finally:
            waiting.discard(woken)
            if not waiting:
                del self._waiting[stream]

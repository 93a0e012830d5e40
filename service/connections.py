"""Redis clients whose connections are fixed in number, to one Redis or to whichever Redis the
Sentinels say is the primary.

A pool that grows on demand leaves a process's sockets to chance (one more the first time some
commands overlap, whenever that happens) and lets many replicas exhaust Redis's `maxclients`.
The event loop's client holds `size` connections, opened at start, so an unreachable Redis fails
the start rather than the first request; the threads' client holds one.

With `LUMOS_REDIS_SENTINELS`, each connection asks the Sentinels for the primary when it
connects; after a failover the old primary's connections fail (refused, or READONLY once it
returns as a replica), and their next connect finds the promoted one. The callers already treat
a failed command as Redis being away for a moment, so a failover is one more such moment.
"""

from urllib.parse import unquote, urlparse

import redis
import redis.sentinel
from redis import asyncio as aioredis
from redis.asyncio import sentinel as aiosentinel

from service.settings import Settings

_SENTINEL_TIMEOUT_S = 2.0
"""A Sentinel that does not answer within this is skipped for the next."""


class _LoopSentinelPool(aiosentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's primary discovery with the blocking pool's fixed number of connections."""


class _ThreadSentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """The same for the threads' client."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Sentinel drops the idle connections when the primary moves; the blocking pool can
        only drop them all, which for the threads' one connection (about to reconnect) is the
        same."""
        super().disconnect()


def _database(settings: Settings) -> dict[str, object]:
    """Database number and credentials from LUMOS_REDIS_URL (its host is Sentinel's to say)."""
    if settings.redis_url is None:
        return {}
    url = urlparse(settings.redis_url)
    found: dict[str, object] = {"db": int(url.path.strip("/") or 0)}
    if url.username:
        found["username"] = unquote(url.username)
    if url.password:
        found["password"] = unquote(url.password)
    return found


def loop_client(settings: Settings, size: int) -> aioredis.Redis:
    """The event loop's client: `size` connections; a command waits for a free one."""
    if settings.redis_sentinels is None:
        assert settings.redis_url is not None
        pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=size)
    else:
        sentinels = aiosentinel.Sentinel(
            settings.sentinel_addresses(), socket_timeout=_SENTINEL_TIMEOUT_S
        )
        pool = _LoopSentinelPool(
            settings.redis_master_name, sentinels, max_connections=size, **_database(settings)
        )
    return aioredis.Redis(connection_pool=pool)


async def open_all(client: aioredis.Redis) -> None:
    """Open every connection of `client`'s pool now."""
    pool = client.connection_pool
    held = []
    try:
        for _ in range(pool.max_connections):
            held.append(await pool.get_connection())
    finally:  # Redis away: what did open goes back, the rest opens with the first commands
        for connection in held:
            await pool.release(connection)


def thread_client(settings: Settings) -> redis.Redis:
    """A client for the rare, short commands of worker threads (the active model's pointer,
    training job records): one connection, which they take in turn."""
    if settings.redis_sentinels is None:
        assert settings.redis_url is not None
        pool = redis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=1)
    else:
        sentinels = redis.sentinel.Sentinel(
            settings.sentinel_addresses(), socket_timeout=_SENTINEL_TIMEOUT_S
        )
        pool = _ThreadSentinelPool(
            settings.redis_master_name, sentinels, max_connections=1, **_database(settings)
        )
    return redis.Redis(connection_pool=pool)

"""Redis clients whose connections are fixed in number.

A pool that grows on demand leaves a process's sockets to chance (one more the first time some
commands overlap, whenever that happens) and lets many replicas exhaust Redis's `maxclients`.
The event loop's client holds `size` connections, opened at start, so an unreachable Redis fails
the start rather than the first request; the threads' client holds one.
"""

import redis
from redis import asyncio as aioredis


def loop_client(url: str, size: int) -> aioredis.Redis:
    """The event loop's client: `size` connections; a command waits for a free one."""
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=size)
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


def thread_client(url: str) -> redis.Redis:
    """A client for the rare, short commands of worker threads (the active model's pointer,
    training job records): one connection, which they take in turn."""
    return redis.Redis(
        connection_pool=redis.BlockingConnectionPool.from_url(url, max_connections=1)
    )

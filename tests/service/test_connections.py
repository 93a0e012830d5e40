"""Redis through Sentinel on one machine: the service's clients ask a real redis-sentinel for the
primary and keep their fixed number of connections to it; a bad Sentinel list is refused when the
settings are read. The failover itself, across hosts, is
tests/system/test_across_hosts_redis_failover.py.
"""

import asyncio
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from bench.servers import RedisServer
from service.connections import loop_client, open_all, thread_client
from service.settings import Settings


class LocalSentinel(RedisServer):
    """redis-sentinel on a free port of 127.0.0.1 watching `primary` as master `lumos`."""

    def __init__(self, primary: RedisServer, directory: Path) -> None:
        super().__init__()
        self.primary, self.directory = primary, directory

    def command(self) -> list[str]:
        config = self.directory / "sentinel.conf"  # Sentinel rewrites it as it learns
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor lumos 127.0.0.1 {self.primary.port} 1\n"
        )
        return ["redis-sentinel", str(config)]


def test_clients_reach_the_primary_the_sentinel_names_with_their_fixed_connections(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with LocalSentinel(redis_server, tmp_path) as sentinel:
        settings = Settings(
            redis_sentinels=f"127.0.0.1:{sentinel.port}",
            redis_url="redis://ignored:1/3",  # with Sentinels, only the database counts
        )
        assert settings.redis_enabled()
        primary = redis.Redis(port=redis_server.port, db=3)

        async def main() -> int:
            client = loop_client(settings, 4)
            try:
                await open_all(client)
                await client.set("written", "through the sentinel")
                ours = [c for c in primary.client_list() if not c["name"].startswith("sentinel")]
                return len(ours) - 1  # the probe's own aside
            finally:
                await client.aclose()

        assert asyncio.run(main()) == 4
        assert primary.get("written") == b"through the sentinel"
        threads = thread_client(settings)
        assert threads.get("written") == b"through the sentinel"
        threads.close()


@pytest.mark.parametrize(
    "sentinels", ["sentinel", "sentinel:", ":26379", "s1:26379,s2", "s1:0", "s1:65536", "s1:2x"]
)
def test_a_sentinel_list_that_is_not_host_port_pairs_is_refused(sentinels: str) -> None:
    with pytest.raises(ValidationError, match="is not HOST:PORT"):
        Settings(redis_sentinels=sentinels)


def test_sentinel_addresses_are_read_in_order() -> None:
    settings = Settings(redis_sentinels="s1:26379, [::1]:26380")
    assert settings.sentinel_addresses() == [("s1", 26379), ("::1", 26380)]
    assert not Settings().redis_enabled()

"""RedisSources: state reads are memoized within one request, fresh in the next."""

from __future__ import annotations

import redis

from engine.model import pack
from worker.keys import Keys
from worker.sources import RedisSources


def test_reads_are_memoized_per_request(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}:sources")
    sources = RedisSources(client, keys)
    try:
        client.hset(keys.state("c"), b"k", pack([b"one", 3]))
        sources.begin_request()
        assert sources.get("c", b"k") == (b"one", 3)
        assert sources.get("c", b"absent") is None
        client.hset(keys.state("c"), b"k", pack([b"two", 4]))
        client.hset(keys.state("c"), b"absent", pack([b"now", 5]))
        assert sources.get("c", b"k") == (b"one", 3)  # same request: the snapshot it saw
        assert sources.get("c", b"absent") is None
        sources.begin_request()
        assert sources.get("c", b"k") == (b"two", 4)
        assert sources.get("c", b"absent") == (b"now", 5)
    finally:
        client.delete(keys.state("c"))
        client.close()

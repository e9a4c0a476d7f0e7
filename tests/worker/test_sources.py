"""RedisSources: committed-state reads are cached until the next commit bumps the seq."""

from __future__ import annotations

import redis

from worker.protocol import Keys, encode_state
from worker.sources import RedisSources


def test_reads_are_cached_until_a_commit_bumps_the_state_seq(
    redis_url: str, key_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}:sources")
    sources = RedisSources(client, keys)
    try:
        client.set(keys.state_seq, 3)
        client.hset(keys.state("c"), b"k", encode_state(b"one", 3))
        sources.begin_request()
        assert sources.get("c", b"k") == (b"one", 3)
        assert sources.get("c", b"absent") is None
        client.hset(keys.state("c"), b"k", encode_state(b"two", 4))
        client.hset(keys.state("c"), b"absent", encode_state(b"now", 4))
        assert sources.get("c", b"k") == (b"one", 3)  # same request: the snapshot it saw
        sources.begin_request()
        assert sources.get("c", b"absent") is None  # no commit announced: still cached
        client.incr(keys.state_seq)  # what commit and deploy do with every state write
        sources.begin_request()
        assert sources.get("c", b"k") == (b"two", 4)
        assert sources.get("c", b"absent") == (b"now", 4)
    finally:
        client.delete(keys.state("c"), keys.state_seq)
        client.close()

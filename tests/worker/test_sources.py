"""RedisSources: committed-state reads are cached until the next commit bumps the seq, and
keys jobs declare are fetched together."""

from __future__ import annotations

import pytest
import redis

from engine.model import MAX_ACCESS_KEYS
from worker.protocol import Keys, encode_state
from worker.sources import RedisSources, declared


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


def test_declared_keys_are_read_together_and_served_from_the_prefetch(
    redis_url: str, key_prefix: str
) -> None:
    """Access lists: one pipelined HMGET per contract, before the jobs run; after it the
    keys come from the prefetch (deleting them in Redis shows it), absent ones too."""
    client = redis.Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}:prefetch")
    sources = RedisSources(client, keys)
    jobs = [{"contract": "c", "access": [b"a", b"b"]}, {"contract": "d", "access": [b"x"]},
            {"contract": "c", "access": "not a list"}, {"contract": "c", "access": [1, b"z"]},
            {"contract": "c", "access": [b"k"] * (MAX_ACCESS_KEYS + 1)}, "not a map"]
    try:
        client.set(keys.state_seq, 1)
        client.hset(keys.state("c"), b"a", encode_state(b"A", 1))
        client.hset(keys.state("d"), b"x", encode_state(b"X", 1))
        sources.begin_request()
        sources.prefetch(declared(jobs))
        assert sorted(declared(jobs)) == [("c", b"a"), ("c", b"b"), ("c", b"z"), ("d", b"x")]
        client.delete(keys.state("c"), keys.state("d"))
        assert sources.get("c", b"a") == (b"A", 1)
        assert sources.get("d", b"x") == (b"X", 1)
        assert sources.get("c", b"b") is None
        client.hset(keys.state("c"), b"b", b"not a record")
        sources.prefetch([("c", b"b"), ("c", b"q")])  # already read: not fetched again
        assert sources.get("c", b"b") is None
        client.hset(keys.state("c"), b"q", b"not a record")
        fresh = RedisSources(client, keys)
        fresh.prefetch([("c", b"q")])  # a bad record is left to the job's own read
        with pytest.raises(ValueError, match="not a state record"):
            fresh.get("c", b"q")
    finally:
        client.delete(keys.state("c"), keys.state("d"), keys.state_seq)
        client.close()

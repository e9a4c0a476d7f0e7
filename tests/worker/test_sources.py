"""RedisSources: committed-state reads are cached until the next commit bumps the seq, and
keys jobs declare are fetched together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
import redis.client

from engine.model import Job
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
    jobs = [Job("t1", "c", "f", access=(b"a", b"b")), Job("t2", "d", "f", access=(b"x",)),
            None, Job("t3", "c", "f", access=(b"z",)), Job("t4", "c", "f")]
    try:
        client.set(keys.state_seq, 1)
        client.hset(keys.state("c"), b"a", encode_state(b"A", 1))
        client.hset(keys.state("d"), b"x", encode_state(b"X", 1))
        sources.begin_request(declared(jobs))
        assert sorted(declared(jobs)) == [("c", b"a"), ("c", b"b"), ("c", b"z"), ("d", b"x")]
        client.delete(keys.state("c"), keys.state("d"))
        assert sources.get("c", b"a") == (b"A", 1)
        assert sources.get("d", b"x") == (b"X", 1)
        assert sources.get("c", b"b") is None
        client.hset(keys.state("c"), b"b", b"not a record")
        sources.begin_request([("c", b"b"), ("c", b"q")])  # already read: not fetched again
        assert sources.get("c", b"b") is None
        client.hset(keys.state("c"), b"q", b"not a record")
        fresh = RedisSources(client, keys)
        fresh.begin_request([("c", b"q")])  # a bad record is left to the job's own read
        with pytest.raises(ValueError, match="not a state record"):
            fresh.get("c", b"q")
    finally:
        client.delete(keys.state("c"), keys.state("d"), keys.state_seq)
        client.close()


class Counting(redis.Redis):
    """A real client that counts its round trips (commands and pipelines)."""

    trips = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> redis.client.Pipeline:
        outer = self

        class Counted(redis.client.Pipeline):
            def execute(self, raise_on_error: bool = True) -> list[Any]:
                outer.trips += 1
                return super().execute(raise_on_error)

        return Counted(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def test_after_a_commit_the_declared_keys_the_cache_held_are_read_again(
    redis_url: str, key_prefix: str
) -> None:
    """The seq and the keys not cached come in one round trip; when the seq moved, the
    cache goes and the declared keys it held are read again before the jobs run."""
    client = redis.Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}:recheck")
    counted = Counting(connection_pool=redis.ConnectionPool.from_url(redis_url))
    sources = RedisSources(counted, keys)
    try:
        client.set(keys.state_seq, 1)
        client.hset(keys.state("c"), mapping={b"a": encode_state(b"A1", 1),
                                              b"b": encode_state(b"B1", 1)})
        sources.begin_request([("c", b"a")])
        client.hset(keys.state("c"), mapping={b"a": encode_state(b"A2", 2),
                                              b"b": encode_state(b"B2", 2)})
        before = counted.trips
        sources.begin_request([("c", b"a"), ("c", b"b")])  # no commit announced
        assert sources.get("c", b"a") == (b"A1", 1)  # cached
        assert sources.get("c", b"b") == (b"B2", 2)  # not cached: read with the seq
        assert counted.trips - before == 1
        client.hset(keys.state("c"), mapping={b"a": encode_state(b"A3", 3),
                                              b"b": encode_state(b"B3", 3)})
        client.incr(keys.state_seq)
        before = counted.trips
        sources.begin_request([("c", b"a"), ("c", b"b")])
        client.delete(keys.state("c"))  # what follows comes from the prefetch
        assert sources.get("c", b"a") == (b"A3", 3)
        assert sources.get("c", b"b") == (b"B3", 3)
        assert counted.trips - before == 2  # the seq moved: the held keys again
    finally:
        counted.close()
        client.delete(keys.state("c"), keys.state_seq)
        client.close()


def test_a_bad_hash_costs_its_own_keys_not_the_cache(redis_url: str, key_prefix: str) -> None:
    """A declared contract whose state key holds no hash (a string: the reserved "seq" is
    never declared at all) fails its own HMGET; the seq, the other keys and the cache
    stand."""
    client = redis.Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}:badhash")
    sources = RedisSources(client, keys)
    try:
        client.set(keys.state_seq, 1)
        client.set(keys.state("odd"), b"not a hash")
        client.hset(keys.state("c"), mapping={b"a": encode_state(b"A", 1),
                                              b"n": encode_state(b"N", 1)})
        sources.begin_request([("c", b"a")])
        sources.begin_request([("odd", b"k"), ("c", b"n")])
        client.delete(keys.state("c"))  # what follows comes from the cache and the prefetch
        assert sources.get("c", b"a") == (b"A", 1)
        assert sources.get("c", b"n") == (b"N", 1)
    finally:
        client.delete(keys.state("c"), keys.state("odd"), keys.state_seq)
        client.close()


def test_the_read_cache_holds_a_bounded_number_of_bytes_and_a_tx_one_version_of_a_key(
    redis_url: str, key_prefix: str
) -> None:
    """Large values read or declared, request after request, never leave the cache past
    its budget between txs (by count alone it kept 500,000 values of up to 64 KiB); it is
    emptied only between txs, so a tx reading a key twice sees one version of it."""
    budget = 300_000
    client = redis.Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}:bounded")
    sources = RedisSources(client, keys, cache_bytes=budget)
    values = {b"k%d" % i: bytes([i]) * 10_000 for i in range(40)}  # ~1.4 budgets
    try:
        client.set(keys.state_seq, 1)
        client.hset(keys.state("c"), mapping={k: encode_state(v, 1) for k, v in values.items()})
        seen = 0
        for _ in range(3):
            sources.begin_request(declared([Job("t", "c", "f", access=tuple(values))]))
            for key, value in values.items():
                sources.reset()  # a tx: reads the key, Redis changes it, reads it again
                assert sources.cached_bytes <= budget
                seen = max(seen, sources.cached_bytes)
                assert sources.get("c", key) == (value, 1)
                client.hset(keys.state("c"), key, encode_state(b"newer", 2))
                assert sources.get("c", key) == (value, 1)
                assert sources.get("c", key + b"-absent") is None
                client.hset(keys.state("c"), key, encode_state(value, 1))
        assert seen > budget // 2  # it did fill up
        assert sources.max_prefetch == 2  # what half the budget holds at 64 KiB a value
    finally:
        client.delete(keys.state("c"), keys.state_seq)
        client.close()


def test_an_address_that_names_no_code_hash_is_no_contract_and_touches_no_file(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """The hash under `{p}:addr:` names the compiled artifact's file: a hostile record
    ("../../victim") pointed the cache at a file outside it, which a failed tag check
    then removed."""
    from config import load_settings
    from engine import WasmEngine
    from engine.compiler import ArtifactCache
    from tests.support.farm import job_map

    victim = tmp_path / "victim.cwasm"
    victim.write_bytes(b"someone else's file")
    client = redis.Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}:traversal")
    sources = RedisSources(client, keys)
    engine = WasmEngine(load_settings(cache_dir=tmp_path / "cache"))
    try:
        for bad in ("../" * 12 + str(victim.with_suffix("")).lstrip("/"), "AB" * 32, "x"):
            client.set(keys.address("c"), bad)
            assert sources.code_hash("c") is None
            result = engine.execute_wire(job_map("t", "c", "f"), sources, sources)
            assert result.status == "invalid" and "unknown contract" in result.error["message"]
        assert victim.read_bytes() == b"someone else's file"
        with pytest.raises(ValueError, match="not a code hash"):
            ArtifactCache(tmp_path / "cache", "fp", "secret").path("../victim")
    finally:
        engine.shutdown()
        client.delete(keys.address("c"))
        client.close()

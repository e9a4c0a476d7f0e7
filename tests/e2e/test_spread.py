"""A block spreads over every live executor (worker/claim.py, producer/enqueue.py): workers
advertise their executors, the producer cuts parts to fit, and a worker claims only
what its executors can start soon."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
import wasmtime

from config import load_settings
from producer.client import FarmClient
from producer.enqueue import MIN_PART_TXS, part_size
from tests.support.farm import WORK_WAT, two_worker_farm
from worker.protocol import ADVERTISE_LUA, Keys

pytestmark = pytest.mark.integration


def test_parts_follow_the_live_executors() -> None:
    s = load_settings(batch_size=256, parts_per_executor=4)
    assert part_size(300, 0, s) == 256  # no worker advertised yet
    assert part_size(300, 2, s) == 38  # 8 parts
    assert part_size(20_000, 4, s) == 256  # capped
    assert part_size(10, 4, s) == MIN_PART_TXS


async def test_an_expired_word_is_dropped_and_not_counted(redis_url: str, key_prefix: str) -> None:
    keys = Keys(f"{key_prefix}-word")
    sync = redis.Redis.from_url(redis_url)
    try:
        for name, ttl_ms, executors in (("gone", -1_000, 7), ("live", 60_000, 3),
                                        ("liar", 60_000, "1e400"), ("odd", 60_000, "x")):
            sync.eval(ADVERTISE_LUA, 3, keys.workers, keys.worker_executors,
                      keys.worker_versions, name, ttl_ms, executors, "v1")
        async with FarmClient(load_settings(redis_url=redis_url, key_prefix=keys.prefix)) as c:
            size = await c.farm_size()
        assert (size.workers, size.executors) == (3, 3 + 1024)  # a lie counts 1,024 at most
        assert sorted(sync.hkeys(keys.worker_executors)) == [b"liar", b"live", b"odd"]
        assert sorted(sync.hkeys(keys.worker_versions)) == [b"liar", b"live", b"odd"]
    finally:
        sync.delete(keys.workers, keys.worker_executors, keys.worker_versions)
        sync.close()


async def test_two_workers_share_one_block_and_a_stopped_one_leaves(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """One executor each: a worker holds two of the block's eight parts at a time, so the
    other always finds unclaimed ones (before, the first to poll took them all)."""
    with two_worker_farm(redis_url, key_prefix, tmp_path, executors=1) as farm:
        async with FarmClient(farm.settings()) as client:
            deadline = time.monotonic() + 30
            while (await client.farm_size()).executors < 2:
                assert time.monotonic() < deadline, "the workers never advertised"
                await asyncio.sleep(0.1)
            await client.deploy(bytes(wasmtime.wat2wasm(WORK_WAT)), "work", precompile=True)
            jobs = [client.make_job("work", "work", (4_000_000 + i).to_bytes(8, "little"),
                                    fee_limit=10**9, tx_id=farm.tx_id(f"spread-{i}"))
                    for i in range(64)]
            await client.submit_batch(jobs)
            done = await client.wait([j.tx_id for j in jobs], timeout=120)
            assert {r.status for r in done.values()} == {"ok"}
            share = Counter(r.worker for r in done.values())
            assert len(share) == 2 and min(share.values()) >= MIN_PART_TXS, share

            assert farm.workers[0].stop() == 0
            size = await client.farm_size()
            assert (size.workers, size.executors) == (1, 1)

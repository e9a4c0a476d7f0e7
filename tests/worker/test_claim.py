"""ClaimingWorker: arq's per-job claim, made in one Lua call per poll (worker/claim.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from arq.connections import RedisSettings, create_pool
from arq.constants import in_progress_key_prefix
from arq.worker import func

from worker.claim import CLAIM_LUA, RENEW_LUA, ClaimingWorker
from worker.protocol import job_tx_count


@pytest.fixture()
def queue(redis_url: str, key_prefix: str) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(redis_url)
    name = f"{key_prefix}-claim-{uuid.uuid4().hex[:8]}"
    yield client, name
    for key in client.scan_iter(match=f"*{name}*"):
        client.delete(key)
    client.close()


def claim(client: redis.Redis, queue: str, ids: list[str], limit: int = 1_000,
          now: int | None = None, parts: int | None = None, singles: int | None = None,
          txs: list[int] | None = None) -> list[str]:
    now = now if now is not None else int(time.time() * 1000)
    weighted = [x for job_id, n in zip(ids, txs or [1] * len(ids), strict=True)
                for x in (job_id, n)]
    reply = client.eval(CLAIM_LUA, 1, queue, now, 60_000, in_progress_key_prefix, limit,
                        limit if parts is None else parts,
                        limit if singles is None else singles, *weighted)
    return [reply[i].decode() for i in range(0, len(reply) - 1, 2)]  # (last: how many held)


def test_two_workers_polling_the_same_ids_claim_each_job_once(
    queue: tuple[redis.Redis, str],
) -> None:
    client, name = queue
    ids = [f"{name}-j{i}" for i in range(50)]
    client.zadd(name, {job: 1_000 + i for i, job in enumerate(ids)})
    claimed: list[str] = []
    for _ in range(6):  # two workers taking turns, 10 slots each time
        claimed += claim(client, name, ids, limit=10)
    assert sorted(claimed) == sorted(ids) and len(claimed) == len(set(claimed))
    ttl = client.pttl(in_progress_key_prefix + ids[0])
    assert 0 < ttl <= 60_000


def test_a_claim_takes_parts_and_singles_each_within_its_room(
    queue: tuple[redis.Redis, str],
) -> None:
    client, name = queue
    ids = [f"{name}-j{i}" for i in range(6)]
    client.zadd(name, {job: 1_000 + i for i, job in enumerate(ids)})
    sizes = [200, 1, 8, 1, 1, 40]
    assert claim(client, name, ids, parts=2, singles=1, txs=sizes) == ids[:3]
    # no room: nothing claimed, the rest stays queued
    assert claim(client, name, ids, parts=0, singles=0, txs=sizes) == []
    assert claim(client, name, ids, parts=0, singles=5, txs=sizes) == ids[3:5]
    assert claim(client, name, ids, parts=1, singles=0, txs=sizes) == ids[5:]


@pytest.mark.parametrize(("job_id", "txs"), [
    ("tx-1", 1), ("batch:p:12:ab", 12), ("batch:p:q:3:ab", 3), ("batch:p:0:ab", 1),
    ("batch:p:-5:ab", 1), ("batch:p:x:ab", 1), ("batch:", 1), ("batch:12", 1),
    ("batch:p:99999999999:ab", 10_000), ("batch:p:１２:ab", 1), ("batch:p:²:ab", 1),
    ("batch:p:" + "9" * 5_000 + ":ab", 1),  # int() of it would raise and end the poll loop
])
def test_a_job_weighs_what_its_id_says_within_bounds(job_id: str, txs: int) -> None:
    assert job_tx_count(job_id) == txs


def test_deferred_running_and_finished_jobs_are_left_alone(
    queue: tuple[redis.Redis, str],
) -> None:
    client, name = queue
    now = int(time.time() * 1000)
    client.zadd(name, {f"{name}-due": now - 5, f"{name}-later": now + 60_000,
                       f"{name}-running": now - 5})
    client.set(in_progress_key_prefix + f"{name}-running", b"1")
    ids = [f"{name}-{k}" for k in ("later", "running", "gone", "due")]
    assert claim(client, name, ids, now=now) == [f"{name}-due"]
    assert claim(client, name, ids, now=now) == []  # now in progress


def test_renewal_extends_held_leases_and_leaves_lapsed_ones_gone(
    queue: tuple[redis.Redis, str],
) -> None:
    """On every Redis the farm runs on (the embedded one is 6.2: no PEXPIRE ... XX)."""
    client, name = queue
    held, gone = in_progress_key_prefix + f"{name}-held", in_progress_key_prefix + f"{name}-gone"
    client.psetex(held, 1_000, b"1")
    client.eval(RENEW_LUA, 0, 60_000, in_progress_key_prefix, f"{name}-held", f"{name}-gone")
    assert 1_000 < client.pttl(held) <= 60_000
    assert not client.exists(gone)


@pytest.fixture()
async def arq_pool(redis_url: str, queue: tuple[redis.Redis, str]) -> AsyncIterator[Any]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=queue[1])
    yield pool
    await pool.aclose()


async def double(ctx: dict[str, Any], x: int) -> int:
    return 2 * x


async def test_the_worker_runs_every_job_it_claims_with_arqs_own_machinery(
    redis_url: str, queue: tuple[redis.Redis, str], arq_pool: Any,
) -> None:
    name = queue[1]
    jobs = [await arq_pool.enqueue_job("double", i, _job_id=f"{name}-{i}") for i in range(40)]
    worker = ClaimingWorker(functions=[func(double, name="double")], queue_name=name,
                            redis_settings=RedisSettings.from_dsn(redis_url), burst=True,
                            max_jobs=8, poll_delay=0.01, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()
    assert worker._scripts is not None  # the jobs were claimed by the script
    assert worker.jobs_complete == 40 and worker.jobs_failed == 0
    assert [await job.result(timeout=5) for job in jobs] == [2 * i for i in range(40)]


async def test_members_that_no_worker_can_claim_at_the_queue_head_starve_no_job(
    redis_url: str, queue: tuple[redis.Redis, str], arq_pool: Any,
) -> None:
    """A poll reads a page of the queue from its head. Members scored at or below 0 and
    members whose leases never lapse (written by someone else) filled every page, and
    the jobs behind them never ran."""
    import asyncio

    from worker.arq_keys import in_progress_prefix

    client, name = queue
    limit = 50
    client.zadd(name, {f"{name}-zero-{i}": 0 for i in range(2 * limit)})
    client.zadd(name, {f"{name}-held-{i}": 1 for i in range(3 * limit)})
    for i in range(3 * limit):
        client.set(f"{in_progress_prefix()}{name}-held-{i}", b"1")  # no TTL
    jobs = [await arq_pool.enqueue_job("double", i, _job_id=f"{name}-{i}") for i in range(5)]
    worker = ClaimingWorker(functions=[func(double, name="double")], queue_name=name,
                            redis_settings=RedisSettings.from_dsn(redis_url),
                            max_jobs=8, poll_delay=0.01, handle_signals=False,
                            queue_read_limit=limit)
    running = asyncio.create_task(worker.main())
    try:
        assert [await job.result(timeout=20) for job in jobs] == [0, 2, 4, 6, 8]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()


async def test_a_job_whose_arq_keys_cannot_be_read_ends_instead_of_lapsing_forever(
    redis_url: str, queue: tuple[redis.Redis, str], arq_pool: Any,
) -> None:
    """A payload key of another type, or a retry count that is no integer (written by
    someone else), made arq's run_job fail: the job was claimed, failed and lapsed every
    lease, forever. The first leaves the queue; the second runs once the count goes."""
    import asyncio

    from worker.arq_keys import arq_key  # (as this process's arq names them)

    client, name = queue
    client.hset(arq_key("job_key_prefix", f"{name}-hash"), "f", "double")
    client.zadd(name, {f"{name}-hash": int(time.time() * 1000)})
    job = await arq_pool.enqueue_job("double", 21, _job_id=f"{name}-count")
    client.set(arq_key("retry_key_prefix", f"{name}-count"), b"x")
    worker = ClaimingWorker(functions=[func(double, name="double")], queue_name=name,
                            redis_settings=RedisSettings.from_dsn(redis_url),
                            max_jobs=8, poll_delay=0.01, handle_signals=False)
    running = asyncio.create_task(worker.main())
    try:
        assert await job.result(timeout=20) == 42
        deadline = time.monotonic() + 20
        while client.zscore(name, f"{name}-hash") is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert client.zscore(name, f"{name}-hash") is None
        assert not client.exists(arq_key("job_key_prefix", f"{name}-hash"))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()

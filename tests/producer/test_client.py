"""FarmClient against a real Redis, no workers: deploy, enqueue format, results, fees."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from config import Settings, load_settings
from engine.model import FeeReport, Result, pack
from producer.client import DeployError, FarmClient, JobIdTaken, WaitTimeout
from producer.sync_client import SyncFarmClient
from tests.support import CONTRACTS
from tests.support.farm import HELLO_WAT, plant_result, wasm
from worker.packed import PackedResult
from worker.protocol import (
    FN_BATCH,
    FN_EXECUTE,
    Keys,
    batch_job_id,
    encode_state,
    job_deserializer,
)
from worker.results import ResultWriter


def farm_settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    prefix = f"{key_prefix}-cl-{uuid.uuid4().hex[:8]}"
    return load_settings(redis_url=redis_url, key_prefix=prefix, queue_name=f"{prefix}:queue",
                         cache_dir=tmp_path / "cache")


@pytest.fixture()
async def farm(redis_url: str, key_prefix: str, tmp_path: Path) -> AsyncIterator[FarmClient]:
    async with FarmClient(farm_settings(redis_url, key_prefix, tmp_path)) as client:
        yield client


def result(tx_id: str, status: str = "ok", used: int = 10) -> Result:
    return Result(tx_id, status, FeeReport(100, used, {"instructions": used}, "wes-fee-test"),
                  return_data=b"\x01")


async def store(farm: FarmClient, *results: Result) -> None:
    await ResultWriter(farm.redis, farm.keys, farm.settings.result_ttl_s, 0).write(
        [PackedResult.of(r) for r in results])


# -- deploy ----------------------------------------------------------------------------------


async def test_deploy_stores_code_by_hash_and_binds_the_address_once(farm: FarmClient) -> None:
    code = (CONTRACTS / "token" / "token.wasm").read_bytes()
    first = await farm.deploy(code, "token")
    digest = hashlib.sha256(code).hexdigest()
    assert (first.code_hash, first.created) == (digest, True)
    assert await farm.redis.get(farm.keys.code(digest)) == code
    assert await farm.code_hash("token") == digest
    again = await farm.deploy(code, "token")  # the same code again: fine, nothing changes
    assert (again.code_hash, again.created) == (digest, False)


async def test_different_code_at_a_taken_address_is_a_conflict(farm: FarmClient) -> None:
    await farm.deploy(wasm(HELLO_WAT), "hello")
    other = (CONTRACTS / "counter" / "counter.wasm").read_bytes()
    with pytest.raises(DeployError) as info:
        await farm.deploy(other, "hello")
    assert info.value.status == "conflict"
    assert "already holds code" in info.value.reasons[0]
    assert await farm.code_hash("hello") == hashlib.sha256(wasm(HELLO_WAT)).hexdigest()


@pytest.mark.parametrize(
    ("wat", "status", "piece"),
    [
        ('(module (import "env" "abort" (func)) (memory (export "memory") 1))', "rejected",
         "env.abort"),
        ('(module (memory (export "memory") 1) (func $s) (start $s))', "rejected", "start"),
        ('(module (memory (export "memory") 300))', "rejected", "300 pages"),
    ],
)
async def test_a_rejected_module_gives_the_reasons_and_stores_nothing(
    farm: FarmClient, wat: str, status: str, piece: str
) -> None:
    code = wasm(wat)
    with pytest.raises(DeployError) as info:
        await farm.deploy(code, "bad")
    assert info.value.status == status
    assert any(piece in reason for reason in info.value.reasons), info.value.reasons
    assert await farm.code_hash("bad") is None
    assert not await farm.redis.exists(farm.keys.code(hashlib.sha256(code).hexdigest()))


async def test_garbage_bytes_are_invalid(farm: FarmClient) -> None:
    with pytest.raises(DeployError) as info:
        await farm.deploy(b"not wasm at all", "junk")
    assert info.value.status == "invalid"


async def test_init_runs_once_at_deploy_and_its_writes_are_committed(farm: FarmClient) -> None:
    code = (CONTRACTS / "counter" / "counter.wasm").read_bytes()
    await farm.deploy(code, "ctr")
    value, version = await farm.state("ctr", b"count") or (b"", 0)
    assert value == bytes(8) and version >= 1
    await farm.deploy(code, "ctr")  # idempotent: init does not run again
    assert await farm.state("ctr", b"count") == (value, version)


# -- enqueue ---------------------------------------------------------------------------------


async def test_pipelined_batches_are_arq_jobs_the_worker_can_decode(farm: FarmClient) -> None:
    jobs = [farm.make_job("c", "f", bytes([i]), tx_id=f"{farm.queue}-b{i}") for i in range(5)]
    await farm.submit_batch(jobs, batch_size=2)
    queued = await farm.redis.zrange(farm.queue, 0, -1)
    ids = [[j.tx_id for j in jobs[i : i + 2]] for i in range(0, 5, 2)]
    assert sorted(q.decode() for q in queued) == sorted(
        batch_job_id(farm.settings.key_prefix, group) for group in ids
    )
    for group in ids:
        raw = await farm.redis.get(farm.keys.arq("job:")
                                   + batch_job_id(farm.settings.key_prefix, group))
        decoded = job_deserializer(raw)
        assert decoded["f"] == FN_BATCH and decoded["k"] == {}
        assert [m["tx_id"] for m in decoded["a"][0]] == group
        assert isinstance(decoded["a"][0][0]["input"], bytes)  # bytes stay bytes, no pickle
    # the same batch again is a no-op (its arq job is still queued)
    await farm.submit_batch(jobs, batch_size=2)
    assert await farm.redis.zcard(farm.queue) == 3


async def test_single_tx_jobs_use_the_tx_id_as_job_id(farm: FarmClient) -> None:
    jobs = [farm.make_job("c", "f", tx_id=f"{farm.queue}-s{i}") for i in range(3)]
    await farm.submit_batch(jobs, batch_size=1)
    for job in jobs:
        raw = await farm.redis.get(farm.keys.arq("job:") + job.tx_id)
        decoded = msgpack.unpackb(raw, raw=False)
        assert decoded["f"] == FN_EXECUTE and decoded["a"] == [job.to_wire()]
        assert decoded["t"] == 1


async def test_a_fee_stream_key_of_another_type_fails_no_enqueue(farm: FarmClient) -> None:
    """The client's stream reader cannot start on it: that is a wait's to meet, not the
    enqueue's (a worker's first write replaces the key), and nothing is left expected."""
    await farm.redis.set(farm.keys.fees, "not a stream")
    jobs = [farm.make_job("c", "f", tx_id=f"{farm.queue}-w{i}") for i in range(3)]
    assert await farm.submit_batch(jobs, batch_size=1) == [j.tx_id for j in jobs]
    assert await farm.redis.zcard(farm.queue) == 3
    assert not farm.fee_watch.expected


async def test_a_tx_id_arq_already_finished_elsewhere_is_reported(farm: FarmClient) -> None:
    tx_id = f"{farm.queue}-used"
    await farm.redis.set(farm.keys.arq("result:") + tx_id, b"x", ex=60)  # arq kept it
    with pytest.raises(JobIdTaken, match="use fresh tx ids"):
        await farm.submit_batch([farm.make_job("c", "f", tx_id=tx_id)], batch_size=1)
    await store(farm, result(tx_id))  # ... but with our own result present it is fine
    await farm.submit_batch([farm.make_job("c", "f", tx_id=tx_id)], batch_size=1)


async def test_skip_done_leaves_out_txs_with_results(farm: FarmClient) -> None:
    jobs = [farm.make_job("c", "f", tx_id=f"{farm.queue}-k{i}") for i in range(4)]
    await store(farm, result(jobs[1].tx_id), result(jobs[3].tx_id))
    await farm.submit_batch(jobs, batch_size=1, skip_done=True)
    queued = {q.decode() for q in await farm.redis.zrange(farm.queue, 0, -1)}
    assert queued == {jobs[0].tx_id, jobs[2].tx_id}


# -- results, wait, fees ---------------------------------------------------------------------


async def test_results_wait_and_fee_reports(farm: FarmClient) -> None:
    ids = [f"w{i}" for i in range(1200)]  # more than one MGET chunk and one XRANGE page
    await store(farm, *(result(t, used=i) for i, t in enumerate(ids[:1100])))
    found = await farm.results(ids)
    assert found["w5"] is not None and found["w5"].fee.used == 5 and found["w1150"] is None
    progress: list[tuple[int, int]] = []
    with pytest.raises(WaitTimeout) as info:
        await farm.wait(ids, timeout=0.05, progress_cb=lambda d, t: progress.append((d, t)))
    assert len(info.value.done) == 1100 and info.value.missing == ids[1100:]
    assert progress[-1] == (1100, 1200)

    async def later() -> None:
        await asyncio.sleep(0.05)
        await store(farm, *(result(t) for t in ids[1100:]))

    seen: dict[str, float] = {}
    task = asyncio.create_task(later())
    done = await farm.wait(ids, timeout=30, seen=seen)
    await task
    assert set(done) == set(ids) == set(seen)
    records = await farm.fee_reports(page=500)
    assert [r.tx_id for r in records] == ids and records[7].fee["used"] == 7
    assert records[0].status == "ok"
    assert [r.tx_id for r in await farm.fee_reports(["w3", "w1199"])] == ["w3", "w1199"]
    assert len(await farm.fee_reports(count=10)) == 10


async def test_a_wait_fetches_no_result_again_once_it_has_it(farm: FarmClient) -> None:
    """Results land in batches, as workers write them, while the wait rescans on every
    turn: a tx the stream named and a scan found in between is not fetched again."""
    ids = [f"f{i}" for i in range(2_000)]
    fetches: list[tuple[list[str], set[str]]] = []  # (asked, found) per fetch
    fetch = farm.results

    async def counted(tx_ids: list[str], parts: Any = None) -> dict[str, Result | None]:
        found = await fetch(tx_ids, parts)
        fetches.append((list(tx_ids), {t for t, r in found.items() if r is not None}))
        return found

    farm.results = counted  # type: ignore[method-assign]

    async def later() -> None:
        for i in range(0, len(ids), 50):
            await store(farm, *(result(t) for t in ids[i : i + 50]))
            await asyncio.sleep(0)

    task = asyncio.create_task(later())
    done = await farm.wait(ids, timeout=60, rescan_s=0.0)
    await task
    assert set(done) == set(ids)
    have: set[str] = set()
    for asked, found in fetches:
        assert not have & set(asked), sorted(have & set(asked))[:5]
        have |= found


async def test_state_reads_the_committed_layout(farm: FarmClient) -> None:
    await farm.redis.hset(farm.keys.state("tok"), b"k\x00", encode_state(b"\xffv", 42))
    assert await farm.state("tok", b"k\x00") == (b"\xffv", 42)
    assert await farm.state("tok", b"nope") is None


def test_sync_client_wraps_the_async_one(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    settings = farm_settings(redis_url, key_prefix, tmp_path)
    with SyncFarmClient(settings) as farm:
        done = farm.deploy(wasm(HELLO_WAT), "hello")
        assert done.created and farm.code_hash("hello") == done.code_hash
        client = redis.Redis.from_url(redis_url)
        plant_result(client, Keys(settings.key_prefix), "s1", pack(result("s1").to_wire()),
                     settings.result_ttl_s)
        client.close()
        assert farm.wait(["s1"], timeout=5)["s1"].status == "ok"
        assert farm.results(["s1", "s2"])["s2"] is None


async def test_a_tx_id_that_looks_like_a_batch_job_id_is_refused(farm: FarmClient) -> None:
    """Workers weigh a job by its id: a tx could otherwise pass for a block part."""
    job = farm.make_job("c", "f", tx_id="batch:p:10000:x")
    for submit in (farm.enqueue([job]), farm.submit_batch([job], batch_size=2)):
        with pytest.raises(ValueError, match="batch job ids"):
            await submit
    with pytest.raises(ValueError, match="batch job ids"):
        await farm.call("c", "f", tx_id="batch:p:10000:x")
    assert not await farm.redis.exists(farm.keys.arq("job:") + job.tx_id)

"""Idempotent result + fee-report writes (worker/results.py) against a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from engine.model import FeeReport, Result
from worker.packed import PackedResult
from worker.protocol import FeeEntry, Keys
from worker.results import ResultWriter


def _result(
    tx_id: str, status: str = "ok", used: int = 100, data: bytes = b"one"
) -> PackedResult:
    fee = FeeReport(limit=1_000, used=used, breakdown={"instructions": used}, schedule="test")
    return PackedResult.of(Result(tx_id=tx_id, status=status, fee=fee, return_data=data))


async def fee_entries(redis: Redis, keys: Keys) -> list[FeeEntry]:
    return [FeeEntry.decode(i, fields) for i, fields in await redis.xrange(keys.fees)]


@pytest.fixture()
async def writer(redis_url: str, key_prefix: str) -> AsyncIterator[ResultWriter]:
    client = Redis.from_url(redis_url)
    yield ResultWriter(client, Keys(f"{key_prefix}-res-{uuid.uuid4().hex[:8]}"))
    await client.aclose()


async def test_second_write_of_a_tx_keeps_the_first_result_and_one_fee_entry(
    writer: ResultWriter,
) -> None:
    first = _result("tx-1", used=100, data=b"first")
    second = _result("tx-1", status="timeout", used=0, data=b"second")
    [w1] = await writer.write([first])
    [w2] = await writer.write([second])
    assert w1.created and not w2.created
    assert w2.result == first  # the second delivery gets the first result back
    [stored] = await writer.existing(["tx-1"])
    assert stored == first
    entries = await fee_entries(writer.redis, writer.keys)
    assert [(e.tx_id, e.status, e.fee["used"]) for e in entries] == [("tx-1", "ok", 100)]


async def test_concurrent_writers_of_one_tx_produce_one_result(writer: ResultWriter) -> None:
    candidates = [_result("tx-race", used=i + 1, data=bytes([i])) for i in range(20)]
    outcomes = await asyncio.gather(*(writer.write([c]) for c in candidates))
    created = [w for [w] in outcomes if w.created]
    assert len(created) == 1
    assert all(w.result == created[0].result for [w] in outcomes)
    entries = await fee_entries(writer.redis, writer.keys)
    assert len(entries) == 1 and entries[0].fee["used"] == created[0].result.fee_used


async def test_writers_racing_on_many_connections_store_each_tx_once(
    writer: ResultWriter,
) -> None:
    tx_ids = [f"tx-{i}" for i in range(300)]  # more than one script call each
    writers = [ResultWriter(writer.redis, writer.keys) for _ in range(6)]
    outcomes = await asyncio.gather(*(
        w.write([_result(t, used=k + 1, data=bytes([k])) for t in tx_ids])
        for k, w in enumerate(writers)))
    for i in range(len(tx_ids)):
        mine = [written[i] for written in outcomes]
        assert sum(w.created for w in mine) == 1
        assert len({w.result for w in mine}) == 1  # every writer got the one stored back
    entries = await fee_entries(writer.redis, writer.keys)
    assert sorted(e.tx_id for e in entries) == sorted(tx_ids)


async def test_a_pipeline_of_many_txs_with_repeats(writer: ResultWriter) -> None:
    batch = [_result(f"tx-{i % 5}", used=i + 1) for i in range(12)]
    written = await writer.write(batch)
    assert [w.created for w in written] == [True] * 5 + [False] * 7
    for w in written[5:]:
        assert w.result == batch[int(w.result.tx_id[3:])]
    entries = await fee_entries(writer.redis, writer.keys)
    assert sorted(e.tx_id for e in entries) == [f"tx-{i}" for i in range(5)]


async def test_existing_reports_absent_and_unkeyed_txs_as_none(writer: ResultWriter) -> None:
    await writer.write([_result("tx-here")])
    found = await writer.existing(["tx-here", "tx-absent", None])
    assert found[0] is not None and found[0].tx_id == "tx-here"
    assert found[1:] == [None, None]


async def test_results_expire_and_the_fee_stream_stays_bounded(
    redis_url: str, key_prefix: str
) -> None:
    client = Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}-ret-{uuid.uuid4().hex[:8]}")
    try:
        forever = ResultWriter(client, keys)
        await forever.write([_result("kept")])
        assert await client.ttl(keys.result("kept")) == -1  # 0: no expiry
        bounded = ResultWriter(client, keys, ttl_s=600, fees_kept=100)
        await bounded.write([_result(f"tx-{i}") for i in range(3_000)])
        assert 0 < await client.ttl(keys.result("tx-0")) <= 600
        # MAXLEN ~ trims whole stream nodes: about 100 kept, far below 3,001
        assert 100 <= await client.xlen(keys.fees) <= 300
        [again] = await bounded.write([_result("tx-2999", data=b"other")])
        assert not again.created  # write-once holds while the result lives
    finally:
        await client.delete(keys.fees, keys.result("kept"),
                            *(keys.result(f"tx-{i}") for i in range(3_000)))
        await client.aclose()


async def test_a_key_of_another_type_under_a_result_key_fails_no_neighbour(
    writer: ResultWriter,
) -> None:
    """A hash where a tx's result goes (someone wrote it) made the script fail at that
    row: the rows after it in the call were never written, every retry failed the same
    way, and their txs never got a Result. Now the result takes the key's place."""
    await writer.redis.hset(writer.keys.result("poison"), "x", "y")
    rows = [_result("a"), _result("poison", used=7), _result("b")]
    written = await writer.write(rows)
    assert [w.created for w in written] == [True, True, True]
    assert await writer.existing(["a", "poison", "b"]) == rows
    entries = await fee_entries(writer.redis, writer.keys)
    assert [e.tx_id for e in entries] == ["a", "poison", "b"]


async def test_bytes_that_are_no_result_under_a_result_key_fail_no_neighbour(
    writer: ResultWriter, redis_url: str
) -> None:
    """Garbage under one tx's result key read back as that tx's unreadable record (to
    the worker, and to a producer's wait), not as an error for every tx of its batch."""
    from config import load_settings
    from producer import FarmClient

    await writer.redis.set(writer.keys.result("junk"), b"\xc1 not msgpack")
    written = await writer.write([_result("a"), _result("junk"), _result("b")])
    assert [w.created for w in written] == [True, False, True]
    assert written[1].result.tx_id == "junk" and written[1].result.status == "error"
    [a, junk, b] = await writer.existing(["a", "junk", "b"])
    assert (a, b) == (written[0].result, written[2].result)
    assert junk is not None and junk.status == "error" and junk.data == b"\xc1 not msgpack"
    settings = load_settings(redis_url=redis_url, key_prefix=writer.keys.prefix)
    async with FarmClient(settings) as client:
        seen = await client.results(["a", "junk"])
    assert seen["a"] is not None and seen["a"].status == "ok"
    assert seen["junk"] is not None and seen["junk"].status == "error"
    assert (seen["junk"].error or {})["kind"] == "unreadable_result"


async def test_another_txs_result_under_a_result_key_is_none_of_its_own(
    writer: ResultWriter,
) -> None:
    """A Result copied under another tx's key would have been taken as that tx's."""
    other = _result("other", used=900)
    await writer.redis.set(writer.keys.result("victim"), other.data)
    [w] = await writer.write([_result("victim")])
    assert not w.created and w.result.tx_id == "victim" and w.result.status == "error"
    [stored] = await writer.existing(["victim"])
    assert stored is not None and stored.status == "error" and stored.fee_used == 0
    assert Result.from_stored("victim", other.data).status == "error"
    assert Result.from_stored("other", other.data).fee.used == 900

"""Idempotent result + fee-report writes (worker/results.py) against a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import msgpack
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from engine.model import FeeReport, Result
from worker.packed import PackedResult
from worker.protocol import FeeEntry, Keys, hint_tx_ids, stored_results
from worker.result_store import index_keys
from worker.results import ResultWriter


def _result(
    tx_id: str, status: str = "ok", used: int = 100, data: bytes = b"one"
) -> PackedResult:
    fee = FeeReport(limit=1_000, used=used, breakdown={"instructions": used}, schedule="test")
    return PackedResult.of(Result(tx_id=tx_id, status=status, fee=fee, return_data=data))


async def fee_entries(redis: Redis, keys: Keys) -> list[FeeEntry]:
    return [e for i, fields in await redis.xrange(keys.fees) for e in FeeEntry.decode(i, fields)]


async def plant(writer: ResultWriter, tx_id: str, part_id: str, record: bytes) -> None:
    """What someone else wrote: `tx_id` indexed (no ttl: generation 0) to a part holding
    `record`."""
    await writer.redis.hset(f"{writer.keys.prefix}:txpart:0", tx_id, part_id)
    await writer.redis.set(writer.keys.part(part_id), record)


@pytest.fixture()
async def writer(redis_url: str, key_prefix: str) -> AsyncIterator[ResultWriter]:
    client = Redis.from_url(redis_url)
    yield ResultWriter(client, Keys(f"{key_prefix}-res-{uuid.uuid4().hex[:8]}"), 0, 0)
    await client.aclose()


async def test_second_write_of_a_tx_keeps_the_first_result_and_one_fee_entry(
    writer: ResultWriter,
) -> None:
    first = _result("tx-1", used=100, data=b"first")
    second = _result("tx-1", status="timeout", used=0, data=b"second")
    [w1] = await writer.write([first])
    [w2] = await writer.write([second])
    assert w1.created and not w2.created
    assert await writer.redis.xlen(writer.keys.fees) == 1  # (the second: a hint only)
    assert await writer.redis.xlen(writer.keys.fee_hints) == 1
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
    writers = [ResultWriter(writer.redis, writer.keys, 0, 0) for _ in range(6)]
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
    assert sorted((e.tx_id, e.fee["used"]) for e in entries) == [
        (f"tx-{i}", i + 1) for i in range(5)]  # each tx's first row, once


async def test_a_part_records_only_the_rows_it_stored(writer: ResultWriter) -> None:
    """One stream field holds the fee records of the rows the call stored: not those of
    a tx stored before or of a repeat within the call (bytes in the stream that no
    trimming counts, and a second record of a tx to a reader that missed why)."""
    await writer.write([_result("tx-old", used=7)])
    written = await writer.write([_result("tx-a", used=1), _result("tx-old", used=2),
                                  _result("tx-a", used=3), _result("tx-b", used=4)])
    assert [w.created for w in written] == [True, False, False, True]
    (_, first), (_, fields) = await writer.redis.xrange(writer.keys.fees)
    assert set(fields) == {b"n", b"part", b"records"} and fields[b"n"] == b"2"
    assert [row[0] for row in msgpack.unpackb(fields[b"records"], raw=True)] == [b"tx-a", b"tx-b"]
    # tx-old is named where its Result is (a wait for it learns so), in the hints stream
    (_, hint), = await writer.redis.xrange(writer.keys.fee_hints)
    assert hint_tx_ids([x for kv in hint.items() for x in kv]) == [
        ("tx-old", first[b"part"].decode())]
    entries = await fee_entries(writer.redis, writer.keys)
    assert [(e.tx_id, e.status, e.fee["used"]) for e in entries] == [
        ("tx-old", "ok", 7), ("tx-a", "ok", 1), ("tx-b", "ok", 4)]


async def test_stream_entries_of_other_shapes_read_as_what_they_hold(
    writer: ResultWriter,
) -> None:
    """Entries as earlier versions wrote them still read; fields that are none of the
    farm's read as no record, and writing goes on."""
    fee = msgpack.packb({"used": 5})
    await writer.redis.xadd(writer.keys.fees, {"tx_id": "tx-1", "fee": fee, "status": "ok"})
    await writer.redis.xadd(writer.keys.fees, {"n": 1, "=tx-2": b"reverted\x00" + fee})
    for junk in (b"\xc1", msgpack.packb([[1, 2, 3], "x"]), msgpack.packb({"a": 1}),
                 msgpack.packb([[b"tx-3", b"ok"], [b"tx-3", 1, fee], [[], b"ok", fee]])):
        await writer.redis.xadd(writer.keys.fees, {"n": 1, "part": "p", "records": junk})
    for bad_fee in (b"\xc1", b"\xa1\xff", fee + b"x", b"\x81\x90\x01"):
        await writer.redis.xadd(writer.keys.fees, {"records": msgpack.packb(
            [[b"tx-5", b"ok", bad_fee]])})
    for legacy in ({"tx_id": b"\xff"}, {b"=\xff": b"ok\x00"}, {"=tx-6": b"\xff\x00" + fee}):
        await writer.redis.xadd(writer.keys.fees, legacy)
    await writer.write([_result("tx-4", used=9)])
    entries = await fee_entries(writer.redis, writer.keys)
    assert [(e.tx_id, e.status, e.fee.get("used")) for e in entries] == [
        ("tx-1", "ok", 5), ("tx-2", "reverted", 5), *[("tx-5", "ok", None)] * 4,
        ("\ufffd", "", None), ("\ufffd", "ok", None), ("tx-6", "\ufffd", 5), ("tx-4", "ok", 9)]


async def test_existing_reports_absent_and_unkeyed_txs_as_none(writer: ResultWriter) -> None:
    await writer.write([_result("tx-here")])
    found = await writer.existing(["tx-here", "tx-absent", None])
    assert found[0] is not None and found[0].tx_id == "tx-here"
    assert found[1:] == [None, None]


async def test_results_expire_and_the_fee_stream_stays_bounded(
    redis_url: str, key_prefix: str
) -> None:
    client = Redis.from_url(redis_url)
    forever, keys = (Keys(f"{key_prefix}-ret-{uuid.uuid4().hex[:8]}") for _ in range(2))
    try:
        await ResultWriter(client, forever, 0, 0).write([_result("kept")])
        [kept] = (await stored_results(client, forever.prefix, 0, ["kept"])).part_ids
        assert await client.ttl(forever.part(kept)) == -1  # 0: no expiry
        bounded = ResultWriter(client, keys, ttl_s=600, fees_kept=100)
        await bounded.write([_result(f"tx-{i}") for i in range(3_000)])
        lookup = await stored_results(client, keys.prefix, 600, ["tx-0", "tx-2999"])
        assert len(lookup.part_ids) == 2  # a part per script call
        for part in lookup.part_ids:
            assert 0 < await client.ttl(keys.part(part)) <= 600
        [index] = [k for k in index_keys(keys.prefix, 600) if await client.exists(k)]
        assert 600 < await client.ttl(index) <= 1_200  # two spans: the longest look-up
        # trimmed by records, a part's entry at a time once 256 more records came: at
        # least 100 kept, far below 3,001
        assert 100 <= len(await fee_entries(client, keys)) < 100 + 2 * 256
        [again] = await bounded.write([_result("tx-2999", data=b"other")])
        assert not again.created  # write-once holds while the result lives
    finally:
        for k in (forever, keys):
            names = [n async for n in client.scan_iter(match=f"{k.prefix}:*")]
            await client.delete(*names)
        await client.aclose()


async def test_the_index_span_is_the_farms_not_each_writers(
    redis_url: str, key_prefix: str
) -> None:
    """Writers and readers of one farm with different result ttls: still one Result and
    one fee record per tx id, found by all (the span is the first writer's)."""
    client = Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}-span-{uuid.uuid4().hex[:8]}")
    try:
        writes = [await ResultWriter(client, keys, ttl, 0).write([_result("tx-A", used=ttl + 1)])
                  for ttl in (86_400, 3_600, 0)]
        assert [w.created for [w] in writes] == [True, False, False]
        assert [e.tx_id for e in await fee_entries(client, keys)] == ["tx-A"]
        for ttl in (600, 0, 86_400):
            lookup = await stored_results(client, keys.prefix, ttl, ["tx-A"])
            assert lookup.results["tx-A"] == writes[0][0].result.data
    finally:
        await client.delete(*[n async for n in client.scan_iter(match=f"{keys.prefix}:*")])
        await client.aclose()


async def test_a_tx_whose_part_expired_has_no_result_and_is_stored_again(
    writer: ResultWriter,
) -> None:
    """The index can name a part for up to a span after it expired: that tx has no
    Result (None to readers, as on expiry of a key per tx) and a redelivery stores it."""
    [first] = await writer.write([_result("tx-E", used=5)])
    [part] = (await stored_results(writer.redis, writer.keys.prefix, 0, ["tx-E"])).part_ids
    await writer.redis.delete(writer.keys.part(part))  # as its ttl would
    assert (await stored_results(writer.redis, writer.keys.prefix, 0, ["tx-E"])).results == {}
    [again] = await writer.write([_result("tx-E", used=6)])
    assert first.created and again.created
    [stored] = await writer.existing(["tx-E"])
    assert stored is not None and stored.fee_used == 6


async def test_a_wrong_hint_from_the_stream_falls_back_to_the_index(
    writer: ResultWriter,
) -> None:
    """A fee-stream entry naming a part that lacks the tx (someone wrote it) does not
    pass for that tx's Result."""
    [w] = await writer.write([_result("tx-H")])
    lookup = await stored_results(writer.redis, writer.keys.prefix, 0, ["tx-H"],
                                  {"tx-H": "nope"})
    assert lookup.results["tx-H"] == w.result.data


async def test_a_key_of_another_type_where_the_index_goes_fails_no_neighbour(
    writer: ResultWriter,
) -> None:
    """A string where the index hash goes (someone wrote it) would make the script fail
    on every call: no tx would get a Result again. It holds nothing of the farm's: the
    script drops it."""
    await writer.redis.set(f"{writer.keys.prefix}:txpart:0", "junk")
    rows = [_result("a"), _result("b")]
    written = await writer.write(rows)
    assert [w.created for w in written] == [True, True]
    assert await writer.existing(["a", "b"]) == rows
    assert [e.tx_id for e in await fee_entries(writer.redis, writer.keys)] == ["a", "b"]


async def test_bytes_that_are_no_part_record_fail_no_neighbour(
    writer: ResultWriter, redis_url: str
) -> None:
    """Garbage where the index says a tx's Result is reads back as that tx's unreadable
    record (to the worker, and to a producer's wait), not as an error for every tx of
    its batch, nor as no Result (which nobody would ever write: the index holds it)."""
    from config import load_settings
    from producer import FarmClient

    await plant(writer, "junk", "bogus", b"\xc1 not msgpack")
    written = await writer.write([_result("a"), _result("junk"), _result("b")])
    assert [w.created for w in written] == [True, False, True]
    assert written[1].result.tx_id == "junk" and written[1].result.status == "error"
    [a, junk, b] = await writer.existing(["a", "junk", "b"])
    assert (a, b) == (written[0].result, written[2].result)
    assert junk is not None and junk.status == "error"
    settings = load_settings(redis_url=redis_url, key_prefix=writer.keys.prefix,
                             result_ttl_s=0)
    async with FarmClient(settings) as client:
        seen = await client.results(["a", "junk"])
    assert seen["a"] is not None and seen["a"].status == "ok"
    assert seen["junk"] is not None and seen["junk"].status == "error"
    assert (seen["junk"].error or {})["kind"] == "unreadable_result"


async def test_another_txs_result_in_a_part_is_none_of_its_own(
    writer: ResultWriter,
) -> None:
    """A Result filed under another tx's id would have been taken as that tx's."""
    other = _result("other", used=900)
    await plant(writer, "victim", "forged", msgpack.packb({"victim": other.data}))
    [w] = await writer.write([_result("victim")])
    assert not w.created and w.result.tx_id == "victim" and w.result.status == "error"
    [stored] = await writer.existing(["victim"])
    assert stored is not None and stored.status == "error" and stored.fee_used == 0
    assert Result.from_stored("victim", other.data).status == "error"
    assert Result.from_stored("other", other.data).fee.used == 900


@pytest.mark.parametrize("member, score", [("garbage", 1e6), ("99999999999999-0", 5.0),
                                           ("1-0", float("inf"))])
async def test_what_someone_writes_into_the_marks_neither_fails_writes_nor_empties_the_stream(
    redis_url: str, key_prefix: str, member: str, score: float,
) -> None:
    """A member of `{p}:fees:marks` that is no entry id, one newer than every entry
    (trimming there would empty the stream) or an absurd count: every write still
    succeeds, and the stream keeps at least the records it should."""
    client = Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}-marks-{uuid.uuid4().hex[:8]}")
    writer = ResultWriter(client, keys, 0, 10)
    try:
        await writer.write([_result(f"a{i}") for i in range(12)])
        await client.zadd(keys.fee_marks, {member: score})
        for i in range(12):
            [w] = await writer.write([_result(f"b{i}")])
            assert w.created
        kept = [e.tx_id for e in await fee_entries(client, keys)]
        assert len(kept) >= 10 and kept[-10:] == [f"b{i}" for i in range(2, 12)]
    finally:
        await client.delete(*[n async for n in client.scan_iter(match=f"{keys.prefix}:*")])
        await client.aclose()


async def test_a_mark_past_what_a_stream_id_can_be_fails_no_write(
    redis_url: str, key_prefix: str,
) -> None:
    """`XTRIM MINID` refuses an id past 2^64: trimming to such a mark failed every write
    that crossed a trim, after its Results and fee records were stored."""
    client = Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}-marks-{uuid.uuid4().hex[:8]}")
    writer = ResultWriter(client, keys, 0, 1_000)
    try:
        await client.zadd(keys.fee_marks, {"1-99999999999999999999": 1e9})
        for batch in range(3):
            written = await writer.write([_result(f"t{batch}-{i}") for i in range(256)])
            assert all(w.created for w in written)
        assert len(await fee_entries(client, keys)) == 768
    finally:
        await client.delete(*[n async for n in client.scan_iter(match=f"{keys.prefix}:*")])
        await client.aclose()


async def test_parts_live_the_farms_span_whatever_ttl_a_later_writer_has(
    redis_url: str, key_prefix: str,
) -> None:
    """A writer with a longer ttl than the farm's span would keep a part the index no
    longer covers (a second Result for a tx whose first still lives): parts live the
    span, whoever writes them."""
    client = Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}-life-{uuid.uuid4().hex[:8]}")
    try:
        await ResultWriter(client, keys, 600, 0).write([_result("first")])
        await ResultWriter(client, keys, 0, 0).write([_result("forever?")])
        lookup = await stored_results(client, keys.prefix, 0, ["first", "forever?"])
        assert lookup.span == 600 and set(lookup.results) == {"first", "forever?"}
        for part in lookup.part_ids:
            assert 0 < await client.ttl(keys.part(part)) <= 600
    finally:
        await client.delete(*[n async for n in client.scan_iter(match=f"{keys.prefix}:*")])
        await client.aclose()


@pytest.mark.parametrize("junk", [b"6e1", b"0x3c", b" 60", b"60.0", b"-5"])
async def test_a_span_that_is_no_count_of_seconds_is_replaced_for_writers_and_readers(
    writer: ResultWriter, junk: bytes,
) -> None:
    await writer.redis.set(f"{writer.keys.prefix}:txpart:span", junk)
    [w] = await writer.write([_result("tx-S")])
    assert w.created
    assert await writer.existing(["tx-S"]) == [w.result]


async def test_a_stream_whose_ids_ran_out_fails_no_write(writer: ResultWriter) -> None:
    """Someone's entry at the last possible stream id made every XADD fail: the farm
    stalled, each tx keeping a Result with no fee record."""
    await writer.redis.xadd(writer.keys.fees, {"x": "y"},
                            id="18446744073709551615-18446744073709551615")
    [w] = await writer.write([_result("tx-X")])
    assert w.created
    assert [e.tx_id for e in await fee_entries(writer.redis, writer.keys)] == ["tx-X"]


async def test_an_index_naming_a_part_of_another_type_stores_the_tx_again(
    writer: ResultWriter, redis_url: str,
) -> None:
    """A part key holding a hash reads as nothing to readers: the writer must not count
    it as the tx's Result either, or the tx never gets one; nor may have_results."""
    from config import load_settings
    from producer import FarmClient

    await writer.redis.hset(f"{writer.keys.prefix}:txpart:0", "tx-T", "p")
    await writer.redis.hset(writer.keys.part("p"), "x", "y")
    settings = load_settings(redis_url=redis_url, key_prefix=writer.keys.prefix,
                             result_ttl_s=0)
    async with FarmClient(settings) as client:
        assert await client.have_results(["tx-T"]) == set()
        [w] = await writer.write([_result("tx-T")])
        assert w.created and await client.have_results(["tx-T"]) == {"tx-T"}


async def test_a_wait_reads_past_entries_that_are_none_of_the_farms(
    writer: ResultWriter, redis_url: str,
) -> None:
    """Anyone can append to the stream: an entry that is no record of the farm's (bytes
    that are no text where a tx id goes) must not fail the wait reading it, nor status."""
    from config import load_settings
    from producer import FarmClient
    from producer.operations import farm_status

    settings = load_settings(redis_url=redis_url, key_prefix=writer.keys.prefix,
                             result_ttl_s=0)
    async with FarmClient(settings) as client:
        waiting = asyncio.create_task(client.wait(["tx-W"], timeout=30))
        await asyncio.sleep(0.3)  # the wait reads the stream from here on
        for junk in ({"tx_id": b"\xff"}, {b"=\xff": b"\xff\x00"}, {"records": b"\xc1"}):
            await writer.redis.xadd(writer.keys.fees, junk)
        await writer.write([_result("tx-W")])
        assert (await waiting)["tx-W"].status == "ok"
        assert [e.tx_id for e in await client.fee_reports(["tx-W"])] == ["tx-W"]
    sync = SyncRedis.from_url(redis_url)
    try:
        status = farm_status(sync, writer.keys, settings.queue_name)
    finally:
        sync.close()
    assert status["last_minute"]["by_status"]["ok"] == 1  # (the others: what the junk reads as)


async def test_a_part_write_with_arguments_that_do_not_add_up_writes_nothing(
    writer: ResultWriter,
) -> None:
    from worker.protocol import WRITE_PART_LUA, PartArgs

    argv = PartArgs.of([("tx-A", b"r", b"f", "ok")]).argv(writer.keys.prefix, (0, 0))
    with pytest.raises(ResponseError, match="arguments for 1 rows"):
        await writer.redis.eval(WRITE_PART_LUA, 0, *argv[:-1])
    assert await writer.existing(["tx-A"]) == [None]
    assert await fee_entries(writer.redis, writer.keys) == []


async def test_hints_of_txs_stored_before_are_bounded_and_never_records(
    writer: ResultWriter,
) -> None:
    """A client enqueuing stored txs again, call after call, adds hints, not records:
    their stream keeps its last ~1,000 entries (approximate trimming)."""
    from worker.protocol import WRITE_PART_LUA, PartArgs

    await writer.write([_result("tx-old")])
    script = writer.redis.register_script(WRITE_PART_LUA)
    argv = PartArgs.of([("tx-old", b"r", b"f", "ok")]).argv(writer.keys.prefix, (0, 0))
    for _ in range(3):
        async with writer.redis.pipeline(transaction=False) as pipe:
            for _ in range(1_000):
                await script(args=argv, client=pipe)
            await pipe.execute()
    assert 1_000 <= await writer.redis.xlen(writer.keys.fee_hints) < 1_200
    assert [e.tx_id for e in await fee_entries(writer.redis, writer.keys)] == ["tx-old"]

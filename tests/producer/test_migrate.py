"""`wesfarm migrate-results`: Results of before part records become visible again."""

from __future__ import annotations

import asyncio
import uuid

import msgpack
import redis

from engine.model import FeeReport, Result, pack
from producer.migrate import migrate_results
from tests.support.farm import fee_entries
from worker.packed import PackedResult
from worker.protocol import Keys, stored_results_sync


def old_result(tx_id: str, used: int) -> Result:
    return Result(tx_id, "ok", FeeReport(100, used, {"instructions": used}, "wes-fee-test"))


def test_results_stored_a_key_per_tx_move_into_parts_and_stay_written_once(
    redis_url: str, key_prefix: str
) -> None:
    from worker.results import ResultWriter

    keys = Keys(f"{key_prefix}-mig-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(redis_url)
    try:
        olds = [old_result(f"tx-{i}", i + 1) for i in range(300)]  # more than one part
        for r in olds:  # as the farm wrote them before parts: a key and a stream entry each
            data, fee = r.packed()
            client.set(f"{keys.prefix}:result:{r.tx_id}", data, ex=600 if r.fee.used % 2 else None)
            client.xadd(keys.fees, {"tx_id": r.tx_id, "fee": fee, "status": r.status})
        assert migrate_results(client, keys, 600) == 300
        assert not list(client.scan_iter(match=f"{keys.prefix}:result:*"))
        found = stored_results_sync(client, keys.prefix, 600, [r.tx_id for r in olds]).results
        assert {t: Result.from_stored(t, raw).fee.used for t, raw in found.items()} == {
            r.tx_id: r.fee.used for r in olds}
        writer = ResultWriter(redis.asyncio.Redis.from_url(redis_url), keys, 600, 0)
        again = asyncio.run(writer.write([PackedResult.of(old_result("tx-7", 999))]))
        assert not again[0].created and again[0].result.fee_used == 8  # written once still
        assert sorted(e.tx_id for e in fee_entries(client, keys.prefix)) == sorted(
            r.tx_id for r in olds)  # their fee records, once each
        assert migrate_results(client, keys, 600) == 0
    finally:
        client.delete(*client.scan_iter(match=f"{keys.prefix}:*"))
        client.close()


def test_a_tx_the_index_holds_keeps_that_result(redis_url: str, key_prefix: str) -> None:
    keys = Keys(f"{key_prefix}-mig-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(f"{keys.prefix}:txpart:span", 0)
        client.set(keys.part("p"), msgpack.packb({"tx": pack(old_result("tx", 5).to_wire())}))
        client.hset(f"{keys.prefix}:txpart:0", "tx", "p")
        client.set(f"{keys.prefix}:result:tx", pack(old_result("tx", 9).to_wire()))
        assert migrate_results(client, keys, 0) == 0
        [raw] = stored_results_sync(client, keys.prefix, 0, ["tx"]).results.values()
        assert Result.from_stored("tx", raw).fee.used == 5
        assert not client.exists(f"{keys.prefix}:result:tx")
    finally:
        client.delete(*client.scan_iter(match=f"{keys.prefix}:*"))
        client.close()

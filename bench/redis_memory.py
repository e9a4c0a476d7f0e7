"""What a soak's txs leave in Redis: used memory, and per tx by kind of key (MEMORY USAGE)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.common import rounded

if TYPE_CHECKING:
    from producer import FarmClient

SAMPLE_KEYS = 200


async def used_memory(client: FarmClient) -> int:
    info = await client.redis.info("memory")
    return int(info["used_memory"])


async def bytes_by_key(client: FarmClient, ids: list[str], first_height: int,
                        blocks: int) -> dict[str, float]:
    """Per soak tx: its share of its part's record (parts of a sample of txs), of the
    index hashes and of the fee stream, arq's result key (a sample), its applied-hash
    entry, and the block records (MEMORY USAGE)."""
    import msgpack
    from arq.constants import result_key_prefix

    from worker.protocol import stored_results

    redis, keys = client.redis, client.keys
    sample = ids[:: max(1, len(ids) // SAMPLE_KEYS)]

    async def usage(name: str) -> int:
        return int(await redis.memory_usage(name, samples=0) or 0)

    async def mean_usage(names: list[str]) -> float:
        sizes = [await usage(name) for name in names]
        return sum(sizes) / len(sizes) if sizes else 0.0

    lookup = await stored_results(redis, keys.prefix, client.settings.result_ttl_s, sample)
    part_bytes = part_txs = 0
    for part_id in lookup.part_ids:
        blob = await redis.get(keys.part(part_id))
        if blob is not None:
            part_bytes += await usage(keys.part(part_id))
            part_txs += len(msgpack.unpackb(blob, raw=True))
    index_bytes = index_txs = 0
    async for name in redis.scan_iter(match=f"{keys.prefix}:txpart:[0-9]*", count=1000):
        index_bytes += await usage(name)
        index_txs += int(await redis.hlen(name))  # type: ignore[misc]
    marks = await redis.zrevrange(keys.fee_marks, 0, 0, withscores=True)
    records = int(marks[0][1]) if marks else int(await redis.xlen(keys.fees))
    applied = blocks_total = 0
    for h in range(first_height, first_height + blocks):
        applied += await usage(keys.block_applied(h))
        blocks_total += await usage(keys.block(h))
    return {
        "result (part)": rounded(part_bytes / max(1, part_txs)),
        "index": rounded(index_bytes / max(1, index_txs)),
        "arq_result (expires)": rounded(await mean_usage([result_key_prefix + t
                                                          for t in sample])),
        "fee_stream": rounded(await usage(keys.fees) / max(1, records)),
        "applied": rounded(applied / len(ids)),
        "block_record": rounded(blocks_total / len(ids)),
    }

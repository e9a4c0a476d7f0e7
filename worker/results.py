"""Write each Result exactly once per tx id, with its fee report.

One Lua script per result, atomically: SET NX `{p}:result:{tx_id}`; only if that
set it, XADD `{p}:fees` {tx_id, fee (msgpack fee map), status}. A second delivery
of the same tx (arq is at-least-once; a worker killed mid-batch re-runs it) finds
the first result, writes nothing and gets the first result back, so a tx is never
charged twice and every tx id has exactly one stream entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from engine.model import pack, unpack
from worker.keys import Keys

# KEYS[1] result key, KEYS[2] fee stream; ARGV: result bytes, tx id, fee bytes, status.
# Returns {1} when this call wrote the result, {0, first result bytes} otherwise.
WRITE_ONCE_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('XADD', KEYS[2], '*', 'tx_id', ARGV[2], 'fee', ARGV[3], 'status', ARGV[4])
  return {1}
end
return {0, redis.call('GET', KEYS[1])}
"""


@dataclass(frozen=True, slots=True)
class Written:
    """The stored result (ours or the first one) and whether this call stored it."""

    result: dict[str, Any]
    created: bool


class ResultWriter:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.script = redis.register_script(WRITE_ONCE_LUA)

    async def existing(self, tx_ids: Sequence[str | None]) -> list[dict[str, Any] | None]:
        """Stored results for these tx ids (None where absent or no id)."""
        wanted = [t for t in tx_ids if t]
        if not wanted:
            return [None] * len(tx_ids)
        found = dict(
            zip(wanted, await self.redis.mget([self.keys.result(t) for t in wanted]), strict=True)
        )
        out: list[dict[str, Any] | None] = []
        for tx_id in tx_ids:
            raw = found.get(tx_id) if tx_id else None
            out.append(None if raw is None else unpack(raw))
        return out

    async def write(self, results: Sequence[dict[str, Any]]) -> list[Written]:
        """Write wire results (each must carry a non-empty tx_id), in one pipeline."""
        if not results:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for result in results:
                tx_id = result["tx_id"]
                await self.script(
                    keys=[self.keys.result(tx_id), self.keys.fees],
                    args=[pack(result), tx_id, pack(result["fee"]), result["status"]],
                    client=pipe,
                )
            replies = await pipe.execute()
        written: list[Written] = []
        for result, reply in zip(results, replies, strict=True):
            if int(reply[0]) == 1:
                written.append(Written(result, True))
            else:
                written.append(Written(unpack(reply[1]), False))
        return written


async def fee_entries(redis: Redis, keys: Keys, count: int = 100_000) -> list[dict[str, Any]]:
    """The fee stream as dicts {id, tx_id, fee (decoded), status} (for tests and tools)."""
    entries = await redis.xrange(keys.fees, count=count)
    out: list[dict[str, Any]] = []
    for entry_id, fields in entries:
        out.append(
            {
                "id": entry_id.decode(),
                "tx_id": fields[b"tx_id"].decode(),
                "fee": unpack(fields[b"fee"]),
                "status": fields[b"status"].decode(),
            }
        )
    return out

"""What writing a part's Results costs Redis, per tx, stored four ways (docs/SCALING.md).

`python -m bench.result_writes [--rows N] [--calls C] [--rounds R]`: on a private
redis-server, calls of N rows (a token transfer's Result and fee record sizes, fresh tx
ids every call), Redis CPU (INFO cpu, user + sys) per row; the ways alternate call by
call batch, R rounds, and the median of the rounds is printed:

- `write_once`: the farm's write today (WRITE_ONCE_LUA): per tx a result key written once
  (SET NX EX) and a fee-stream entry;
- `part_and_index`: one record per part (SET NX EX of all its rows), one fee-stream entry
  per part, and tx id -> part in one hash (one HMGET to find txs already written, one
  HSET): exactly once per tx id, as today, with a per-part record;
- `part_and_index_keys`: the same with the index as a small key per tx (SET NX EX);
- `part_hash_and_index_tx_fees`: the part's record as a hash (tx id -> Result, so a
  reader takes just the fields it wants) with the same index, and the fee stream as
  today, an entry per tx;
- `part_only`: the part's record alone, nothing per tx (exactly once per part only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Any

import redis

from producer.devfarm import EmbeddedRedis
from worker.protocol import WRITE_ONCE_LUA

RESULT_BYTES, FEE_BYTES = 508, 211  # a token transfer's, packed (engine.model.Result.packed)
TTL = "86400"  # the default result_ttl_s
# ARGV: part key prefix, the part's record, part id, ttl, its tx ids; KEYS: stream, index.
PART_AND_INDEX = """
local ids = {}
for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
local have = redis.call('HMGET', KEYS[2], unpack(ids))
local kv = {}
for i, t in ipairs(ids) do
  if have[i] then return {1, i} end
  kv[#kv + 1] = t
  kv[#kv + 1] = ARGV[3]
end
redis.call('HSET', KEYS[2], unpack(kv))
redis.call('SET', ARGV[1] .. ARGV[3], ARGV[2], 'NX', 'EX', ARGV[4])
redis.call('XADD', KEYS[1], '*', 'part', ARGV[3])
return 0
"""
PART_AND_INDEX_KEYS = """
for i = 5, #ARGV do redis.call('SET', ARGV[1] .. ARGV[i], ARGV[3], 'NX', 'EX', ARGV[4]) end
redis.call('SET', ARGV[1] .. ARGV[3], ARGV[2], 'NX', 'EX', ARGV[4])
redis.call('XADD', KEYS[1], '*', 'part', ARGV[3])
return 0
"""
# ARGV as PART_AND_INDEX's without the part's record (ARGV[2] unused), then the txs'
# Results, then their fee records.
PART_HASH_AND_INDEX_TX_FEES = """
local n = (#ARGV - 4) / 3
local ids, kv, part = {}, {}, {}
for i = 1, n do ids[i] = ARGV[4 + i] end
local have = redis.call('HMGET', KEYS[2], unpack(ids))
for i, t in ipairs(ids) do
  if have[i] then return {1, i} end
  kv[#kv + 1] = t
  kv[#kv + 1] = ARGV[3]
  part[#part + 1] = t
  part[#part + 1] = ARGV[4 + n + i]
end
redis.call('HSET', KEYS[2], unpack(kv))
local key = ARGV[1] .. ARGV[3]
redis.call('HSET', key, unpack(part))
redis.call('EXPIRE', key, ARGV[4])
for i = 1, n do
  redis.call('XADD', KEYS[1], '*', 'tx_id', ids[i], 'fee', ARGV[4 + 2 * n + i], 'status', 'ok')
end
return 0
"""
WAYS = ("write_once", "part_and_index", "part_and_index_keys", "part_hash_and_index_tx_fees",
        "part_only")


def measure(url: str, rows: int, calls: int, rounds: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    scripts = {"write_once": client.register_script(WRITE_ONCE_LUA),
               "part_and_index": client.register_script(PART_AND_INDEX),
               "part_and_index_keys": client.register_script(PART_AND_INDEX_KEYS),
               "part_hash_and_index_tx_fees": client.register_script(
                   PART_HASH_AND_INDEX_TX_FEES)}
    result, fee = os.urandom(RESULT_BYTES), os.urandom(FEE_BYTES)
    blob = (result + fee) * rows
    per_row: dict[str, list[float]] = {way: [] for way in WAYS}
    serial = 0
    try:
        for _ in range(rounds):
            for way in WAYS:
                before = cpu(client)
                for _ in range(calls):
                    serial += 1
                    ids = [f"bench-rw-{serial}-{i}" for i in range(rows)]
                    if way == "write_once":
                        args: list[Any] = ["rw:result:", TTL, 0]
                        for tx_id in ids:
                            args += [tx_id, result, fee, "ok"]
                        scripts[way](keys=["rw:fees"], args=args)
                    elif way == "part_hash_and_index_tx_fees":
                        scripts[way](keys=["rw:fees", "rw:txpart"],
                                     args=["rw:part:", b"", str(serial), TTL, *ids,
                                           *[result] * rows, *[fee] * rows])
                    elif way == "part_only":
                        client.set(f"rw:part:{serial}", blob, ex=int(TTL), nx=True)
                    else:
                        scripts[way](keys=["rw:fees", "rw:txpart"],
                                     args=["rw:part:", blob, str(serial), TTL, *ids])
                per_row[way].append((cpu(client) - before) * 1e6 / (calls * rows))
            client.flushall()  # a private server: each round starts from the same memory
    finally:
        client.close()
    return {"rows_per_call": rows, "calls": calls, "rounds": rounds,
            "redis_cpu_us_per_row": {w: round(statistics.median(v), 2)
                                     for w, v in per_row.items()},
            "spread": {w: [round(min(v), 2), round(max(v), 2)] for w, v in per_row.items()}}


def cpu(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")  # type: ignore[assignment]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.result_writes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=256, help="rows per call (a part's txs)")
    p.add_argument("--calls", type=int, default=40, help="calls per way per round")
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args(argv)
    server = EmbeddedRedis()
    try:
        print(json.dumps(measure(server.url, args.rows, args.calls, args.rounds), indent=1))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

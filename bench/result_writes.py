"""What writing a part's Results costs Redis, per tx, stored four ways (docs/SCALING.md).

`python -m bench.result_writes [--rows N] [--calls C] [--rounds R]`: on a private
redis-server, calls of N rows (a token transfer's Result and fee record sizes, fresh tx
ids every call), Redis CPU (INFO cpu, user + sys) per row; the ways alternate call by
call batch, R rounds, and the median of the rounds is printed:

- `key_per_tx`: the farm's write before parts (KEY_PER_TX below): per tx a result key
  written once (SET NX EX) and a fee-stream entry;
- `write_part`: the farm's write (WRITE_PART_LUA): one record per part, one fee-stream
  entry per part, and tx id -> part in an index hash (one HMGET per generation to find
  txs already written, one HSET): exactly once per tx id;
- `part_and_index_keys`: a record per part with the index as a small key per tx (SET NX
  EX);
- `part_hash_and_index_tx_fees`: the part's record as a hash (tx id -> Result, so a
  reader takes just the fields it wants) with an index hash, and a fee-stream entry per
  tx;
- `part_only`: the part's record alone, nothing per tx (exactly once per part only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Any

import redis

from producer import EmbeddedRedis
from worker.protocol import WRITE_PART_LUA, PartArgs

RESULT_BYTES, FEE_BYTES = 508, 211  # a token transfer's, packed (engine.model.Result.packed)
TTL = "86400"  # the default result_ttl_s
# KEYS[1] the stream; ARGV: result key prefix, ttl, (unused), then per tx: tx id, Result,
# fee record, status (the farm's script before parts).
KEY_PER_TX = """
local out, ttl = {}, ARGV[2]
for i = 4, #ARGV, 4 do
  if redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 1], 'NX', 'EX', ttl) then
    redis.call('XADD', KEYS[1], '*', 'tx_id', ARGV[i], 'fee', ARGV[i + 2], 'status', ARGV[i + 3])
    out[#out + 1] = 1
  else
    out[#out + 1] = redis.call('GET', ARGV[1] .. ARGV[i])
  end
end
return out
"""
# KEYS: stream, index; ARGV: part key prefix, the part's record, part id, ttl, tx ids.
PART_AND_INDEX_KEYS = """
for i = 5, #ARGV do redis.call('SET', ARGV[1] .. ARGV[i], ARGV[3], 'NX', 'EX', ARGV[4]) end
redis.call('SET', ARGV[1] .. ARGV[3], ARGV[2], 'NX', 'EX', ARGV[4])
redis.call('XADD', KEYS[1], '*', 'part', ARGV[3])
return 0
"""
# ARGV as PART_AND_INDEX_KEYS' without the part's record (ARGV[2] unused), then the txs'
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
WAYS = ("key_per_tx", "write_part", "part_and_index_keys", "part_hash_and_index_tx_fees",
        "part_only")


def measure(url: str, rows: int, calls: int, rounds: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    scripts = {"key_per_tx": client.register_script(KEY_PER_TX),
               "write_part": client.register_script(WRITE_PART_LUA),
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
                    if way == "key_per_tx":
                        args: list[Any] = ["rw:result:", TTL, 0]
                        for tx_id in ids:
                            args += [tx_id, result, fee, "ok"]
                        scripts[way](keys=["rw:fees"], args=args)
                    elif way == "write_part":
                        part = PartArgs.of((t, result, fee, "ok") for t in ids)
                        scripts[way](args=part.argv("rw", (int(TTL), 1_000_000)))
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

"""Each Result written once per tx id, with its fee record: the contract the worker and the
producer's commit both keep (worker/protocol.py exports it).

WRITE_ONCE_LUA writes a call's results atomically: SET NX each result key; only a result
that call stored has its fee record in the call's one fee-stream entry. A second
delivery of a tx finds the first result, writes nothing and gets it back: a tx is never
charged twice and every tx id has exactly one fee record. A key of another type there
holds no result (written by someone else): this one takes its place, so it cannot make
the script fail half-way and leave the rows after it unwritten. The result keys are built
in the script, not passed in KEYS: fine outside Redis Cluster, and in it too under a
hash-tagged prefix (docs/SCALING.md). The commit stores the Results of txs it ran in the
same atomic step as their writes: its script (producer/commit_script.py) uses RESULT_LUA.

The fee stream holds an entry per call: {ids: msgpack [tx id, ...], records: msgpack
[fee record, ...]}, a fee record being [tx id, status, fee map] as Result.packed gives it
(packed once, in the executor). XTRIM counts entries, not records: FeeTrim turns the
records to keep into entries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

Row = tuple[str, bytes, bytes]  # tx id, the Result as stored, its fee record


class FeeTrim:
    """The fee-stream entries to keep for about `kept` records (0: all): an entry holds a
    script call's records, so the entries kept follow a moving average of the records this
    process's calls put in one."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.average = 0.0

    def entries(self, records: int) -> int:
        """MAXLEN for an entry of `records` records (0: no trimming)."""
        if self.kept <= 0:
            return 0
        self.average += (records - self.average) / (16 if self.average else 1)
        return max(1, math.ceil(self.kept / self.average))


# write_once(result key prefix, ttl s as its ARGV string ("0": forever; handed to SET as it
# came: a Lua number would be formatted again on every row), tx id, result) returns true
# when it stored the result, else the stored result's bytes. fee_records() collects, with
# add(tx id, fee record) per stored result, the one entry that append(stream, entries
# kept) writes: the records joined under one msgpack array header, and their tx ids.
RESULT_LUA = """
local function write_once(prefix, ttl, tx_id, result)
  local key = prefix .. tx_id
  local set
  if ttl ~= '0' then
    set = redis.call('SET', key, result, 'NX', 'EX', ttl)
  else
    set = redis.call('SET', key, result, 'NX')
  end
  if not set then
    local stored = redis.pcall('GET', key)
    if type(stored) == 'string' then return stored end
    if ttl ~= '0' then
      redis.call('SET', key, result, 'EX', ttl)
    else
      redis.call('SET', key, result)
    end
  end
  return true
end
local function fee_records()
  local ids, records = {}, {}
  local self = {}
  function self.add(tx_id, record)
    ids[#ids + 1] = tx_id
    records[#records + 1] = record
  end
  function self.append(stream, maxlen)
    local n = #ids
    if n == 0 then return end
    local entry = {'ids', cmsgpack.pack(ids),
                   'records', struct.pack('>BI4', 0xdd, n) .. table.concat(records)}
    if maxlen > 0 then
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(entry))
    else
      redis.call('XADD', stream, '*', unpack(entry))
    end
  end
  return self
end
"""


# KEYS[1] fee stream; ARGV[1] result key prefix; ARGV[2] the ttl; ARGV[3] the stream
# entries kept (0: all); then per result: tx id, result bytes, fee record bytes (flat:
# cheaper for Redis than one msgpack argument to unpack, and no dearer for redis-py to
# send). Returns per result 1 when this call wrote it, else the first result's bytes.
WRITE_ONCE_LUA = RESULT_LUA + """
local out, ttl, maxlen = {}, ARGV[2], tonumber(ARGV[3])
local fees = fee_records()
for i = 4, #ARGV, 3 do
  local stored = write_once(ARGV[1], ttl, ARGV[i], ARGV[i + 1])
  if stored == true then
    fees.add(ARGV[i], ARGV[i + 2])
    out[#out + 1] = 1
  else
    out[#out + 1] = stored
  end
end
fees.append(KEYS[1], maxlen)
return out
"""
RESULTS_PER_CALL = 256  # WRITE_ONCE_LUA rows per script call, whoever writes them


def write_once_args(result_prefix: str, rows: Iterable[Row], ttl_s: int,
                    maxlen: int) -> list[Any]:
    """WRITE_ONCE_LUA's ARGV: (tx id, result bytes, fee record bytes) rows, the result TTL
    (s; 0: none) and the stream entries kept (0: all)."""
    args: list[Any] = [result_prefix, int(ttl_s), int(maxlen)]  # (the ttl as digits: "0")
    for row in rows:
        args += row
    return args


@dataclass(frozen=True, slots=True)
class FeeEntry:
    """One fee record of the `{p}:fees` stream: exactly one per tx id. The records one
    script call stored share a stream entry (`stream_id`)."""

    stream_id: str
    tx_id: str
    fee: dict[str, Any]
    status: str = ""

    @classmethod
    def decode(cls, stream_id: bytes, fields: Mapping[bytes, bytes]) -> list[FeeEntry]:
        """The records of one stream entry, in the order stored (none when it holds none
        that can be read)."""
        sid = stream_id.decode()
        try:
            rows = msgpack.unpackb(fields[b"records"], raw=False)
            return [cls(sid, tx_id, fee if isinstance(fee, dict) else {"value": fee}, status)
                    for tx_id, status, fee in rows]
        except Exception:
            return []


def entry_tx_ids(fields: Sequence[bytes]) -> list[str]:
    """The tx ids a fee-stream entry holds records of, from its flat field list as Redis
    sends it (none when it names none that can be read)."""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == b"ids":
            try:
                ids = msgpack.unpackb(fields[i + 1], raw=False)
            except Exception:
                return []
            return [t for t in ids if isinstance(t, str)] if isinstance(ids, list) else []
    return []

"""Results and fee records in Redis, a record per part (worker/protocol.py exports it with
the rest of the wire contract; worker/fee_entries.py reads the fee stream's entries).

    {p}:part:{part id}   msgpack map, tx id -> its Result (the msgpack wire Result): what
                         one script call stored (SET, expiring after the farm's span)
    {p}:txpart:span      the farm's result ttl in seconds (0: none), set by its first
                         write from that writer's result_ttl_s: parts live that long and
                         the index rotates by it, whatever a later process has set
    {p}:txpart:{g}       hash: tx id -> the part id holding its Result, set once per tx id;
                         generation g = now // span + 1 (0 with no span), each hash
                         expiring two spans after its last write (hash fields cannot
                         expire on their own in Redis 7.0)
    {p}:fees             stream: an entry per part: `n` (its records), `part` (its id),
                         `records` (msgpack array of the txs it stored, each [tx id,
                         status, fee record as msgpack bytes])
    {p}:fees:known       stream of hints, no records (the last ~1,000 entries): per
                         call whose txs another part stored, `known` (tx id, part, ...),
                         so a reader waiting for them learns where their Results are
    {p}:fees:marks       sorted set: fee-stream entry id, scored by the records up to and
                         including it, so the stream is trimmed by records, not entries

Exactly once per tx id: a part's script finds its txs already stored (the current and
the previous generation, a part still there) with one HMGET each, stores the others
with one HSET, one SET and one XADD, and answers each row with the part holding its
first Result (nil: stored now). Per-tx keys and entries cost Redis more (docs/SCALING.md),
and so did a stream field per tx: the fee records travel as one argument and are stored
as one field (re-packed in Lua, in the rare call where some rows were stored before).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from redis import Redis as SyncRedis
from redis.asyncio import Redis as AsyncRedis

# write_part(prefix "{p}:", ttl s, fee records kept (0: all), part id, the part's record,
# tx ids, the rows' fee records (PartArgs.records)) -> per tx: false when stored now, else
# the id of the part holding its first Result (a tx id twice in one call: the first row
# counts). The farm's result ttl, `{p}:txpart:span`, is set by its first write (from that
# writer's ttl) and is what every part lives and every index generation spans: a tx id is
# written once for as long as its Result lives, whatever ttl a later process has. A tx
# whose part expired is no longer stored. Trimming takes only an entry id of ours no newer
# than the one added. A key of another type where an index hash, the stream or the marks
# go holds nothing of the farm's (someone wrote it): it is dropped, so it cannot make
# every write fail; so is a stream whose ids ran out.
PART_LUA = """
local function mine(command, key, ...)
  local reply = redis.pcall(command, key, ...)
  if type(reply) == 'table' and reply.err then
    -- a key of another type, or a stream whose ids ran out: none of ours. Any other
    -- error (out of memory, say) says nothing of the key: it must not cost the index.
    if not (string.find(reply.err, '^WRONGTYPE') or string.find(reply.err, 'exhausted')) then
      error(reply)
    end
    redis.call('DEL', key)
    reply = redis.call(command, key, ...)
  end
  return reply
end
local function span_of(p, ttl)
  local key = p .. 'txpart:span'
  local span = mine('GET', key)
  if not (span and string.match(span, '^%d+$') and #span <= 12) then
    redis.call('SET', key, ttl)
    span = ttl
  end
  return tonumber(span)
end
local function u64(digits)  -- a decimal Redis takes as a stream id's part (2^64 - 1 at most)
  return #digits < 20 or (#digits == 20 and digits <= '18446744073709551615')
end
local function stream_id(id)
  -- an id XTRIM takes: a mark of someone else's past 2^64 made it fail after every write
  local ms, seq = string.match(id or '', '^(%d+)%-(%d+)$')
  if ms and u64(ms) and u64(seq) then return tonumber(ms), tonumber(seq) end
end
local TRIM_EVERY = 256  -- records: the stream is trimmed when their count crosses one
local HINTS_KEPT = 1000  -- entries of `{p}:fees:known` (hints, no records: any may go)
local function trim(p, kept, stored, id)
  local marks = p .. 'fees:marks'
  local last = mine('ZREVRANGE', marks, 0, 0, 'WITHSCORES')
  local before = tonumber(last[2]) or 0
  if before ~= before or before < 0 or before > 1e15 then  -- no count of ours
    redis.call('DEL', marks)
    before = 0
  end
  local total = before + stored
  redis.call('ZADD', marks, total, id)
  local cut = total - kept
  if cut <= 0 or math.floor(total / TRIM_EVERY) == math.floor(before / TRIM_EVERY) then
    return
  end
  redis.call('ZREMRANGEBYSCORE', marks, '-inf', cut)
  local keep = redis.call('ZRANGEBYSCORE', marks, '(' .. cut, '+inf', 'LIMIT', 0, 1)[1]
  local kms, kseq = stream_id(keep)
  local ms, seq = stream_id(id)
  if kms and (kms < ms or (kms == ms and kseq <= seq)) then
    redis.call('XTRIM', p .. 'fees', 'MINID', '~', keep)
  end
end
local function plan_part(p, ttl, part, ids, records)
  -- What a write of the part would store (no write of the farm's data yet): each row's
  -- part holding its first Result (false: stored by this write), the index fields, and
  -- the fee records of the rows stored, re-packed only when some are not.
  local span, g = span_of(p, ttl), 0
  if span > 0 then g = math.floor(tonumber(redis.call('TIME')[1]) / span) + 1 end
  local have = {}
  for back = 0, (g > 1 and 1 or 0) do
    local found = mine('HMGET', p .. 'txpart:' .. (g - back), unpack(ids))
    for i = 1, #ids do if not have[i] then have[i] = found[i] end end
  end
  local live = {}  -- a part expired while the index names it: its txs have no Result now
  for i = 1, #ids do
    local at = have[i]
    if at then
      if live[at] == nil then
        live[at] = redis.call('TYPE', p .. 'part:' .. at)['ok'] == 'string'
      end
      if not live[at] then have[i] = false end
    end
  end
  local index, seen, stored = {}, {}, 0
  for i = 1, #ids do
    local tx = ids[i]
    if not have[i] then
      if seen[tx] then
        have[i] = part
      else
        seen[tx] = true
        index[#index + 1] = tx
        index[#index + 1] = part
        stored = stored + 1
      end
    end
  end
  local known = {}  -- (rare) rows stored before, by another part: named, not recorded
  if stored < #ids then
    for i = 1, #ids do
      if have[i] and have[i] ~= part then
        known[#known + 1] = ids[i]
        known[#known + 1] = have[i]
      end
    end
  end
  if stored > 0 and stored < #ids then  -- the stream keeps the stored rows' records alone
    local rows, kept = cmsgpack.unpack(records), {}
    for i = 1, #ids do if not have[i] then kept[#kept + 1] = rows[i] end end
    records = cmsgpack.pack(kept)
  end
  return {span = span, g = g, have = have, index = index, stored = stored, records = records,
          known = known}
end
local function store_part(p, kept, part, blob, plan)
  local span = plan.span
  if plan.stored == 0 and #plan.known == 0 then return plan.have end
  if plan.stored > 0 then
    local current = p .. 'txpart:' .. plan.g
    mine('HSET', current, unpack(plan.index))
    if span > 0 then redis.call('EXPIRE', current, 2 * span) end
    if span > 0 then
      redis.call('SET', p .. 'part:' .. part, blob, 'EX', span)
    else
      redis.call('SET', p .. 'part:' .. part, blob)
    end
    local id = mine('XADD', p .. 'fees', '*', 'n', plan.stored, 'part', part,
                    'records', plan.records)  -- (or ids that ran out)
    if kept > 0 then trim(p, kept, plan.stored, id) end
  end
  if #plan.known > 0 then  -- a reader waiting for these learns where their Results are
    mine('XADD', p .. 'fees:known', 'MAXLEN', '~', HINTS_KEPT, '*', 'known',
         cmsgpack.pack(plan.known))
  end
  return plan.have
end
local function write_part(p, ttl, kept, part, blob, ids, records)
  return store_part(p, kept, part, blob, plan_part(p, ttl, part, ids, records))
end
"""
# ARGV[1] the key prefix with its colon, ARGV[2] the result ttl (s, 0: none), ARGV[3] the
# fee records kept (0: all), ARGV[4] part id, ARGV[5] the part's record, ARGV[6] n, then n
# tx ids, then their fee records (one argument). Returns write_part's answer.
WRITE_PART_LUA = PART_LUA + """
local n = tonumber(ARGV[6])
if not (n and n >= 1 and #ARGV == 7 + n) then  -- before any write: no Result without its fee
  return redis.error_reply('write_part: ' .. #ARGV .. ' arguments for ' .. tostring(ARGV[6])
                           .. ' rows')
end
local ids = {}
for i = 1, n do ids[i] = ARGV[6 + i] end
return write_part(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], ids,
                  ARGV[7 + n])
"""
RESULTS_PER_CALL = 256  # rows of a part, whoever writes them
INDEX_HMGET = 1_000  # tx ids a look-up asks an index hash for at once

Row = tuple[str, bytes, bytes, str]  # tx id, Result bytes, fee bytes, status


@dataclass(frozen=True, slots=True)
class PartArgs:
    """One part's write: its id, record (first row of a tx id), tx ids and their fee
    records, one msgpack array of [tx id, status, fee record] (the fee stream's `records`)."""

    part_id: str
    blob: bytes
    tx_ids: list[str]
    records: bytes

    @classmethod
    def of(cls, rows: Iterable[Row]) -> PartArgs:
        results: dict[str, bytes] = {}
        tx_ids, records = [], []
        for tx_id, data, fee, status in rows:
            results.setdefault(tx_id, data)
            tx_ids.append(tx_id)
            records.append((tx_id, status, fee))
        # (no bin type in the records: Lua's cmsgpack, which re-packs them when some rows
        # are not stored, reads none; readers take str and bin alike as bytes)
        return cls(uuid.uuid4().hex, msgpack.packb(results, use_bin_type=True), tx_ids,
                   msgpack.packb(records, use_bin_type=False))

    def argv(self, prefix: str, retention: tuple[int, int]) -> list[Any]:
        """WRITE_PART_LUA's ARGV; `retention`: result ttl (s), fee records kept."""
        return [f"{prefix}:", *map(int, retention), self.part_id, self.blob, len(self.tx_ids),
                *self.tx_ids, self.records]


def generation(ttl_s: int, now_s: float | None = None) -> int:
    """The index generation of a time (0 with no ttl)."""
    if ttl_s <= 0:
        return 0
    return int((time.time() if now_s is None else now_s) // ttl_s) + 1


def index_key(prefix: str, g: int) -> str:
    return f"{prefix}:txpart:{g}"


def index_keys(prefix: str, ttl_s: int, now_s: float | None = None) -> list[str]:
    """The index hashes a look-up reads, newest first: the generation of now and one
    either side (the writer's generation is Redis's clock, the reader's its own)."""
    g = generation(ttl_s, now_s)
    return [index_key(prefix, x) for x in ((g + 1, g, g - 1) if g else (0,)) if x >= 0]


def part_key(prefix: str, part_id: str | bytes) -> str:
    return f"{prefix}:part:{part_id.decode() if isinstance(part_id, bytes) else part_id}"


class ResultLookup:
    """Stored Results by tx id, without I/O of its own. Ask Redis for `span_key` and an
    HMGET of each of `index_reads()` (an error reply reads as nothing found) and hand the
    replies to `located()` (False: the farm's generation length is not the one guessed:
    read again); then GET `part_keys()` (MGET) and hand them to `read()`. `results` then
    maps tx id -> Result bytes; `misled` lists the hinted txs whose hint was wrong."""

    def __init__(self, prefix: str, ttl_s: int, tx_ids: Iterable[str],
                 hints: Mapping[str, str] | None = None) -> None:
        """`ttl_s`: this process's result ttl, the guess of the farm's span; `hints`:
        tx id -> the part holding its Result, as the fee stream says (not looked up in
        the index)."""
        self.prefix, self.span = prefix, ttl_s
        self.span_key = f"{prefix}:txpart:span"
        ids = list(dict.fromkeys(tx_ids))
        self.hinted = {t: hints[t] for t in ids if hints and t in hints}
        self.tx_ids = [t for t in ids if t not in self.hinted]
        self.where: dict[str, str] = {}
        self.part_ids: list[str] = []
        self.results: dict[str, bytes] = {}
        self.misled: list[str] = []

    def index_reads(self) -> list[tuple[str, list[str]]]:
        keys = index_keys(self.prefix, self.span)
        return [(key, self.tx_ids[i : i + INDEX_HMGET]) for i in range(0, len(self.tx_ids),
                                                                      INDEX_HMGET)
                for key in keys]

    def located(self, span: Any, replies: Sequence[Any]) -> bool:
        """Take the span and the index_reads()' replies, in order."""
        farm_span = (int(span) if isinstance(span, bytes) and span.isascii() and span.isdigit()
                     and len(span) <= 12 else None)
        if farm_span is not None and farm_span != self.span:
            self.span = farm_span
            return False
        for (_, group), reply in zip(self.index_reads(), replies, strict=True):
            if isinstance(reply, list):
                for tx_id, part in zip(group, reply, strict=False):
                    if isinstance(part, bytes):
                        self.where.setdefault(tx_id, part.decode("utf-8", "replace"))
        return True

    def found(self, types: Sequence[Any]) -> set[str]:
        """The tx ids with a Result stored (after located()), from a TYPE of each of
        part_keys() in order: the index may name a part that expired (or that is none)."""
        alive = {p for p, t in zip(self.part_ids, types, strict=True) if t == b"string"}
        return {t for t, p in self.where.items() if p in alive}

    def part_keys(self) -> list[str]:
        self.part_ids = sorted({*self.where.values(), *self.hinted.values()})
        return [part_key(self.prefix, p) for p in self.part_ids]

    def read(self, blobs: Sequence[bytes | None]) -> None:
        """Take the parts' records (part_keys()' keys, in order). A part gone (expired)
        holds no Result: as the writer, which stores the tx again; one that is no record
        of the farm's, or lacks the tx the index names, gives b"": an unreadable record
        of that tx (Result.from_stored), so nobody waits for a Result that will not come."""
        decoded: dict[str, dict[Any, Any] | None] = {}
        for part_id, blob in zip(self.part_ids, blobs, strict=True):
            try:
                record = msgpack.unpackb(blob, raw=True) if blob is not None else None
            except Exception:
                record = {}
            decoded[part_id] = record if isinstance(record, dict) or record is None else {}
        for tx_id, part_id in self.hinted.items():
            data = (decoded[part_id] or {}).get(tx_id.encode())
            if isinstance(data, bytes):
                self.results[tx_id] = data
            else:
                self.misled.append(tx_id)
        for tx_id, part_id in self.where.items():
            record = decoded[part_id]
            if record is not None:
                data = record.get(tx_id.encode())
                self.results[tx_id] = data if isinstance(data, bytes) else b""


PARTS_PER_MGET = 64


async def located(redis: AsyncRedis, lookup: ResultLookup) -> None:
    """The index steps of `lookup` (asyncio client)."""
    for _ in range(2):
        reads = lookup.index_reads()
        if not reads:
            break
        async with redis.pipeline(transaction=False) as pipe:
            pipe.get(lookup.span_key)
            for key, group in reads:
                pipe.hmget(key, group)
            span, *replies = await pipe.execute(raise_on_error=False)
        if lookup.located(span, replies):
            break


async def stored_results(redis: AsyncRedis, prefix: str, ttl_s: int, tx_ids: Iterable[str],
                         hints: Mapping[str, str] | None = None) -> ResultLookup:
    """Look `tx_ids` up (asyncio client): ResultLookup's steps. A wrong hint is looked up
    again in the index."""
    lookup = ResultLookup(prefix, ttl_s, tx_ids, hints)
    await located(redis, lookup)
    keys = lookup.part_keys()
    lookup.read([b for i in range(0, len(keys), PARTS_PER_MGET)
                 for b in await redis.mget(keys[i : i + PARTS_PER_MGET])])
    if lookup.misled:
        lookup.results.update((await stored_results(redis, prefix, lookup.span,
                                                    lookup.misled)).results)
    return lookup


def stored_results_sync(redis: SyncRedis, prefix: str, ttl_s: int,
                        tx_ids: Iterable[str]) -> ResultLookup:
    """stored_results with a blocking client (no hints)."""
    lookup = ResultLookup(prefix, ttl_s, tx_ids)
    for _ in range(2):
        reads = lookup.index_reads()
        if not reads:
            break
        with redis.pipeline(transaction=False) as pipe:
            pipe.get(lookup.span_key)
            for key, group in reads:
                pipe.hmget(key, group)
            span, *replies = pipe.execute(raise_on_error=False)
        if lookup.located(span, replies):
            break
    keys = lookup.part_keys()
    lookup.read([b for i in range(0, len(keys), PARTS_PER_MGET)
                 for b in redis.mget(keys[i : i + PARTS_PER_MGET])])  # type: ignore[union-attr]
    return lookup

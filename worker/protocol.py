"""The farm's wire contract: what producers and workers both read and write in Redis.

This is the only module of `worker/` that producers import. It holds the Redis key
layout, the arq job functions' names and the job (de)serializers (defined in
worker/envelope.py, exported here), batch job ids, the committed-state record, the
results and the fee stream (defined in worker/result_store.py, exported here), and the
Lua scripts whose effects the other side reads (arq's enqueue, the state root, the
workers' word).

Redis layout under a key prefix `{p}`:

    {p}:code:{sha256}        module bytes
    {p}:addr:{address}       sha256 hex of the code deployed at address (immutable)
    {p}:state:{address}      hash: key bytes -> state record (below)
    {p}:state:seq            last committed version (INCR per committed tx)
    {p}:root                 the state root (producer/state_root.py): 2,048 bytes, updated
                             by every script that writes state; absent: not known (built
                             again from the whole state by the next commit)
    {p}:contracts            set: the name of every `{p}:state:{address}` hash ever
                             written (and "" once it is known to be complete), so
                             rebuilding the state root need not SCAN the keyspace
    {p}:part:{part id}       msgpack map tx id -> Result: what one write stored
    {p}:txpart:{generation}  hash: tx id -> the part holding its Result (set once)
    {p}:fees                 stream: an entry per part, a fee record per tx id in it
    {p}:fees:marks           sorted set: entry id by records so far (trimming by records)
                             (worker/result_store.py has these four)
    {p}:block:{height}       msgpack commit record of a block
    {p}:block:{height}:applied  hash: tx id -> version its writes got (0: none); makes a
                             block commit resumable (expires an hour after the record)
    {p}:height               the highest committed block height
    {p}:txs                  hash: tx id -> the height of the block that committed it (a tx
                             id commits once: a later block naming it again does not)
    {p}:arq:...              arq's own keys (job:, result:, in-progress:, retry:, abort):
                             arq 0.28 names them by module constants, which every worker
                             process points here (worker/arq_config.py); producers build
                             them from Keys
    {p}:workers              sorted set: worker name, scored by when its word expires (ms)
    {p}:workers:executors    hash: worker name -> its live executors (FARM_LUA reads both)
    {p}:workers:versions     hash: worker name -> what it runs (`wesfarm status` shows it)

A state record is a fixed header and the value: one format byte (1), the version as an
unsigned 64-bit big-endian integer, then the value bytes. Lua reads the version as
`string.sub(record, 2, 9)` and compares it as 8 bytes; nobody parses msgpack by hand.

No pickle anywhere on the Redis path (worker/envelope.py).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from worker.envelope import FN_BATCH as FN_BATCH
from worker.envelope import FN_EXECUTE as FN_EXECUTE
from worker.envelope import FN_REJECT as FN_REJECT
from worker.envelope import JOB_TRY as JOB_TRY
from worker.envelope import MAX_ARG_DEPTH as MAX_ARG_DEPTH
from worker.envelope import MAX_JOB_TXS as MAX_JOB_TXS
from worker.envelope import TxMaps as TxMaps
from worker.envelope import job_bytes as job_bytes
from worker.envelope import job_deserializer as job_deserializer
from worker.envelope import job_serializer as job_serializer
from worker.envelope import result_record as result_record
from worker.fee_entries import FeeEntry as FeeEntry
from worker.fee_entries import entry_statuses as entry_statuses
from worker.fee_entries import entry_tx_ids as entry_tx_ids
from worker.fee_entries import hint_tx_ids as hint_tx_ids
from worker.result_store import PART_LUA as PART_LUA
from worker.result_store import RESULTS_PER_CALL as RESULTS_PER_CALL
from worker.result_store import WRITE_PART_LUA as WRITE_PART_LUA
from worker.result_store import PartArgs as PartArgs
from worker.result_store import ResultLookup as ResultLookup
from worker.result_store import generation as generation
from worker.result_store import index_key as index_key
from worker.result_store import located as located
from worker.result_store import part_key as part_key
from worker.result_store import stored_results as stored_results
from worker.result_store import stored_results_sync as stored_results_sync

BATCH_JOB_PREFIX = "batch:"


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key of one farm (one key prefix)."""

    prefix: str

    def code(self, code_hash: str) -> str:
        return f"{self.prefix}:code:{code_hash}"

    def address(self, address: str) -> str:
        return f"{self.prefix}:addr:{address}"

    def state(self, address: str) -> str:
        return f"{self.prefix}:state:{address}"

    @property
    def state_seq(self) -> str:
        return f"{self.prefix}:state:seq"

    @property
    def contracts(self) -> str:
        return f"{self.prefix}:contracts"

    @property
    def root(self) -> str:
        return f"{self.prefix}:root"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def worker_executors(self) -> str:
        return f"{self.prefix}:workers:executors"

    @property
    def worker_versions(self) -> str:
        return f"{self.prefix}:workers:versions"

    def part(self, part_id: str) -> str:
        return part_key(self.prefix, part_id)

    @property
    def fees(self) -> str:
        return f"{self.prefix}:fees"

    @property
    def fee_marks(self) -> str:
        return f"{self.prefix}:fees:marks"

    @property
    def fee_hints(self) -> str:
        return f"{self.prefix}:fees:known"

    def block(self, height: int) -> str:
        return f"{self.prefix}:block:{height}"

    def block_applied(self, height: int) -> str:
        return f"{self.prefix}:block:{height}:applied"

    @property
    def height(self) -> str:
        return f"{self.prefix}:height"

    @property
    def committed_txs(self) -> str:
        return f"{self.prefix}:txs"

    def arq(self, kind: str) -> str:
        """arq's key prefix of `kind` (job:, result:, in-progress:, retry:) or its abort
        set (abort), under this farm's prefix."""
        return f"{self.prefix}:arq:{kind}"


def health_check_key(queue_name: str) -> str:
    """arq's health-check key of a queue's workers (it exists while one is alive)."""
    return f"{queue_name}:health-check"


def batch_job_id(prefix: str, tx_ids: Sequence[str]) -> str:
    """`batch:{prefix}:{n}:{digest of the tx ids}`: the same batch always gets the same id."""
    digest = hashlib.sha256("\x00".join(tx_ids).encode()).hexdigest()[:32]
    return f"{BATCH_JOB_PREFIX}{prefix}:{len(tx_ids)}:{digest}"


def job_tx_count(job_id: str) -> int:
    """How many txs a job id says it carries (a batch's `n`, else 1), clamped to 1..10,000:
    what a worker weighs a job by before claiming it. Producers refuse tx ids that look
    like batch ids; one enqueued around them that lies about its count changes only how
    much a worker claims beside it, never whether the poll loop goes on."""
    if not job_id.startswith(BATCH_JOB_PREFIX):
        return 1
    field = job_id.rsplit(":", 2)[-2] if job_id.count(":") >= 3 else ""
    if not (field.isascii() and field.isdigit()) or len(field) > 18:
        return 1  # int() of 4,301+ digits raises: never let an id end the poll loop
    return min(max(int(field), 1), MAX_JOB_TXS)


def arq_job_keys(keys: Keys, job_id: str) -> tuple[str, str]:
    """arq's job key and result key of a job id (ENQUEUE_LUA's KEYS per job)."""
    return keys.arq("job:") + job_id, keys.arq("result:") + job_id


# arq 0.28's enqueue_job, for many jobs in one atomic call: per job, skip it if its job
# key or result key exists, else PSETEX the job key and ZADD it to the queue.
# KEYS[1] queue; per job KEYS[2i] job key, KEYS[2i+1] result key. ARGV[1] expiry (ms),
# ARGV[2] score; per job ARGV[2i+1] id, ARGV[2i+2] job bytes. Returns per job QUEUED (its
# job key exists: queued or running), ENQUEUED, or FINISHED (arq kept a result: it ran).
QUEUED, ENQUEUED, FINISHED = 0, 1, 2
ENQUEUE_LUA = """
local expires, score, out = ARGV[1], ARGV[2], {}
for i = 1, (#KEYS - 1) / 2 do
  if redis.call('EXISTS', KEYS[2 * i]) > 0 then
    out[i] = 0
  elseif redis.call('EXISTS', KEYS[2 * i + 1]) > 0 then
    out[i] = 2
  else
    redis.call('PSETEX', KEYS[2 * i], expires, ARGV[2 * i + 2])
    redis.call('ZADD', KEYS[1], score, ARGV[2 * i + 1])
    out[i] = 1
  end
end
return out
"""

# -- committed state records ---------------------------------------------------------------

RECORD_FORMAT = b"\x01"
_VERSION = struct.Struct(">Q")
HEADER_BYTES = 1 + _VERSION.size


class BadStateRecord(ValueError):
    """Bytes under a state key that are not a state record."""


def encode_state(value: bytes, version: int) -> bytes:
    return RECORD_FORMAT + _VERSION.pack(version) + value


def decode_state(record: bytes) -> tuple[bytes, int]:
    """(value, version) of a state record."""
    if len(record) < HEADER_BYTES or record[:1] != RECORD_FORMAT:
        raise BadStateRecord(f"not a state record: {bytes(record[:16])!r}")
    return bytes(record[HEADER_BYTES:]), _VERSION.unpack_from(record, 1)[0]


RECORDS_PER_HMGET = 1_000


def record_groups(slots: Iterable[tuple[str, bytes]]) -> list[tuple[str, list[bytes]]]:
    """(contract, keys) groups to read `slots` (each once) by: one HMGET of
    `{p}:state:{contract}` per group, RECORDS_PER_HMGET keys at most. Zip the groups with
    the HMGETs' replies."""
    wanted: dict[str, list[bytes]] = {}
    for contract, key in dict.fromkeys(slots):
        wanted.setdefault(contract, []).append(key)
    return [(contract, keys[i : i + RECORDS_PER_HMGET]) for contract, keys in wanted.items()
            for i in range(0, len(keys), RECORDS_PER_HMGET)]


def encode_version(version: int) -> bytes:
    """A version as the 8 bytes a record's header holds (what Lua compares)."""
    return _VERSION.pack(version)


def state_write(value: bytes | None) -> bytes:
    """A write as STATE_LUA's `apply_write` takes it: "\\0" removes, "\\1" .. value sets."""
    return b"\x00" if value is None else b"\x01" + value


# Lua helpers for scripts that read or write state records (prepended to them):
# record_version(record or nil) -> the 8-byte version (zeros when absent);
# apply_write(hash key, field, write, packed version) with `write` from state_write();
# root_add(root key, delta): add a state-root delta lane by lane (1,024 u16 lanes, little
# endian; producer/state_root.py); an absent root stays absent, an empty delta is none,
# and a root or delta of the wrong size drops the root (never an error after writes).
STATE_LUA = """
local ZERO_VERSION = string.rep('\\0', 8)
local function record_version(record)
  if not record then return ZERO_VERSION end
  return string.sub(record, 2, 9)
end
local function pack_version(version)
  return struct.pack('>I8', version)
end
local function apply_write(hash, field, write, packed)
  if string.byte(write, 1) == 0 then
    redis.call('HDEL', hash, field)
  else
    redis.call('HSET', hash, field, '\\1' .. packed .. string.sub(write, 2))
  end
end
local LANES = '<' .. string.rep('H', 1024)
local function root_add(key, delta)
  if #delta == 0 then return end
  local root = redis.call('GET', key)
  if not root then return end
  if #root ~= 2048 or #delta ~= 2048 then
    redis.call('DEL', key)
    return
  end
  local r, d = {struct.unpack(LANES, root)}, {struct.unpack(LANES, delta)}
  for i = 1, 1024 do r[i] = (r[i] + d[i]) % 65536 end
  redis.call('SET', key, struct.pack(LANES, unpack(r, 1, 1024)))
end
"""

# Workers' word on their live executors. KEYS[1] {p}:workers, KEYS[2] {p}:workers:executors,
# KEYS[3] {p}:workers:versions; ARGV[1] worker name, ARGV[2] how long the word holds (ms),
# ARGV[3] live executors, ARGV[4] what the worker runs (its version line).
# Expiry is by Redis's clock (TIME), so the workers' clocks need not agree.
ADVERTISE_LUA = """
local now = redis.call('TIME')
local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expires, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
return 0
"""
# The farm as its workers last told it: KEYS as ADVERTISE_LUA's. Drops the words that
# expired; returns {live workers, their live executors} (each count taken as 0..1024).
FARM_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, name in ipairs(gone) do
  redis.call('ZREM', KEYS[1], name)
  redis.call('HDEL', KEYS[2], name)
  redis.call('HDEL', KEYS[3], name)
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local executors = 0
for i = 1, #live, 1000 do
  local names = {}
  for j = i, math.min(i + 999, #live) do names[#names + 1] = live[j] end
  for _, n in ipairs(redis.call('HMGET', KEYS[2], unpack(names))) do
    local count = tonumber(n) or 0
    if count == count and count > 0 then executors = executors + math.min(count, 1024) end
  end
end
return {#live, executors}
"""

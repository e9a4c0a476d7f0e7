"""COMMIT_LUA, the one atomic step that applies a run of a block's txs, and its arguments.

A run is decided in the producer against the block's view (producer/committer.py), so inside
it every read of a slot an earlier tx of the run wrote is current by construction. What
the view cannot vouch for is its starting point: so the script checks each slot once, at
the run's first touch of it (the version read, or the version a blind write replaces),
and writes each slot once, its final value under the version of its last writer: a run
on a few hot accounts checks and writes each account once, not once per tx.
All or nothing: a failed check applies nothing, so no slot is left holding a value of
the middle of a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.protocol import PART_LUA, STATE_LUA, Keys, PartArgs, encode_version, state_write

Slot = tuple[str, bytes]  # (contract, key)
ResultRow = tuple[bytes, bytes, str]  # a Result as stored, its fee record, its status

# KEYS[1] seq, KEYS[2] applied hash, KEYS[3] the state hashes' registry (Keys.contracts),
# KEYS[4] the state root. ARGV[1] what the run moves the root by (state_root.to_bytes; ""
# when nothing), ARGV[2..6] counts: txs, checks, writes, state hashes written, writing txs
# (m); ARGV[7..9] the key prefix with its colon, the result ttl and the fee records kept
# (as WRITE_PART_LUA's); then per tx: tx_id, decision, ordinal (k of the run's m writing
# txs, 0: none); per check: state hash, key, 8-byte version; per write: state hash, key,
# write (as protocol.state_write gives it), ordinal of its last writer; the state hashes;
# then the part of Results of the txs the commit ran for the farm (as WRITE_PART_LUA's
# ARGV[4..]: part id, record, n, tx ids, their fee records; n is 0 when none). The state
# hashes go in ARGV: fine outside Redis Cluster, and in it too under a hash-tagged
# prefix. The writing txs take versions base+1 .. base+m (INCRBY): the k-th writes under
# base+k. Returns {0, base, i...} when applied, the i-th rows of the part being those
# under whose tx id another Result was stored first; {1, check} when a check failed
# (nothing applied); {2, tx, its entry} when a tx of the run was decided by another
# commit (nothing applied).
TX_ARGS = 3  # COMMIT_LUA's arguments per tx
COMMIT_LUA = STATE_LUA + PART_LUA + """
local nt, nc, nw, nh = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local m = tonumber(ARGV[6])
local t0 = 10
local c0 = t0 + TX_ARGS * nt
local w0 = c0 + 3 * nc
local h0 = w0 + 4 * nw
local p0 = h0 + nh
local n = tonumber(ARGV[p0 + 2])
if not (n and n >= 0 and #ARGV == p0 + 2 + (n > 0 and n + 1 or 0)) then  -- before any write
  return redis.error_reply('commit: ' .. #ARGV .. ' arguments, not what the counts say')
end
for i = 0, nt - 1 do
  local prev = redis.call('HGET', KEYS[2], ARGV[t0 + TX_ARGS * i])
  if prev then return {2, i + 1, prev} end
end
for c = 0, nc - 1 do
  local at = c0 + 3 * c
  if record_version(redis.call('HGET', ARGV[at], ARGV[at + 1])) ~= ARGV[at + 2] then
    return {1, c + 1}
  end
end
local part, plan = ARGV[p0], nil
if n > 0 then  -- (what can fail, before the first write)
  local ids = {}
  for i = 1, n do ids[i] = ARGV[p0 + 2 + i] end
  plan = plan_part(ARGV[7], tonumber(ARGV[8]), part, ids, ARGV[p0 + 3 + n])
end
for h = h0, h0 + nh - 1, 1000 do  -- before INCRBY: an error after it would keep it
  redis.call('SADD', KEYS[3], unpack(ARGV, h, math.min(h + 999, h0 + nh - 1)))
end
local base = tonumber(redis.call('GET', KEYS[1]) or '0')
if m > 0 then base = redis.call('INCRBY', KEYS[1], m) - m end
for w = 0, nw - 1 do
  local at = w0 + 4 * w
  apply_write(ARGV[at], ARGV[at + 1], ARGV[at + 2], pack_version(base + tonumber(ARGV[at + 3])))
end
local entries = {}
for i = 0, nt - 1 do
  local at = t0 + TX_ARGS * i
  local k = tonumber(ARGV[at + 2])
  entries[#entries + 1] = ARGV[at]
  entries[#entries + 1] = pack_version(k > 0 and base + k or 0) .. ARGV[at + 1]
end
redis.call('HSET', KEYS[2], unpack(entries))
root_add(KEYS[4], ARGV[1])
local out = {0, base}
if n > 0 then
  local have = store_part(ARGV[7], tonumber(ARGV[9]), part, ARGV[p0 + 1], plan)
  for i = 1, n do
    if have[i] and have[i] ~= part then out[#out + 1] = i end
  end
end
return out
""".replace("TX_ARGS", str(TX_ARGS))
STALE, DECIDED = 1, 2  # the reply's first element ({0, base}: applied)


@dataclass(slots=True)
class RunArgs:
    """COMMIT_LUA's arguments for one run, built tx by tx in block order."""

    keys: Keys
    txs: list[Any] = field(default_factory=list)
    checks: list[Any] = field(default_factory=list)
    check_owner: list[int] = field(default_factory=list)  # per check: its tx's index in the run
    writes: list[Any] = field(default_factory=list)
    hashes: dict[str, None] = field(default_factory=dict)  # written state hashes, in order
    writers: int = 0
    part_rows: list[tuple[str, bytes, bytes, str]] = field(default_factory=list)
    part_owner: list[int] = field(default_factory=list)  # per part row: its tx's index
    _owners: set[int] = field(default_factory=set)  # part_owner's, for stores()
    _touched: set[Slot] = field(default_factory=set)

    def add_tx(self, tx_id: str, decision: bytes, ordinal: int,
               touches: Sequence[tuple[Slot, int]], result: ResultRow | None = None) -> None:
        """One tx: `touches` are the (slot, version) it read or overwrote (reads first);
        `result`, for a tx the commit ran for the farm: its Result to store under its tx
        id, which must be the decision's tail (Applied.decision), its fee record, its
        status."""
        index = len(self.txs) // TX_ARGS
        if result is not None:
            data, fee, status = result
            if not (data and decision.endswith(data)):
                raise ValueError(f"{tx_id}: the Result to store is not the decision's tail")
            self.part_rows.append((tx_id, data, fee, status))
            self.part_owner.append(index)
            self._owners.add(index)
        self.txs += [tx_id, decision, ordinal]
        self.writers += ordinal > 0
        for slot, version in touches:
            if slot not in self._touched:  # later touches follow from the run itself
                self._touched.add(slot)
                self.checks += [self.keys.state(slot[0]), slot[1], encode_version(version)]
                self.check_owner.append(index)

    def ordinal(self, index: int) -> int:
        """The ordinal of the run's tx at `index` (0: it writes nothing)."""
        return int(self.txs[TX_ARGS * index + 2])

    def stores(self, index: int) -> bool:
        """Whether the script stores the Result of the run's tx at `index`."""
        return index in self._owners

    def finish(self, final: Mapping[Slot, tuple[bytes | None, int]]) -> None:
        """Every slot the run writes: its final value (None: removed) and the ordinal of
        the tx that wrote it last."""
        for (contract, key), (value, ordinal) in sorted(final.items()):
            state = self.keys.state(contract)
            self.hashes[state] = None
            self.writes += [state, key, state_write(value), ordinal]

    def argv(self, delta: bytes, retention: tuple[int, int]) -> list[Any]:
        """The script's ARGV; `retention`: the result ttl (s) and the fee records kept."""
        counts = [len(self.txs) // TX_ARGS, len(self.checks) // 3, len(self.writes) // 4,
                  len(self.hashes), self.writers]
        part = (PartArgs.of(self.part_rows).argv(self.keys.prefix, retention)[3:]
                if self.part_rows else ["", b"", 0])
        return [delta, *counts, f"{self.keys.prefix}:", *map(int, retention), *self.txs,
                *self.checks, *self.writes, *self.hashes, *part]

    def owner(self, row: int) -> int:
        """The run's tx index of the part's `row`-th (1-based) Result."""
        return self.part_owner[row - 1]

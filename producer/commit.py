"""Block commit: apply a block's results in block order, re-executing stale ones.

For each tx, in order, one Lua script call checks the tx's read set against the
committed versions in `{p}:state:{contract}` and, when every version still
matches, applies its write set under a new version (INCR `{p}:state:seq`) -- all
atomically. A script call handles a run of txs and stops at the first stale one;
that tx is re-executed in-process through `engine/` against the current committed
state, and the run resumes from it. So the committed state is the one sequential
execution gives, whatever order the farm executed the block in.

`{p}:block:{height}:applied` (tx id -> version, 0 for "charged, no writes") makes a
commit resumable: a tx already applied is never applied twice.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from engine.model import Job, Result, pack
from producer.local_engine import LocalEngine
from worker.protocol import (
    STATE_LUA,
    Keys,
    decode_state,
    encode_state,
    encode_version,
    state_write,
)

if TYPE_CHECKING:
    from engine.state import MemoryState

# Statuses that are consensus results: charged, and (only `ok`) their writes applied.
CHARGED = ("ok", "reverted", "out_of_fee", "trap", "invalid", "rejected")
# Not consensus results: never committed, reported.
NOT_COMMITTED = ("timeout", "error")
TXS_PER_SCRIPT = 256
MAX_REEXECUTIONS = 16

# KEYS[1] seq, KEYS[2] applied hash, KEYS[2+i] state hash of tx i.
# ARGV per tx: tx_id, apply (1/0), n_reads, n_writes, (key, 8-byte version)*, (key, write)*
# with writes as protocol.state_write gives them.
# Returns {stale index or 0, version of tx 1, version of tx 2, ...}.
COMMIT_LUA = STATE_LUA + """
local out = {0}
local a = 1
for i = 1, #KEYS - 2 do
  local state_key = KEYS[2 + i]
  local tx_id, apply = ARGV[a], ARGV[a + 1]
  local nr, nw = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  local prev = redis.call('HGET', KEYS[2], tx_id)
  if prev then
    out[i + 1] = tonumber(prev)
  else
    for r = 0, nr - 1 do
      local cur = redis.call('HGET', state_key, ARGV[a + 2 * r])
      if record_version(cur) ~= ARGV[a + 2 * r + 1] then
        out[1] = i
        return out
      end
    end
    local ver = 0
    if apply == '1' and nw > 0 then
      ver = redis.call('INCR', KEYS[1])
      local packed = pack_version(ver)
      for w = 0, nw - 1 do
        apply_write(state_key, ARGV[a + 2 * nr + 2 * w], ARGV[a + 2 * nr + 2 * w + 1], packed)
      end
    end
    redis.call('HSET', KEYS[2], tx_id, ver)
    out[i + 1] = ver
  end
  a = a + 2 * nr + 2 * nw
end
return out
"""


class CommitError(RuntimeError):
    """A block that cannot be committed (already committed, a tx that keeps going stale)."""


@dataclass(slots=True)
class CommitReport:
    height: int
    txs: int
    committed: int = 0
    reexecuted: int = 0
    not_committed: dict[str, str] = field(default_factory=dict)  # tx id -> status / "missing"
    by_status: dict[str, int] = field(default_factory=dict)
    fee_total: int = 0
    fee_by_sender: dict[str, int] = field(default_factory=dict)
    fee_by_status: dict[str, int] = field(default_factory=dict)
    state_digest: str = ""
    version: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    results: dict[str, Result] = field(default_factory=dict)  # final (re-executed) results

    def record(self) -> dict[str, Any]:
        """The commit record stored at `{p}:block:{height}` (and printed with --json)."""
        return {
            "height": self.height,
            "txs": self.txs,
            "committed": self.committed,
            "reexecuted": self.reexecuted,
            "not_committed": dict(sorted(self.not_committed.items())),
            "by_status": dict(sorted(self.by_status.items())),
            "fees": {
                "total": self.fee_total,
                "by_sender": dict(sorted(self.fee_by_sender.items())),
                "by_status": dict(sorted(self.fee_by_status.items())),
            },
            "state_digest": self.state_digest,
            "version": self.version,
            "seconds": round(self.seconds, 6),
            "notes": self.notes[:100],
        }


class RedisState:
    """engine StateView + CodeSource over the committed Redis state (sync client)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._codes: dict[str, bytes] = {}

    def get(self, contract: str, key: bytes) -> tuple[bytes, int] | None:
        raw = self.client.hget(self.keys.state(contract), key)  # type: ignore[arg-type]
        return None if raw is None else decode_state(raw)  # type: ignore[arg-type]

    def code_hash(self, address: str) -> str | None:
        raw = self.client.get(self.keys.address(address))
        return None if raw is None else raw.decode()  # type: ignore[union-attr]

    def code(self, code_hash: str) -> bytes | None:
        if code_hash not in self._codes:
            raw = self.client.get(self.keys.code(code_hash))
            if raw is None:
                return None
            self._codes[code_hash] = raw  # type: ignore[assignment]
        return self._codes[code_hash]


def _tx_args(tx_id: str, result: Result) -> list[Any]:
    apply = result.status == "ok"
    writes = sorted(result.write_set.items()) if apply else []
    reads = sorted(result.read_set.items())
    args: list[Any] = [tx_id, "1" if apply else "0", len(reads), len(writes)]
    for key, version in reads:
        args += [key, encode_version(version)]
    for key, value in writes:
        args += [key, state_write(value)]
    return args


def _digest_update(h: Any, contract: str, key: bytes, value: bytes) -> None:
    for part in (contract.encode(), key, value):
        h.update(struct.pack(">I", len(part)))
        h.update(part)


def state_digest(items: Iterable[tuple[str, bytes, bytes]]) -> str:
    """sha256 over every (contract, key, value), sorted; versions are left out."""
    h = hashlib.sha256(b"wesfarm-state-1")
    for contract, key, value in sorted(items, key=lambda t: (t[0].encode(), t[1])):
        _digest_update(h, contract, key, value)
    return h.hexdigest()


def memory_state_digest(state: MemoryState) -> str:
    return state_digest(
        (contract, key, value)
        for contract, slot in state.data.items()
        for key, (value, _version) in slot.items()
    )


def redis_state_items(client: redis.Redis, keys: Keys) -> list[tuple[str, bytes, bytes]]:
    """Every committed (contract, key, value) under the prefix."""
    prefix = keys.state("")
    items: list[tuple[str, bytes, bytes]] = []
    for name in client.scan_iter(match=f"{prefix}*", count=1000, _type="hash"):
        contract = name[len(prefix) :].decode()  # type: ignore[index, union-attr]
        for key, raw in client.hgetall(name).items():  # type: ignore[union-attr]
            items.append((contract, bytes(key), decode_state(raw)[0]))
    return items


def redis_state_digest(client: redis.Redis, keys: Keys) -> str:
    return state_digest(redis_state_items(client, keys))


def commit_block(
    client: redis.Redis, keys: Keys, engine: LocalEngine, jobs: Sequence[Job],
    results: Mapping[str, Result], height: int,
) -> CommitReport:
    """Apply `results` in the order of `jobs` (blocking; FarmClient runs it in a thread)."""
    started = time.perf_counter()
    if client.exists(keys.block(height)):
        raise CommitError(f"block {height} is already committed ({keys.block(height)})")
    report = CommitReport(height=height, txs=len(jobs))
    state = RedisState(client, keys)
    script = client.register_script(COMMIT_LUA)
    todo: list[tuple[Job, Result]] = []
    for job in jobs:
        result = results.get(job.tx_id)
        if result is None:
            report.not_committed[job.tx_id] = "missing"
        elif result.status in NOT_COMMITTED:
            report.not_committed[job.tx_id] = result.status
        else:
            todo.append((job, result))
    versions = _apply(engine, client, script, keys, height, todo, state, report)
    for job, result in todo:
        report.results[job.tx_id] = result
        report.committed += 1
        report.by_status[result.status] = report.by_status.get(result.status, 0) + 1
    _account(report, todo)
    for status in report.not_committed.values():
        report.by_status[status] = report.by_status.get(status, 0) + 1
    report.version = max(versions, default=0) or int(client.get(keys.state_seq) or 0)  # type: ignore[arg-type]
    report.state_digest = redis_state_digest(client, keys)
    report.seconds = time.perf_counter() - started
    client.set(keys.block(height), pack(report.record()))
    return report


Slot = tuple[str, bytes]  # (contract, key)


def _writes(job: Job, result: Result) -> set[Slot]:
    return {(job.contract, k) for k in result.write_set} if result.status == "ok" else set()


def _reads_any(job: Job, result: Result, slots: set[Slot]) -> bool:
    return any((job.contract, k) in slots for k in result.read_set)


def _apply(
    engine: LocalEngine,
    client: redis.Redis,
    script: Any,
    keys: Keys,
    height: int,
    todo: list[tuple[Job, Result]],
    state: RedisState,
    report: CommitReport,
) -> list[int]:
    """Run COMMIT_LUA over `todo` in order, re-executing each stale tx; replaces results.

    A run ends before a tx that read a key written earlier in this commit (certainly
    stale): that tx is re-executed first, once everything before it is applied. The
    script's own version check still catches what this cannot see (other writers).
    """
    versions: list[int] = []
    reexecutions: Counter[str] = Counter()
    written: set[Slot] = set()  # keys this commit has written so far
    fresh_head = -1  # index whose result was computed after everything before it applied
    i = 0
    while i < len(todo):
        job, result = todo[i]
        if i != fresh_head and _reads_any(job, result, written):
            fresh_head = i if _reexecute(engine, todo, i, state, report, reexecutions) else -1
            continue
        end, run_writes = i + 1, _writes(job, result)
        while end < len(todo) and end - i < TXS_PER_SCRIPT:
            nxt_job, nxt = todo[end]
            if _reads_any(nxt_job, nxt, written) or _reads_any(nxt_job, nxt, run_writes):
                break
            run_writes |= _writes(nxt_job, nxt)
            end += 1
        script_keys = [keys.state_seq, keys.block_applied(height)]
        args: list[Any] = []
        for tx_job, tx_result in todo[i:end]:
            script_keys.append(keys.state(tx_job.contract))
            args += _tx_args(tx_job.tx_id, tx_result)
        reply = script(keys=script_keys, args=args, client=client)
        stale = int(reply[0])
        versions += [int(v) for v in reply[1:]]
        applied_to = end if stale == 0 else i + stale - 1
        for tx_job, tx_result in todo[i:applied_to]:
            written |= _writes(tx_job, tx_result)
        if stale == 0:
            i = end
        else:  # changed behind our back (another writer): re-execute it now
            i = applied_to
            fresh_head = i if _reexecute(engine, todo, i, state, report, reexecutions) else -1
    return versions


def _reexecute(
    engine: LocalEngine,
    todo: list[tuple[Job, Result]],
    i: int,
    state: RedisState,
    report: CommitReport,
    reexecutions: Counter[str],
) -> bool:
    """Re-execute todo[i] in-process against the committed state.

    False when the new result cannot be committed (it is dropped from `todo`).
    """
    job, _old = todo[i]
    reexecutions[job.tx_id] += 1
    if reexecutions[job.tx_id] > MAX_REEXECUTIONS:
        raise CommitError(f"tx {job.tx_id} went stale {MAX_REEXECUTIONS} times in a row")
    if reexecutions[job.tx_id] == 1:
        report.reexecuted += 1
    fresh = engine.execute(job, state, state)
    fresh.worker = "commit"
    if fresh.status in NOT_COMMITTED:  # e.g. an engine failure here: report, skip
        report.not_committed[job.tx_id] = fresh.status
        message = (fresh.error or {}).get("message", "")
        report.notes.append(f"{job.tx_id}: {fresh.status} on re-execution: {message}")
        del todo[i]
        return False
    todo[i] = (job, fresh)
    return True


def _account(report: CommitReport, done: Sequence[tuple[Job, Result]]) -> None:
    by_sender: defaultdict[str, int] = defaultdict(int)
    by_status: defaultdict[str, int] = defaultdict(int)
    for job, result in done:
        used = result.fee.used
        report.fee_total += used
        by_sender[job.context.caller] += used
        by_status[result.status] += used
    report.fee_by_sender = dict(by_sender)
    report.fee_by_status = dict(by_status)


def write_genesis(
    client: redis.Redis, keys: Keys, contract: str, values: Mapping[bytes, bytes]
) -> int:
    """Write committed state directly (a genesis step, before any block): one new version."""
    version = int(client.incr(keys.state_seq))  # type: ignore[arg-type]
    if values:
        client.hset(
            keys.state(contract),
            mapping={k: encode_state(v, version) for k, v in values.items()},  # type: ignore[arg-type]
        )
    return version

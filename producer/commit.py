"""Block commit: apply a block's results in block order, re-executing stale ones.

For each tx, in order, one Lua script call checks the tx's read set against the
committed versions in `{p}:state:{contract}` and, when every version still
matches, applies its write set under a new version (INCR `{p}:state:seq`) -- all
atomically. A script call handles a run of up to TXS_PER_SCRIPT txs and stops at the
first stale one. Stale txs are found before the call, against the block's committed
state read once and kept up to date with the commit's own writes (_Committer), and
re-executed in-process through `engine/` against it; the script's check catches what
that view cannot see (another writer), and that tx is re-executed against the state
read again. So the committed state is the one sequential execution gives, whatever
order the farm executed the block in.

`{p}:block:{height}:applied` holds, per tx decided, what was decided: the version its
writes got and its final status and fee (and the re-executed result, when it was
re-executed), written in the same script call that applies it. An interrupted commit
run again skips the txs it holds and builds the block record from it alone, so the
record of a resumed commit is the record an uninterrupted one writes, byte for byte.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from engine.model import Job, Result, pack, unpack
from producer import state_root
from producer.commit_record import Applied, CommitReport
from producer.committed_state import BlockView, ensure_state_root, redis_state_root
from producer.errors import refuse_reused
from producer.local_engine import LocalEngine
from worker.protocol import STATE_LUA, Keys, encode_version, state_write

# Statuses that are consensus results: charged, and (only `ok`) their writes applied.
CHARGED = ("ok", "reverted", "out_of_fee", "trap", "invalid", "rejected")
# Not consensus results: never committed, reported.
NOT_COMMITTED = ("timeout", "error")
TXS_PER_SCRIPT = 64  # a call holds Redis ~20 µs per tx: ~1.5 ms, not the 5+ ms of 256
MAX_REEXECUTIONS = 16

# KEYS[1] seq, KEYS[2] applied hash, KEYS[3] the state hashes' registry (Keys.contracts),
# KEYS[4] the state root. ARGV[1] what the run's writes add to the root
# (state_root.to_bytes; "" when nothing); then per tx: tx_id, apply (1/0), decision,
# n_reads, n_writes, (state hash, key, 8-byte version)*, (state hash, key, write, 8-byte
# version it overwrites)* with writes as protocol.state_write gives them: a tx's calls
# (ABI 1.1) read and write several contracts' hashes. A read or an overwritten version that
# is not the one given makes the tx stale. The state hashes go in ARGV: fine outside Redis
# Cluster, which arq does not support either.
# Returns {stale index or 0, applied entry of tx 1, of tx 2, ...}: an entry is the 8-byte
# version its writes got (0: none) then its decision; a tx already applied keeps its own.
# The root moves by ARGV[1] only when the whole run is applied as given; otherwise (a
# stale tx, or one another commit applied) it is dropped: no longer known, the next
# commit builds it again from the whole state.
COMMIT_LUA = STATE_LUA + """
local out, registered = {0}, {}
local a = 2
local i = 0
while a <= #ARGV do
  i = i + 1
  local tx_id, apply, decision = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local nr, nw = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  a = a + 5
  local prev = redis.call('HGET', KEYS[2], tx_id)
  if prev then
    out[i + 1] = prev
    redis.call('DEL', KEYS[4])
  else
    local checks = {}
    for r = 0, nr - 1 do
      local at = a + 3 * r
      checks[#checks + 1] = {ARGV[at], ARGV[at + 1], ARGV[at + 2]}
    end
    for w = 0, nw - 1 do
      local at = a + 3 * nr + 4 * w
      checks[#checks + 1] = {ARGV[at], ARGV[at + 1], ARGV[at + 3]}
    end
    for _, check in ipairs(checks) do
      if record_version(redis.call('HGET', check[1], check[2])) ~= check[3] then
        out[1] = i
        redis.call('DEL', KEYS[4])
        return out
      end
    end
    local packed = pack_version(0)
    if apply == '1' and nw > 0 then
      packed = pack_version(redis.call('INCR', KEYS[1]))
      for w = 0, nw - 1 do
        local at = a + 3 * nr + 4 * w
        if not registered[ARGV[at]] then  -- once per state hash per call, not per write
          redis.call('SADD', KEYS[3], ARGV[at])
          registered[ARGV[at]] = true
        end
        apply_write(ARGV[at], ARGV[at + 1], ARGV[at + 2], packed)
      end
    end
    local entry = packed .. decision
    redis.call('HSET', KEYS[2], tx_id, entry)
    out[i + 1] = entry
  end
  a = a + 3 * nr + 4 * nw
end
root_add(KEYS[4], ARGV[1])
return out
"""


class CommitError(RuntimeError):
    """A block that cannot be committed (already committed, a tx that keeps going stale)."""


def _slot_items(by_contract: Mapping[str, Mapping[bytes, Any]]) -> list[tuple[str, bytes, Any]]:
    """(contract, key, item) of every contract's set, in (contract, key) order."""
    return sorted((c, k, v) for c, items in by_contract.items() for k, v in items.items())


def _tx_args(keys: Keys, job: Job, result: Result, reexecuted: bool,
             overwrites: Sequence[int]) -> list[Any]:
    apply = result.status == "ok"
    writes = _slot_items(result.writes_by_contract(job.contract)) if apply else []
    reads = _slot_items(result.reads_by_contract(job.contract))
    args: list[Any] = [job.tx_id, "1" if apply else "0",
                       Applied.of(result, reexecuted).decision(), len(reads), len(writes)]
    for contract, key, version in reads:
        args += [keys.state(contract), key, encode_version(version)]
    for (contract, key, value), version in zip(writes, overwrites, strict=True):
        args += [keys.state(contract), key, state_write(value), encode_version(version)]
    return args


# The highest committed height only grows. KEYS[1] {p}:height; ARGV[1] a committed height.
RAISE_HEIGHT_LUA = """
local now = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > now then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
"""
# A commit's applied-hash outlives its record by this much: long enough for a committer
# whose reply was lost to resume, then it goes (retention).
APPLIED_KEPT_S = 3_600


def commit_block(
    client: redis.Redis, keys: Keys, engine: LocalEngine, jobs: Sequence[Job],
    results: Mapping[str, Result], height: int, resume: bool = False,
) -> CommitReport:
    """Apply `results` in the order of `jobs` (blocking; FarmClient runs it in a thread).

    With `resume` (a retry of a commit whose reply was lost), a block already committed
    is not an error: its report is rebuilt from what the commit stored."""
    started = time.perf_counter()
    refuse_reused(jobs, results)  # never commit another transaction's result
    stored = client.get(keys.block(height))
    if stored is not None and not resume:
        raise CommitError(f"block {height} is already committed ({keys.block(height)})")
    applied = {bytes(tx).decode(): Applied.decode(bytes(entry)) for tx, entry in
               client.hgetall(keys.block_applied(height)).items()}  # type: ignore[union-attr]
    notes: list[str] = []
    earlier = _committed_elsewhere(client, keys, jobs, height)
    if stored is None:
        todo = [(job, results[job.tx_id]) for job in jobs if job.tx_id not in applied
                and job.tx_id not in earlier and job.tx_id in results
                and results[job.tx_id].status not in NOT_COMMITTED]
        ensure_state_root(client, keys)  # the scripts move a root that exists
        _Committer(engine, client, keys, height, applied, notes).run(todo)
    report = _report(height, jobs, results, applied, earlier)
    report.notes = notes
    if stored is not None:
        record = unpack(stored)  # type: ignore[arg-type]
        report.state_root, report.version = record["state_root"], record["version"]
    else:
        versions = [a.version for a in applied.values()]
        report.version = max(versions, default=0) or int(client.get(keys.state_seq) or 0)  # type: ignore[arg-type]
        report.state_root = redis_state_root(client, keys)
        mine = [job.tx_id for job in jobs if job.tx_id in applied
                and applied[job.tx_id].status not in NOT_COMMITTED]
        for i in range(0, len(mine), 1_000):
            client.hset(keys.committed_txs, mapping=dict.fromkeys(mine[i : i + 1_000], height))
        client.set(keys.block(height), pack(report.record()))
        client.eval(RAISE_HEIGHT_LUA, 1, keys.height, str(height))
        client.expire(keys.block_applied(height), APPLIED_KEPT_S)
    report.seconds = time.perf_counter() - started
    return report


def _report(height: int, jobs: Sequence[Job], results: Mapping[str, Result],
            applied: Mapping[str, Applied], earlier: Mapping[str, int]) -> CommitReport:
    """The report, from the decisions alone (so a resumed commit reports the same)."""
    report = CommitReport(height=height, txs=len(jobs))
    by_sender: defaultdict[str, int] = defaultdict(int)
    by_status: defaultdict[str, int] = defaultdict(int)
    statuses: Counter[str] = Counter()
    for job in jobs:
        decided = applied.get(job.tx_id)
        if job.tx_id in earlier:
            report.not_committed[job.tx_id] = f"committed in block {earlier[job.tx_id]}"
            statuses["already_committed"] += 1
            continue
        if decided is None:
            farm = results.get(job.tx_id)
            report.not_committed[job.tx_id] = "missing" if farm is None else farm.status
            statuses[report.not_committed[job.tx_id]] += 1
            continue
        report.reexecuted += decided.result is not None
        statuses[decided.status] += 1
        if decided.status in NOT_COMMITTED:
            report.not_committed[job.tx_id] = decided.status
            continue
        report.committed += 1
        report.results[job.tx_id] = decided.result or results[job.tx_id]
        report.fee_total += decided.fee_used
        by_sender[job.context.caller] += decided.fee_used
        by_status[decided.status] += decided.fee_used
    report.by_status = dict(statuses)
    report.fee_by_sender = dict(by_sender)
    report.fee_by_status = dict(by_status)
    return report


def _committed_elsewhere(client: redis.Redis, keys: Keys, jobs: Sequence[Job],
                         height: int) -> dict[str, int]:
    """The block's tx ids an earlier block committed already (id -> its height): a
    transaction commits once, whatever block names it again."""
    ids = [job.tx_id for job in jobs]
    found: dict[str, int] = {}
    for i in range(0, len(ids), 1_000):
        chunk = ids[i : i + 1_000]
        heights = client.hmget(keys.committed_txs, chunk)
        found.update({t: int(h) for t, h in zip(chunk, heights, strict=True)  # type: ignore[arg-type]
                      if h is not None and int(h) != height})
    return found


def _slots(todo: Sequence[tuple[Job, Result]]) -> list[tuple[str, bytes]]:
    """Every (contract, key) the farm's results of `todo` read or write (what a write
    replaces moves the state root)."""
    return [(contract, key) for job, result in todo
            for by_contract in (result.reads_by_contract(job.contract),
                                result.writes_by_contract(job.contract))
            for contract, keys in by_contract.items() for key in keys]


class _Committer:
    """COMMIT_LUA over a block's undecided txs, TXS_PER_SCRIPT at a time; fills `applied`.

    The block's committed state is read once (a BlockView: one pipelined HMGET of every
    key the farm's results read or write) and kept exact by the commit's own writes, each under
    the version it gets (INCR order: the view predicts it, the script's reply confirms
    it). So a stale tx is found and re-executed in-process with no Redis round trip, and
    a run of TXS_PER_SCRIPT txs, stale ones included, goes in one script call. The
    script still checks every read version against Redis: what the view cannot see
    (another writer; a version it predicted wrongly) ends the run at that tx, which is
    re-executed against the state read again, as before.
    """

    def __init__(self, engine: LocalEngine, client: redis.Redis, keys: Keys, height: int,
                 applied: dict[str, Applied], notes: list[str]) -> None:
        self.engine, self.client, self.keys, self.height = engine, client, keys, height
        self.applied, self.notes = applied, notes
        self.view = BlockView(client, keys)
        self.script = client.register_script(COMMIT_LUA)
        self.reexecutions: Counter[str] = Counter()
        self.forced: set[str] = set()  # txs the script found stale: re-execute them
        self.parked: dict[str, Result] = {}  # re-executed, not committed, decided next
        self.run_delta = state_root.ZERO  # what the run being decided moves the root by
        self.overwrites: dict[str, list[int]] = {}  # per tx of it: versions it overwrites
        self.replaced: dict[tuple[str, bytes], bytes | None] = {}  # slot -> value before

    def run(self, todo: list[tuple[Job, Result]]) -> None:
        """Apply `todo` in order (txs an interrupted run decided are not in it: the
        state read here already holds their writes), re-executing each stale tx."""
        self.view.prefetch(_slots(todo))
        i = 0
        while i < len(todo):
            run = self._decide(todo, i)
            if not run:  # todo[i] was decided as not committed (and dropped)
                continue
            stale = self._apply_run(run)
            if stale == 0:
                i += len(run)
            else:  # changed behind our back: re-execute it against what is there now
                i += stale - 1
                self.forced.add(todo[i][0].tx_id)
                self.parked.clear()
                self.view.prefetch(_slots(todo[i:]))

    def _decide(self, todo: list[tuple[Job, Result]], i: int) -> list[tuple[Job, Result]]:
        """The next script call's txs from todo[i]: each one current against the view
        (the farm's result, or a re-execution), its writes staged in the view."""
        run: list[tuple[Job, Result]] = []
        self.overwrites, self.replaced = {}, {}
        while i + len(run) < len(todo) and len(run) < TXS_PER_SCRIPT:
            at = i + len(run)
            job, result = todo[at]
            fresh = self.parked.pop(job.tx_id, None)
            if fresh is None and (job.tx_id in self.forced or not all(
                    self.view.current(c, reads)
                    for c, reads in result.reads_by_contract(job.contract).items())):
                self.forced.discard(job.tx_id)
                fresh = self._reexecute(job)
            if fresh is not None:
                if fresh.status in NOT_COMMITTED:
                    if run:  # decided once the txs before it are applied
                        self.parked[job.tx_id] = fresh
                        break
                    self._not_committed(job, fresh)
                    del todo[at]
                    return []
                todo[at] = (job, fresh)
                result = fresh
            run.append((job, result))
            writes = result.writes_by_contract(job.contract)
            if result.status == "ok" and writes:
                self._overwrite(writes, job.tx_id)
                self.view.seq += 1
                for contract, written in writes.items():
                    self.view.stage(contract, written, self.view.seq)
        self.run_delta = self._run_delta()
        return run

    def _overwrite(self, writes: Mapping[str, Mapping[bytes, bytes | None]],
                   tx_id: str) -> None:
        """What the tx's writes replace, as the view holds it: the version each overwrites
        (the script checks them), and for each slot the run writes first, its value then."""
        versions = []
        for contract, key, _ in _slot_items(writes):
            old = self.view.get(contract, key)
            versions.append(0 if old is None else old[1])
            self.replaced.setdefault((contract, key), None if old is None else old[0])
        self.overwrites[tx_id] = versions

    def _run_delta(self) -> int:
        """The root's move by the whole run: per slot it writes, the value before the run
        out and the value after it in (the writes between cancel: a hot key written by 50
        txs of a run costs two hashes, not a hundred)."""
        delta = state_root.ZERO
        for (contract, key), before in self.replaced.items():
            after = self.view.get(contract, key)
            delta = state_root.add(delta, state_root.change(
                contract, key, before, None if after is None else after[0]))
        return delta

    def _apply_run(self, run: Sequence[tuple[Job, Result]]) -> int:
        """One script call; the 1-based index of the first stale tx, or 0."""
        script_keys = [self.keys.state_seq, self.keys.block_applied(self.height),
                       self.keys.contracts, self.keys.root]
        moved = self.run_delta != state_root.ZERO
        args: list[Any] = [state_root.to_bytes(self.run_delta) if moved else b""]
        for job, result in run:
            args += _tx_args(self.keys, job, result, self.reexecutions[job.tx_id] > 0,
                             self.overwrites.get(job.tx_id, ()))
        reply = self.script(keys=script_keys, args=args, client=self.client)
        for (job, result), entry in zip(run, reply[1:], strict=False):
            decided = Applied.decode(bytes(entry))
            self.applied[job.tx_id] = decided
            if decided.version:  # the version its writes got (as predicted, or not)
                final = (decided.result or result).writes_by_contract(job.contract)
                for contract, written in final.items():
                    self.view.stage(contract, written, decided.version)
                self.view.seq = max(self.view.seq, decided.version)
        return int(reply[0])

    def _reexecute(self, job: Job) -> Result:
        """Re-execute `job` in-process against the view (the committed state with every
        tx before it applied)."""
        self.reexecutions[job.tx_id] += 1
        if self.reexecutions[job.tx_id] > MAX_REEXECUTIONS:
            raise CommitError(f"tx {job.tx_id} went stale {MAX_REEXECUTIONS} times in a row")
        fresh = self.engine.execute(job, self.view, self.view)
        fresh.worker = "commit"
        return fresh

    def _not_committed(self, job: Job, fresh: Result) -> None:
        """A re-execution that cannot be committed (an engine failure here): report it,
        decide it as not committed."""
        message = (fresh.error or {}).get("message", "")
        self.notes.append(f"{job.tx_id}: {fresh.status} on re-execution: {message}")
        decided = Applied.of(fresh, reexecuted=True)
        if self.client.hsetnx(self.keys.block_applied(self.height), job.tx_id,
                              decided.entry()):  # type: ignore[arg-type]
            self.applied[job.tx_id] = decided
        else:  # decided meanwhile by a commit running beside this one
            entry = self.client.hget(self.keys.block_applied(self.height), job.tx_id)
            self.applied[job.tx_id] = Applied.decode(bytes(entry))  # type: ignore[arg-type]

"""Block commit: apply a block's results in block order, re-executing stale ones.

The txs are taken in block order, in runs of up to TXS_PER_SCRIPT. Each tx of a run is
decided against the block's committed state, read once and kept up to date with the
commit's own writes (_Committer): the farm's result stands if every version it read is
still the one there, else the tx is re-executed in-process through `engine/` against
that state. Then one Lua script call (producer/commit_script.py) checks the run's
starting point against `{p}:state:{contract}` and applies the whole run atomically, each
writing tx under a new version (INCRBY `{p}:state:seq`); what the view could not see
(another writer) applies nothing, and the run is decided again on the state read again.
So the committed state is the one sequential execution gives, whatever order the farm
executed the block in.

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
from dataclasses import replace
from typing import Any

import redis

from engine.model import RESERVED_ADDRESSES, Job, Result, pack, unpack
from producer import state_root
from producer.commit_record import Applied, CommitReport
from producer.commit_script import COMMIT_LUA, DECIDED, STALE, RunArgs, Slot
from producer.committed_state import BlockView, ensure_state_root, redis_state_root
from producer.errors import refuse_reused
from producer.farm_results import FarmResults
from producer.local_engine import LocalEngine
from producer.schedule import commit_runs
from worker.protocol import RESULTS_PER_CALL, WRITE_ONCE_LUA, Keys, write_once_args

# Statuses that are consensus results: charged, and (only `ok`) their writes applied.
CHARGED = ("ok", "reverted", "out_of_fee", "trap", "invalid", "rejected")
# Not consensus results: never committed, reported.
NOT_COMMITTED = ("timeout", "error")
TXS_PER_SCRIPT = 256  # a call holds Redis a few µs per tx, as a worker's result call of as many
MAX_REEXECUTIONS = 16


class CommitError(RuntimeError):
    """A block that cannot be committed (already committed, a tx that keeps going stale)."""


def _slot_items(by_contract: Mapping[str, Mapping[bytes, Any]]) -> list[tuple[str, bytes, Any]]:
    """(contract, key, item) of every contract's set, in (contract, key) order."""
    return sorted((c, k, v) for c, items in by_contract.items() for k, v in items.items())


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
    retention: tuple[int, int] = (0, 0),
) -> CommitReport:
    """Apply `results` in the order of `jobs` (blocking; FarmClient runs it in a thread).

    A tx producer/schedule.py gives the commit (it touches a key an earlier tx declares
    it may write) and that has no result is run here, and its Result and fee record are
    written as a worker writes them (`retention`: the result TTL in seconds and the fee
    records kept, Settings.result_ttl_s / fee_stream_max). Any other tx with no result is
    reported not committed. With `resume` (a retry of a commit whose reply was lost), a
    block already committed is not an error: its report is rebuilt from what the
    commit stored."""
    started = time.perf_counter()
    _refuse_repeated(jobs)
    refuse_reused(jobs, results)  # never commit another transaction's result
    stored = client.get(keys.block(height))
    if stored is not None and not resume:
        raise CommitError(f"block {height} is already committed ({keys.block(height)})")
    applied = {bytes(tx).decode(): Applied.decode(bytes(entry)) for tx, entry in
               client.hgetall(keys.block_applied(height)).items()}  # type: ignore[union-attr]
    notes: list[str] = []
    earlier = _committed_elsewhere(client, keys, jobs, height)
    known = dict(results)  # a Result already stored for a tx the commit would run counts
    chained = commit_runs(jobs)
    # (not what the commit decided already: a resumed commit's Result stands whatever
    # another job stored under its id since, which the run's script noted and kept)
    FarmResults(client, keys, jobs, known).fetch(sorted(chained - known.keys() - applied.keys()))
    ours = chained - known.keys()
    if stored is None:
        todo = [(job, known.get(job.tx_id)) for job in jobs if job.tx_id not in applied
                and job.tx_id not in earlier and (job.tx_id in ours or (
                    job.tx_id in known and known[job.tx_id].status not in NOT_COMMITTED))]
        ensure_state_root(client, keys)  # the scripts move a root that exists
        committer = _Committer(engine, client, keys, height, applied, notes, ours, retention)
        committer.run(todo)
        committer.write_results([j.tx_id for j in jobs if j.tx_id in ours
                                 and j.tx_id in applied])  # a resumed commit's too
    report = _report(height, jobs, known, applied, earlier)
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
    final: dict[str, Result] = {}
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
        final[job.tx_id] = decided.result or results[job.tx_id]
        if decided.result is not None:
            report.packed[job.tx_id] = decided.data
        report.fee_total += decided.fee_used
        by_sender[job.context.caller] += decided.fee_used
        by_status[decided.status] += decided.fee_used
    report.results = final
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


def _refuse_repeated(jobs: Sequence[Job]) -> None:
    seen: set[str] = set()
    for job in jobs:
        if job.tx_id in seen:
            raise CommitError(f"tx id {job.tx_id!r} appears twice in the block")
        seen.add(job.tx_id)


def _write_results(client: redis.Redis, keys: Keys, decided: Sequence[Applied],
                   retention: tuple[int, int]) -> list[str]:
    """The Results (and fee records) of the txs the commit ran for the farm, written once
    as a worker writes them (worker/protocol.py's WRITE_ONCE_LUA); the tx ids under which
    another Result was stored first."""
    rows = [(a.result.tx_id, *a.result_row()) for a in decided if a.result is not None]
    script = client.register_script(WRITE_ONCE_LUA)
    taken: list[str] = []
    for i in range(0, len(rows), RESULTS_PER_CALL):
        chunk = rows[i : i + RESULTS_PER_CALL]
        replies = script(keys=[keys.fees], args=write_once_args(keys, chunk, retention))
        taken += [row[0] for row, reply in zip(chunk, replies, strict=True)
                  if reply != 1 and reply != row[1]]  # (the same bytes: stored by us)
    return taken


def _slots(todo: Sequence[tuple[Job, Result | None]]) -> list[tuple[str, bytes]]:
    """Every (contract, key) the farm's results of `todo` read or write (what a write
    replaces moves the state root), and the keys its txs declare (Job.access, writes);
    none of a reserved address (no contract's state lives there: a job naming one is
    `invalid`, and its declared keys must not be read as state)."""
    slots = [*((job.contract, key) for job, _ in todo for key in (*job.access, *job.writes)),
             *((contract, key) for job, result in todo if result is not None
               for by_contract in (result.reads_by_contract(job.contract),
                                   result.writes_by_contract(job.contract))
               for contract, keys in by_contract.items() for key in keys)]
    return [slot for slot in slots if slot[0] not in RESERVED_ADDRESSES]


class _Committer:
    """COMMIT_LUA over a block's undecided txs, TXS_PER_SCRIPT at a time; fills `applied`.

    The block's committed state is read once (a BlockView: one pipelined HMGET of every
    key the farm's results read or write) and kept exact by the commit's own writes, each
    under the version it gets (INCRBY order: the view predicts it, the script's reply
    confirms it). So a stale tx is found and re-executed in-process with no Redis round
    trip, and a run of TXS_PER_SCRIPT txs, stale ones included, goes in one script call,
    which checks the run's starting point (producer/commit_script.py). What the view
    cannot see (another writer) fails a check: nothing of the run is applied, the state
    is read again and the run decided again, its first tx touching that slot re-executed.
    """

    def __init__(self, engine: LocalEngine, client: redis.Redis, keys: Keys, height: int,
                 applied: dict[str, Applied], notes: list[str], ours: set[str],
                 retention: tuple[int, int]) -> None:
        self.engine, self.client, self.keys, self.height = engine, client, keys, height
        self.applied, self.notes = applied, notes
        self.ours, self.retention = ours, retention  # txs run here for the farm
        self.written: set[str] = set()  # of those, the ones whose Result this run wrote
        self.view = BlockView(client, keys)
        self.script = client.register_script(COMMIT_LUA)
        self.reexecutions: Counter[str] = Counter()
        self.forced: set[str] = set()  # txs a check found stale: re-execute them
        self.parked: dict[str, Result] = {}  # re-executed, not committed, decided next
        self.base = 0  # the view's version before the run being decided
        self.args = RunArgs(keys)
        self.decided: list[Applied] = []  # per tx of the run, as _stage decided it
        self.ran: list[str] = []  # the run's txs executed here
        self.replaced: dict[Slot, bytes | None] = {}  # slot -> value before the run

    def run(self, todo: list[tuple[Job, Result | None]]) -> None:
        """Apply `todo` in order (txs an interrupted run decided are not in it: the
        state read here already holds their writes), re-executing each stale tx."""
        self.view.prefetch(_slots(todo))
        i = 0
        while i < len(todo):
            run = self._decide(todo, i)
            if not run:  # todo[i] was decided as not committed (and dropped)
                continue
            if self._apply_run(run, todo, i):
                i += len(run)
            else:  # changed behind our back: decide the run again on what is there now
                self.parked.clear()
                self.view.prefetch(_slots(todo[i:]))

    def _decide(self, todo: list[tuple[Job, Result | None]], i: int) -> list[tuple[Job, Result]]:
        """The next script call's txs from todo[i]: each one current against the view
        (the farm's result, or one run here), its writes staged in the view."""
        run: list[tuple[Job, Result]] = []
        self.base, self.args, self.replaced = self.view.seq, RunArgs(self.keys), {}
        self.decided, self.ran = [], []
        while i + len(run) < len(todo) and len(run) < TXS_PER_SCRIPT:
            at = i + len(run)
            job, result = todo[at]
            fresh = self.parked.pop(job.tx_id, None)
            if fresh is None and (result is None or job.tx_id in self.forced or not all(
                    self.view.current(c, reads)
                    for c, reads in result.reads_by_contract(job.contract).items())):
                self.forced.discard(job.tx_id)
                fresh = self._reexecute(job)
                self.ran.append(job.tx_id)
            if fresh is not None:
                if fresh.status in NOT_COMMITTED:
                    if run:  # decided once the txs before it are applied
                        self.parked[job.tx_id] = fresh
                        break
                    self._not_committed(job, fresh)
                    del todo[at]
                    return []
                result = fresh  # (in `run` only: a run not applied is decided afresh)
            assert result is not None  # the farm's, or run here
            run.append((job, result))
            self._stage(job, result)
        return run

    def _stage(self, job: Job, result: Result) -> None:
        """Add the tx to the run's arguments and lay its writes over the view."""
        touches: list[tuple[Slot, int]] = [
            ((contract, key), version) for contract, reads in
            result.reads_by_contract(job.contract).items() for key, version in reads.items()]
        writes = result.writes_by_contract(job.contract) if result.status == "ok" else {}
        ordinal = 0
        if writes:
            for contract, key, _ in _slot_items(writes):
                old = self.view.get(contract, key)
                touches.append(((contract, key), 0 if old is None else old[1]))
                self.replaced.setdefault((contract, key), None if old is None else old[0])
            self.view.seq += 1
            ordinal = self.view.seq - self.base
            for contract, written in writes.items():
                self.view.stage(contract, written, self.view.seq)
        decided = Applied.of(result, self.reexecutions[job.tx_id] > 0)
        self.decided.append(decided)
        row = None  # a tx run here for the farm: the script stores its Result too
        if job.tx_id in self.ours and job.tx_id not in self.written and decided.data:
            row = decided.result_row()
        self.args.add_tx(job.tx_id, decided.decision(), ordinal, touches, row)

    def _run_delta(self) -> int:
        """The root's move by the whole run: per slot it writes, the value before the run
        out and the value after it in (the writes between cancel: a hot key written by 50
        txs of a run costs two hashes, not a hundred)."""
        return state_root.moved(
            (contract, key, before, None if (after := self.view.get(contract, key)) is None
             else after[0]) for (contract, key), before in self.replaced.items())

    def _apply_run(self, run: Sequence[tuple[Job, Result]],
                   todo: list[tuple[Job, Result | None]], i: int) -> bool:
        """One script call for `run` (= todo[i:i + len(run)]); whether it was applied.
        When not, nothing was: the tx a check names is re-executed next time, a tx
        another commit decided meanwhile takes its decision and leaves `todo`."""
        final = {slot: (None, 0) if (now := self.view.get(*slot)) is None
                 else (now[0], now[1] - self.base) for slot in self.replaced}
        self.args.finish(final)
        delta = self._run_delta()
        script_keys = [self.keys.state_seq, self.keys.block_applied(self.height),
                       self.keys.contracts, self.keys.root, self.keys.fees]
        reply = self.script(keys=script_keys, client=self.client, args=self.args.argv(
            state_root.to_bytes(delta) if delta != state_root.ZERO else b"", self.retention))
        outcome, at = int(reply[0]), int(reply[1]) - 1
        if outcome == STALE:
            self.forced.add(run[self.args.check_owner[at]][0].tx_id)
            return False
        if outcome == DECIDED:  # another commit is ahead: take all it decided, go on after it
            self.applied.update({bytes(t).decode(): Applied.decode(bytes(e)) for t, e in
                                 self.client.hgetall(self.keys.block_applied(  # type: ignore[union-attr]
                                     self.height)).items()})
            todo[i:] = [(j, r) for j, r in todo[i:] if j.tx_id not in self.applied]
            for tx_id in self.ran:  # not this tx's staleness: not counted against it
                self.reexecutions[tx_id] -= 1
            return False
        base = int(reply[1])
        for n, ((job, _), decided) in enumerate(zip(run, self.decided, strict=True)):
            ordinal = self.args.ordinal(n)
            self.applied[job.tx_id] = replace(decided, version=base + ordinal if ordinal else 0)
            if self.args.stores(n):
                self.written.add(job.tx_id)
        self._taken([run[int(n) - 1][0].tx_id for n in reply[2:]])
        if base != self.base:  # another writer took versions: the view takes the real ones
            for (contract, key), (value, ordinal) in final.items():
                self.view.stage(contract, {key: value}, base + ordinal)
            self.view.seq = base + self.args.writers
        return True

    def write_results(self, tx_ids: Sequence[str]) -> None:
        """The Results of those of `tx_ids` (txs run here for the farm) not written yet."""
        todo = [t for t in tx_ids if t not in self.written]
        taken = _write_results(self.client, self.keys, [self.applied[t] for t in todo],
                               self.retention)
        self.written.update(todo)
        self._taken(taken)

    def _taken(self, tx_ids: Sequence[str]) -> None:
        self.notes += [f"{t}: another Result was stored under this tx id first; the "
                       "block record holds the committed one" for t in tx_ids]

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

"""The commit's inner loop: a block's undecided txs decided and applied, a run of up to
TXS_PER_SCRIPT at a time, each run one COMMIT_LUA call (producer/commit_script.py).

The block's committed state is read once (a BlockView: one pipelined HMGET of every key
the farm's results read or write) and kept exact by the commit's own writes, each under
the version it gets (INCRBY order: the view predicts it, the script's reply confirms it).
So a stale tx is found and re-executed in-process with no Redis round trip, and a run,
stale txs included, goes in one script call, which checks the run's starting point.
What the view cannot see (another writer) fails a check: nothing of the run is applied,
the state is read again and the run decided again, its first tx touching that slot
re-executed.

While a run's script call is on its way (on a thread of its own: redis-py waits for the
reply without the GIL), the next run is decided on the view as that call will leave it.
The call's reply confirms the guess, or the guess is dropped, nothing of it sent, and
the next run is decided again on the state as it is (docs/HOT_PATH.md has what the
overlap saves).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import redis

from engine.model import RESERVED_ADDRESSES, Job, Result
from producer import state_root
from producer.commit_record import NOT_COMMITTED, Applied
from producer.commit_script import COMMIT_LUA, DECIDED, STALE, RunArgs, Slot
from producer.committed_state import BlockView
from producer.errors import CommitError
from producer.local_engine import LocalEngine
from worker.protocol import (
    RESULTS_PER_CALL,
    WRITE_PART_LUA,
    Keys,
    PartArgs,
    stored_results_sync,
)

TXS_PER_SCRIPT = 256  # a call holds Redis a few µs per tx, as a worker's result call of as many
MAX_REEXECUTIONS = 16
Todo = list[tuple[Job, Result | None]]


@dataclass(slots=True)
class DecidedRun:
    """One script call's txs as decided against the view, and what applying them needs."""

    start: int  # its first tx's index in the todo list
    base: int  # the view's version before it
    args: RunArgs
    txs: list[tuple[Job, Result]] = field(default_factory=list)
    decided: list[Applied] = field(default_factory=list)  # per tx, as _stage decided it
    ran: list[str] = field(default_factory=list)  # its txs executed here
    forced: list[str] = field(default_factory=list)  # the forced txs it re-executed
    replaced: dict[Slot, bytes | None] = field(default_factory=dict)  # value before it

    @property
    def end(self) -> int:
        return self.start + len(self.txs)


class Settled(Enum):
    AS_DECIDED = 0  # applied under the versions the view gave it
    REBASED = 1  # applied, but another writer took versions first
    NOT_APPLIED = 2


class Committer:
    """COMMIT_LUA over a block's undecided txs; fills `applied` (tx id -> Applied)."""

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

    def run(self, todo: Todo) -> None:
        """Apply `todo` in order (txs an interrupted run decided are not in it: the
        state read here already holds their writes), re-executing each stale tx."""
        self.view.prefetch(_slots(todo))
        with ThreadPoolExecutor(1, "commit-script") as calls:  # waits for a call in flight
            pending: tuple[DecidedRun, Future[Any]] | None = None
            at = 0
            while at < len(todo) or pending is not None:
                if pending is None:
                    first = self._decide(todo, at, guess=False)
                    if first is None:  # todo[at] was decided as not committed (and dropped)
                        continue
                    pending = first, calls.submit(self._call, self._arguments(first))
                run, reply = pending
                guess = self._decide(todo, run.end, guess=True) if run.end < len(todo) else None
                settled = self._settle(run, reply.result(), todo)
                at = run.end if settled is not Settled.NOT_APPLIED else run.start
                if settled is Settled.AS_DECIDED:
                    pending = None if guess is None or not guess.txs else (
                        guess, calls.submit(self._call, self._arguments(guess)))
                    continue
                pending = None
                if guess is not None:
                    self._drop(guess)
                self.parked.clear()  # decide again on what is there now
                self.view.prefetch(_slots(todo[at:]))

    def _decide(self, todo: Todo, i: int, guess: bool) -> DecidedRun | None:
        """The next script call's txs from todo[i]: each one current against the view
        (the farm's result, or one run here), its writes staged in the view. A `guess`
        (decided while the run before it is on its way) leaves a tx re-executed as not
        committed to be decided after that run, and is returned even with no tx (what it
        re-executed is given back if it is dropped). Otherwise None: todo[i] was decided
        as not committed, and dropped."""
        run = DecidedRun(i, self.view.seq, RunArgs(self.keys))
        while run.end < len(todo) and len(run.txs) < TXS_PER_SCRIPT:
            job, result = todo[run.end]
            fresh = self.parked.pop(job.tx_id, None)
            if fresh is None and (result is None or job.tx_id in self.forced or not all(
                    self.view.current(c, reads)
                    for c, reads in result.reads_by_contract(job.contract).items())):
                if job.tx_id in self.forced:
                    self.forced.discard(job.tx_id)
                    run.forced.append(job.tx_id)
                fresh = self._reexecute(job)
                run.ran.append(job.tx_id)
            if fresh is not None:
                if fresh.status in NOT_COMMITTED:
                    if run.txs or guess:  # decided once the txs before it are applied
                        self.parked[job.tx_id] = fresh
                        break
                    self._not_committed(job, fresh)
                    del todo[run.end]
                    return None
                result = fresh  # (in `run` only: a run not applied is decided afresh)
            assert result is not None  # the farm's, or run here
            run.txs.append((job, result))
            self._stage(run, job, result, reexecuted=fresh is not None)
        return run

    def _stage(self, run: DecidedRun, job: Job, result: Result, reexecuted: bool) -> None:
        """Add the tx to the run's arguments and lay its writes over the view; `result`
        is the farm's, or (`reexecuted`) the one run here for this decision."""
        touches: list[tuple[Slot, int]] = [
            ((contract, key), version) for contract, reads in
            result.reads_by_contract(job.contract).items() for key, version in reads.items()]
        writes = result.writes_by_contract(job.contract) if result.status == "ok" else {}
        ordinal = 0
        if writes:
            for contract, key, _ in sorted((c, k, v) for c, items in writes.items()
                                           for k, v in items.items()):
                old = self.view.get(contract, key)
                touches.append(((contract, key), 0 if old is None else old[1]))
                run.replaced.setdefault((contract, key), None if old is None else old[0])
            self.view.seq += 1
            ordinal = self.view.seq - run.base
            for contract, written in writes.items():
                self.view.stage(contract, written, self.view.seq)
        decided = Applied.of(result, reexecuted)
        run.decided.append(decided)
        row = None  # a tx run here for the farm: the script stores its Result too
        if job.tx_id in self.ours and job.tx_id not in self.written and decided.data:
            row = decided.result_row()
        run.args.add_tx(job.tx_id, decided.decision(), ordinal, touches, row)

    def _arguments(self, run: DecidedRun) -> list[Any]:
        """The run's script arguments, from the view as the run leaves it (so before the
        next run is staged over it)."""
        final = {slot: (None, 0) if (now := self.view.get(*slot)) is None
                 else (now[0], now[1] - run.base) for slot in run.replaced}
        run.args.finish(final)
        # The root's move by the whole run: per slot it writes, the value before the run
        # out and the one after it in (a hot key written by 50 txs costs two hashes).
        delta = state_root.moved((contract, key, before, final[(contract, key)][0])
                                 for (contract, key), before in run.replaced.items())
        return run.args.argv(state_root.to_bytes(delta) if delta != state_root.ZERO else b"",
                             self.retention)

    def _call(self, argv: list[Any]) -> Any:
        script_keys = [self.keys.state_seq, self.keys.block_applied(self.height),
                       self.keys.contracts, self.keys.root]
        return self.script(keys=script_keys, client=self.client, args=argv)

    def _settle(self, run: DecidedRun, reply: Any, todo: Todo) -> Settled:
        """Take the run's reply. When not applied, nothing was: the tx a check names is
        re-executed next time, a tx another commit decided meanwhile takes its decision
        and leaves `todo`."""
        outcome, at = int(reply[0]), int(reply[1]) - 1
        if outcome == STALE:
            self.forced.add(run.txs[run.args.check_owner[at]][0].tx_id)
            return Settled.NOT_APPLIED
        if outcome == DECIDED:  # another commit is ahead: take all it decided, go on after it
            self.applied.update({bytes(t).decode(): Applied.decode(bytes(e)) for t, e in
                                 self.client.hgetall(self.keys.block_applied(  # type: ignore[union-attr]
                                     self.height)).items()})
            todo[run.start:] = [(j, r) for j, r in todo[run.start:] if j.tx_id not in self.applied]
            self._uncount(run.ran)  # not this tx's staleness: not counted against it
            return Settled.NOT_APPLIED
        base = int(reply[1])
        for n, ((job, _), decided) in enumerate(zip(run.txs, run.decided, strict=True)):
            ordinal = run.args.ordinal(n)
            self.applied[job.tx_id] = decided.at(base + ordinal if ordinal else 0)
            if run.args.stores(n):
                self.written.add(job.tx_id)
        self._taken([run.txs[run.args.owner(int(n))][0].tx_id for n in reply[2:]])
        if base == run.base:
            return Settled.AS_DECIDED
        return Settled.REBASED  # another writer took versions: read the real ones back

    def _drop(self, run: DecidedRun) -> None:
        """Forget a run decided but never sent (its staging goes with the view's next
        read): it counts against none of its txs."""
        self._uncount(run.ran)
        self.forced.update(run.forced)

    def _uncount(self, tx_ids: Sequence[str]) -> None:
        for tx_id in tx_ids:
            self.reexecutions[tx_id] -= 1

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


def _write_results(client: redis.Redis, keys: Keys, decided: Sequence[Applied],
                   retention: tuple[int, int]) -> list[str]:
    """The Results (and fee records) of the txs the commit ran for the farm, written once
    as a worker writes them (worker/protocol.py's WRITE_PART_LUA); the tx ids under which
    another Result was stored first."""
    rows = [(a.result.tx_id, *a.result_row()) for a in decided if a.result is not None]
    script = client.register_script(WRITE_PART_LUA)
    taken: list[str] = []
    for i in range(0, len(rows), RESULTS_PER_CALL):
        chunk = rows[i : i + RESULTS_PER_CALL]
        part = PartArgs.of(chunk)
        replies = script(args=part.argv(keys.prefix, retention))
        elsewhere = {row[0]: row[1] for row, reply in zip(chunk, replies, strict=True)
                     if reply is not None and bytes(reply).decode() != part.part_id}
        if elsewhere:
            stored = stored_results_sync(client, keys.prefix, retention[0], elsewhere).results
            taken += [t for t, data in elsewhere.items()
                      if stored.get(t) != data]  # (the same bytes: stored by us before)
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

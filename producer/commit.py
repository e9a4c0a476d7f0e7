"""Block commit: apply a block's results in block order, re-executing stale ones.

The txs are taken in block order, in runs of up to TXS_PER_SCRIPT (producer/committer.py).
Each tx of a run is decided against the block's committed state, read once and kept up
to date with the commit's own writes (Committer): the farm's result stands if every
version it read is still the one there, else the tx is re-executed in-process through
`engine/` against that state. Then one Lua script call (producer/commit_script.py) checks the run's
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

import redis

from engine.model import Job, Result, pack, unpack
from producer.commit_record import NOT_COMMITTED, Applied, CommitReport
from producer.committed_state import ensure_state_root, redis_state_root
from producer.committer import Committer
from producer.errors import CommitError, refuse_reused
from producer.farm_results import FarmResults
from producer.local_engine import LocalEngine
from producer.schedule import commit_runs
from worker.protocol import Keys

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
    FarmResults(client, keys, jobs, known, retention[0]).fetch(
        sorted(chained - known.keys() - applied.keys()))
    ours = chained - known.keys()
    if stored is None:
        todo = [(job, known.get(job.tx_id)) for job in jobs if job.tx_id not in applied
                and job.tx_id not in earlier and (job.tx_id in ours or (
                    job.tx_id in known and known[job.tx_id].status not in NOT_COMMITTED))]
        ensure_state_root(client, keys)  # the scripts move a root that exists
        committer = Committer(engine, client, keys, height, applied, notes, ours, retention)
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

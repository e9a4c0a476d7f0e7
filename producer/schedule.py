"""Which txs of a block the farm runs, and which the commit runs, from what they declare.

A tx that touches (`Job.access` or `Job.writes`) a key an earlier tx of its block
declares it may write (`Job.writes`) would read, on the farm, the state from before
that write: its result would be stale at the commit and run again there, one after
another. So it is not sent to the farm; the commit runs it in block order, where its
reads are exact (Solana's scheduler orders txs by their declared writable accounts the
same way). Everything else goes to the farm, unless that is only a handful of txs. A
block that declares nothing goes to the farm whole. Declarations are hints: a tx that
reads more than it declared is still caught by the commit's version check and run again.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.model import Job

# Fewer txs than this left for the farm, and the commit runs them too: a part's fixed cost
# (enqueue, claim, dispatch, result, the producer's wait) is more than running them here.
FARM_MIN_TXS = 8


def commit_runs(jobs: Sequence[Job]) -> set[str]:
    """The tx ids of `jobs` (a block, in order) that the commit runs rather than the farm:
    those touching a key an earlier one declares it may write -- and all of them when
    that leaves the farm fewer than FARM_MIN_TXS."""
    written: set[tuple[str, bytes]] = set()
    chained: set[str] = set()
    for job in jobs:
        touched = {(job.contract, key) for key in (*job.access, *job.writes)}
        if not touched.isdisjoint(written):
            chained.add(job.tx_id)
        written.update((job.contract, key) for key in job.writes)
    if chained and len(jobs) - len(chained) < FARM_MIN_TXS:
        return {job.tx_id for job in jobs}
    return chained


def farm_jobs(jobs: Sequence[Job]) -> list[Job]:
    """The block's txs the farm runs, in order."""
    chained = commit_runs(jobs)
    return [job for job in jobs if job.tx_id not in chained]

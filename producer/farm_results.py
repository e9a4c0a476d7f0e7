"""Results already stored for txs a commit would run itself (producer/schedule.py): by
tx id, from Redis. Whatever ran a tx first, its stored Result is the one that counts."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from engine.model import Job, Result
from producer.errors import refuse_reused
from worker.protocol import Keys, stored_results_sync


class FarmResults:
    """Reads results into `known` (tx id -> Result), one look-up per call; a result of
    another transaction under one of the block's tx ids is refused (TxIdReused)."""

    def __init__(self, client: redis.Redis, keys: Keys, jobs: Sequence[Job],
                 known: dict[str, Result], ttl_s: int) -> None:
        """`ttl_s`: the farm's result ttl (where its index is)."""
        self.client, self.keys, self.known, self.ttl_s = client, keys, known, ttl_s
        self.jobs = {job.tx_id: job for job in jobs}

    def fetch(self, tx_ids: Sequence[str]) -> None:
        """Add the stored Results of `tx_ids` (those that have one) to `known`."""
        if not tx_ids:
            return
        stored = stored_results_sync(self.client, self.keys.prefix, self.ttl_s, tx_ids).results
        found = {t: Result.from_stored(t, raw) for t, raw in stored.items()}
        refuse_reused([self.jobs[t] for t in found], found)
        self.known.update(found)

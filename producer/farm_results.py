"""Results already stored for txs a commit would run itself (producer/schedule.py): by
tx id, from Redis. Whatever ran a tx first, its stored Result is the one that counts."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from engine.model import Job, Result
from producer.errors import refuse_reused
from worker.protocol import Keys


class FarmResults:
    """Reads results into `known` (tx id -> Result), one MGET per call; a result of
    another transaction under one of the block's tx ids is refused (TxIdReused)."""

    def __init__(self, client: redis.Redis, keys: Keys, jobs: Sequence[Job],
                 known: dict[str, Result]) -> None:
        self.client, self.keys, self.known = client, keys, known
        self.jobs = {job.tx_id: job for job in jobs}

    def fetch(self, tx_ids: Sequence[str]) -> None:
        """Add the stored Results of `tx_ids` (those that have one) to `known`."""
        if not tx_ids:
            return
        raws = self.client.mget([self.keys.result(t) for t in tx_ids])
        found = {t: Result.from_stored(t, raw) for t, raw in  # type: ignore[arg-type]
                 zip(tx_ids, raws, strict=True) if raw is not None}  # type: ignore[arg-type]
        refuse_reused([self.jobs[t] for t in found], found)
        self.known.update(found)

"""Write each Result exactly once per tx id, with its fee report, a part per script call
(worker/protocol.py's WRITE_PART_LUA): a redelivered tx gets the first result back and is
never charged twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from worker.packed import PackedResult
from worker.protocol import (
    RESULTS_PER_CALL,
    WRITE_PART_LUA,
    Keys,
    PartArgs,
    stored_results,
)

# One script call per RESULTS_PER_CALL results. Calls go as EVALSHAs, not in a pipeline:
# redis-py checks a pipeline's scripts with SCRIPT EXISTS first.
Queued = tuple[Sequence[PackedResult], "asyncio.Future[list[Written]]"]


@dataclass(frozen=True, slots=True)
class Written:
    """The stored result (ours or the first one) and whether this call stored it."""

    result: PackedResult
    created: bool


class ResultWriter:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: int, fees_kept: int) -> None:
        """`ttl_s`: how long a result stays (0: forever; the farm's, which its readers
        share: it places the index); `fees_kept`: fee records the stream keeps, at least
        (0: all)."""
        self.redis = redis
        self.keys = keys
        self.retention = (ttl_s, fees_kept)
        self.script = redis.register_script(WRITE_PART_LUA)
        self._queued: list[Queued] = []
        self._flushing: set[asyncio.Task[None]] = set()

    async def existing(self, tx_ids: Sequence[str | None]) -> list[PackedResult | None]:
        """Stored results for these tx ids (None where absent or no id)."""
        wanted = [t for t in tx_ids if t]
        if not wanted:
            return [None] * len(tx_ids)
        found = (await stored_results(self.redis, self.keys.prefix, self.retention[0],
                                      wanted)).results
        return [PackedResult.from_bytes(found[t], t) if t and t in found else None
                for t in tx_ids]

    async def write(self, results: Sequence[PackedResult]) -> list[Written]:
        """Write results (each must carry a non-empty tx_id), a script call per chunk, one
        after another: the fee stream then lists them in the order given.

        Writes asked for in the same event-loop turn (the single-tx jobs one executor
        reply answers) go out together, in the order asked."""
        if not results:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Written]] = loop.create_future()
        self._queued.append((results, future))
        if len(self._queued) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._write_queued(queued))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _write_queued(self, queued: list[Queued]) -> None:
        try:
            written = await self._write_now([r for results, _ in queued for r in results])
        except Exception as exc:  # each writer sees it (a Redis failure: the job retries)
            for _, future in queued:
                if not future.done():
                    future.set_exception(exc)
            return
        at = 0
        for results, future in queued:
            if not future.done():
                future.set_result(written[at : at + len(results)])
            at += len(results)

    async def _write_now(self, results: Sequence[PackedResult]) -> list[Written]:
        written: list[Written] = []
        for i in range(0, len(results), RESULTS_PER_CALL):
            written += await self._write_part(results[i : i + RESULTS_PER_CALL])
        return written

    async def _write_part(self, chunk: Sequence[PackedResult]) -> list[Written]:
        part = PartArgs.of((r.tx_id, r.data, r.fee, r.status) for r in chunk)
        replies: list[Any] = await self.script(args=part.argv(self.keys.prefix, self.retention))
        first: dict[str, PackedResult] = {}  # a tx id twice: its first row was stored
        for result in chunk:
            first.setdefault(result.tx_id, result)
        elsewhere = [r.tx_id for r, part_id in zip(chunk, replies, strict=True)
                     if part_id is not None and part_id.decode() != part.part_id]
        stored = (await stored_results(self.redis, self.keys.prefix, self.retention[0],
                                       elsewhere)).results if elsewhere else {}
        written: list[Written] = []
        for result, part_id in zip(chunk, replies, strict=True):
            if part_id is None:
                written.append(Written(result, True))
            elif part_id.decode() == part.part_id:
                written.append(Written(first[result.tx_id], False))
            else:
                written.append(Written(PackedResult.from_bytes(
                    stored.get(result.tx_id, b""), result.tx_id), False))
        return written

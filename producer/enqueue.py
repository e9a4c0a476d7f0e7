"""Pipelined enqueue in arq 0.28's own job format (arq has no batch enqueue), and the
size of a block's parts.

`ArqRedis.enqueue_job` does, per job: WATCH its job key; skip if the job or result key
exists; MULTI; PSETEX the job key; ZADD the queue; EXEC. worker/protocol.py's
ENQUEUE_LUA does exactly those steps for many jobs in one atomic call, and several calls
go in one pipeline: the same keys, values and scores, so the arq worker cannot tell the
difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from arq.constants import expires_extra_ms
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from config import Settings
from worker.protocol import ENQUEUE_LUA, FARM_LUA, Keys, arq_job_keys, job_bytes


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


JOBS_PER_SCRIPT = 128
SCRIPTS_PER_PIPELINE = 32
MIN_PART_TXS = 8  # below it a part's fixed cost (an arq job, ~0.6 ms) outweighs spreading


@dataclass(frozen=True, slots=True)
class FarmSize:
    """The farm as its workers last advertised it (worker/claim.py)."""

    workers: int
    executors: int


async def farm_size(redis: Redis, keys: Keys) -> FarmSize:
    workers, executors = await redis.eval(  # type: ignore[misc]
        FARM_LUA, 3, keys.workers, keys.worker_executors, keys.worker_versions)
    return FarmSize(int(workers), int(executors))


def part_size(txs: int, executors: int, settings: Settings) -> int:
    """Txs per part of a block: about `parts_per_executor` parts for every live executor
    (a slow executor then holds up a small share of the block), at most `batch_size`.
    With no executor advertised (no worker yet), `batch_size`."""
    if executors <= 0:
        return settings.batch_size
    parts = executors * settings.parts_per_executor
    return min(settings.batch_size, max(MIN_PART_TXS, -(-txs // parts)))


@dataclass(frozen=True, slots=True)
class ArqJob:
    job_id: str
    function: str
    args: tuple[Any, ...]


class PipelinedEnqueuer:
    """Enqueue many arq jobs at once; returns, per job, whether it was new."""

    def __init__(self, redis: Redis, queue_name: str, keys: Keys) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.keys = keys
        self.script = redis.register_script(ENQUEUE_LUA)

    async def enqueue(self, jobs: Sequence[ArqJob]) -> list[int]:
        """Per job: protocol.ENQUEUED, QUEUED (already waiting or running) or FINISHED."""
        if not jobs:
            return []
        # Make sure the script is cached: EVALSHA inside a pipeline cannot fall back.
        await self.redis.script_load(ENQUEUE_LUA)
        flags: list[int] = []
        per_pipeline = JOBS_PER_SCRIPT * SCRIPTS_PER_PIPELINE
        for start in range(0, len(jobs), per_pipeline):
            group = jobs[start : start + per_pipeline]
            now_ms = timestamp_ms()
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in range(0, len(group), JOBS_PER_SCRIPT):
                    chunk = group[i : i + JOBS_PER_SCRIPT]
                    keys: list[str] = [self.queue_name]
                    argv: list[Any] = [expires_extra_ms, now_ms]
                    for job in chunk:
                        keys += arq_job_keys(self.keys, job.job_id)
                        argv += [job.job_id, job_bytes(job.function, job.args, now_ms)]
                    pipe.evalsha(self.script.sha, len(keys), *keys, *argv)
                replies = await pipe.execute()
            for reply in replies:
                flags.extend(int(x) for x in reply)
        return flags

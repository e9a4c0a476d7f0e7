"""Single-tx jobs waiting for an executor, sent to it together.

Under load a worker holds many single-tx arq jobs at once (`max_jobs`) while its
executors are busy. Instead of one executor request per job, the jobs waiting when an
executor frees up go to it as one request: one pipe round trip and one state check
serve them all (and the jobs' result writes meet in one script call,
worker/results.py). With an executor idle a job goes at once, alone.

Each job keeps its own deadline: a request takes only as many jobs as their timeouts
fit before the earliest deadline among them, so the request's hard limit never cuts
a job short that would have run alone; a job no executor takes by its deadline ends
as `timeout`. A job cancelled while it waits is dropped; one cancelled while its
request runs gets no result from it (as when its own request is abandoned).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.outcomes import timeout_ms_of
from worker.packed import Outcome
from worker.process import ExecutorDied

if TYPE_CHECKING:
    from worker.executors import ExecutorPool
    from worker.process import ExecutorProcess

NO_EXECUTOR = "no executor became free before the job's deadline"
MAX_PER_REQUEST = 32


@dataclass(eq=False, slots=True)
class _Waiting:
    job: Any
    tx_id: str | None
    deadline: float | None
    future: asyncio.Future[Outcome]


class TxQueue:
    def __init__(self, pool: ExecutorPool) -> None:
        self.pool = pool
        self.waiting: deque[_Waiting] = deque()
        self._dispatcher: asyncio.Task[None] | None = None

    async def run(self, job: Any, tx_id: str | None, deadline: float | None) -> Outcome:
        """The job's outcome, from a request it may share with other waiting jobs."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self.waiting.append(_Waiting(job, tx_id, deadline, future))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = loop.create_task(self._dispatch())
        return await future

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            self._expire(loop.time())
            if not self.waiting:
                return
            deadlines = [w.deadline for w in self.waiting if w.deadline is not None]
            try:
                async with asyncio.timeout_at(min(deadlines) if deadlines else None):
                    ex = await self.pool.acquire()
            except TimeoutError:
                continue  # the next turn ends the jobs whose deadline passed
            taken = self._take(loop.time())
            if taken:
                self.pool.spawn_task(self._send(ex, taken))
            else:
                self.pool.release(ex)

    def _expire(self, now: float) -> None:
        still: deque[_Waiting] = deque()
        for w in self.waiting:
            if w.future.done():
                continue  # cancelled while waiting
            if w.deadline is not None and w.deadline <= now:
                w.future.set_result(self.pool.failed([w.job], [w.tx_id], "timeout",
                                                     "no_executor", NO_EXECUTOR))
            else:
                still.append(w)
        self.waiting = still

    def _take(self, now: float) -> list[_Waiting]:
        """A fair share of the waiting jobs (the other idle executors get theirs next),
        as many as fit their earliest deadline."""
        share = min(MAX_PER_REQUEST,
                    math.ceil(len(self.waiting) / (1 + self.pool.idle.qsize())))
        settings = self.pool.settings
        taken: list[_Waiting] = []
        total_s = settings.executor_grace_ms / 1000
        earliest: float | None = None
        while self.waiting and len(taken) < share:
            w = self.waiting[0]
            if w.future.done():
                self.waiting.popleft()
                continue
            need = timeout_ms_of(w.job, settings.default_timeout_ms,
                                 settings.limits.max_timeout_ms) / 1000
            first = min((d for d in (earliest, w.deadline) if d is not None), default=None)
            if taken and first is not None and now + total_s + need > first:
                break
            self.waiting.popleft()
            taken.append(w)
            total_s += need
            earliest = first
        return taken

    async def _send(self, ex: ExecutorProcess, taken: list[_Waiting]) -> None:
        deadlines = [w.deadline for w in taken if w.deadline is not None]
        try:
            outcome = await self.pool.run_on(ex, [w.job for w in taken],
                                             [w.tx_id for w in taken],
                                             min(deadlines) if deadlines else None)
        except BaseException as exc:
            for w in taken:
                if not w.future.done():
                    w.future.set_exception(ExecutorDied(f"executor request failed: {exc!r}"))
            raise
        for i, w in enumerate(taken):
            if not w.future.done():
                w.future.set_result(outcome.part(i))

    def close(self) -> None:
        """The worker is shutting down: nothing more is sent."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        for w in self.waiting:
            if not w.future.done():
                w.future.set_exception(ExecutorDied("the worker is shutting down"))
        self.waiting.clear()

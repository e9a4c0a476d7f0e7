"""The parent side of the executors: an asyncio pool of N long-lived subprocesses
(worker/executor_process.py drives one; worker/executor_main.py is the child).

Hard limits, per tx: each tx of a request gets its wall-clock timeout plus
`executor_grace_ms` from when the executor starts it (worker/progress.py; plus a compile
allowance, see executor_process.py), all capped by the caller's deadline. Wasm cannot
overrun its own timeout (epochs stop it), so an executor past a hard limit is stuck
outside wasm (on a stalled Redis, say): it is SIGKILLed and respawned, and its txs run
again, not ending `timeout`. If it dies, its txs get `error` naming the exit signal (a
multi-tx chunk is first re-run one tx at a time, so only the tx that kills an executor
ends in `error`). Neither is charged. The worker itself never goes down because of a job.

Single-tx jobs waiting for an executor go to it together: under load a worker holds
many single-tx arq jobs at once while its executors are busy, and the jobs waiting when
an executor frees up go to it as one request (one pipe round trip and one state check
for all; their result writes meet in one script call, worker/results.py). With an
executor idle a job goes at once, alone. Each job keeps its own deadline: a request
takes only as many jobs as their timeouts fit before the earliest deadline among them,
and a job no executor takes by its deadline gets `timeout`, marked to run again (it never
ran: a Redis stall or a backlog, not a verdict). A job cancelled while it waits is
dropped; one cancelled while its request runs gets no result from it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from config import Settings
from worker.executor_process import ExecutorDied, ExecutorProcess, ExecutorTimeout
from worker.metrics import FarmMetrics
from worker.outcomes import failure, timeout_ms_of, tx_id_of
from worker.packed import MalformedRow, Outcome, PackedResult

__all__ = ["ExecutorDied", "ExecutorPool", "ExecutorProcess", "ExecutorTimeout", "Outcome"]

log = logging.getLogger("wesfarm.executors")

# A job's txs go to one executor unless each part would get MIN_CHUNK of them: an
# executor request has a fixed cost, and concurrent jobs keep the executors busy anyway.
MIN_CHUNK, MAX_CHUNK = 64, 256
NO_EXECUTOR = "no executor became free before the job's deadline"
MAX_SINGLES_PER_REQUEST = 32


@dataclass(eq=False, slots=True)
class _Waiting:
    """A single-tx job waiting for an executor."""

    job: Any
    tx_id: str | None
    deadline: float | None
    future: asyncio.Future[Outcome]


class ExecutorPool:
    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        size: int | None = None,
        metrics: FarmMetrics | None = None,
        worker_name: str = "",
    ) -> None:
        self.settings = settings
        self.metrics = metrics or FarmMetrics()
        self.worker_name = worker_name
        self.schedule = settings.fees.version
        self.init = {
            "op": "init",
            "settings": settings.model_dump(mode="json"),
            "redis_url": redis_url,
            "worker": worker_name,
        }
        self.executors = [
            ExecutorProcess(i, self._on_lost) for i in range(size or settings.executors)
        ]
        # LIFO: the executor that just answered is hot (caches, scheduler); others may sleep.
        self.idle: asyncio.LifoQueue[tuple[ExecutorProcess, int]] = asyncio.LifoQueue()
        self.closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.waiting: deque[_Waiting] = deque()
        self._dispatcher: asyncio.Task[None] | None = None

    def pids(self) -> list[int]:
        return [ex.pid for ex in self.executors if ex.alive and ex.pid is not None]

    def live(self) -> int:
        """Executors running now (not dead, not restarting)."""
        return sum(ex.alive for ex in self.executors)

    async def start(self) -> None:
        """Start every executor; fail only if none starts (the rest keep retrying)."""
        outcomes = await asyncio.gather(
            *(ex.start(self.init) for ex in self.executors), return_exceptions=True
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if len(errors) == len(self.executors):
            await self.close()
            raise RuntimeError(f"no executor started: {errors[0]}") from errors[0]
        for ex, outcome in zip(self.executors, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("executor %d failed to start: %s", ex.index, outcome)
                self.spawn_task(self._respawn(ex, "start_failed"))
            else:
                self._ready(ex)

    def _ready(self, ex: ExecutorProcess) -> None:
        self.metrics.executors.inc()
        self.idle.put_nowait((ex, ex.generation))

    def spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_lost(self, ex: ExecutorProcess) -> None:
        self.metrics.executors.dec()
        if not self.closing:
            self.spawn_task(self._respawn(ex, ex.lost_reason))

    async def _respawn(self, ex: ExecutorProcess, reason: str) -> None:
        how = await ex.reap()
        if not self.closing:
            log.warning("executor %d (pid %s) %s; restarting", ex.index, ex.pid, how)
        delay = 0.1
        while not self.closing:
            try:
                await ex.start(self.init)
            except Exception as exc:
                log.error("executor %d restart failed: %s", ex.index, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self.closing:
                ex.kill()
                return
            self.metrics.restarts.labels(reason=reason).inc()
            self._ready(ex)
            return

    async def acquire(self) -> ExecutorProcess:
        """The next idle executor (the one that answered last first)."""
        while True:
            ex, generation = await self.idle.get()
            if ex.alive and ex.generation == generation:
                return ex

    def release(self, ex: ExecutorProcess) -> None:
        if ex.alive:
            self.idle.put_nowait((ex, ex.generation))

    async def call(self, message: dict[str, Any], budget_s: float) -> dict[str, Any]:
        """Run one op on an idle executor (ping, metrics, test hooks). Hard limits apply."""
        ex = await self.acquire()
        try:
            reply = await ex.request(message, budget_s)
        except ExecutorTimeout:
            self.metrics.timeouts.inc()
            ex.kill("timeout")
            raise
        except asyncio.CancelledError:
            ex.kill("cancelled")
            raise
        self.release(ex)
        return reply

    def tx_limits_s(self, jobs: list[Any]) -> list[float]:
        """Each job's hard limit: its wall-clock timeout plus the grace."""
        s = self.settings
        return [(timeout_ms_of(j, s.default_timeout_ms, s.limits.max_timeout_ms)
                 + s.executor_grace_ms) / 1000 for j in jobs]

    async def execute(self, jobs: list[Any], deadline: float | None = None,
                      ids: list[str | None] | None = None) -> Outcome:
        """Run jobs (raw maps) over the idle executors; results in job order, each
        under `ids[i]` when given (else the job map's own tx id).

        `deadline` (event-loop time) caps every wait and hard limit, so the caller
        (an arq job with its own timeout) always gets results: txs that could not
        finish by then end as `timeout`.
        """
        if not jobs:
            return Outcome([], [])
        n = len(jobs)
        keys = ids if ids is not None else [tx_id_of(j) for j in jobs]
        if n == 1:  # a single-tx job may share a request with others
            return await self._run_single(jobs[0], keys[0], deadline)
        parts = max(1, min(len(self.executors), math.ceil(n / MIN_CHUNK)), math.ceil(n / MAX_CHUNK))
        size = math.ceil(n / parts)
        if size >= n:
            return await self._execute_chunk(jobs, keys, deadline)
        outcomes = await asyncio.gather(*(
            self._execute_chunk(jobs[i : i + size], keys[i : i + size], deadline)
            for i in range(0, n, size)
        ))
        return Outcome(
            [r for o in outcomes for r in o.results], [f for o in outcomes for f in o.retry]
        )

    async def _execute_chunk(self, jobs: list[Any], ids: list[str | None],
                             deadline: float | None = None) -> Outcome:
        try:
            async with asyncio.timeout_at(deadline):
                ex = await self.acquire()
        except TimeoutError:
            return self.failed(jobs, ids, "timeout", "no_executor", NO_EXECUTOR, retry=True)
        return await self.run_on(ex, jobs, ids, deadline)

    async def run_on(self, ex: ExecutorProcess, jobs: list[Any], ids: list[str | None],
                     deadline: float | None) -> Outcome:
        """One request on an acquired executor (released after, unless it is killed)."""
        loop = asyncio.get_running_loop()
        limits = self.tx_limits_s(jobs)
        budget = sum(limits)
        if deadline is not None:
            budget = max(0.0, min(budget, deadline - loop.time()))
        started = loop.time()
        self.metrics.inflight.inc(len(jobs))
        try:
            reply = await ex.request({"op": "execute", "jobs": jobs, "ids": ids}, budget, limits)
        except ExecutorTimeout as exc:
            # Wasm cannot overrun its own deadline (epochs stop it), so an executor stuck
            # past a tx's hard limit is stuck outside wasm: on Redis, or on itself. Not the
            # txs' doing: they run again (elsewhere, on the job's next try).
            self.metrics.timeouts.inc()
            ex.kill("timeout")
            msg = f"{exc}; it was killed and restarted, and its txs run again"
            return self.failed(jobs, ids, "error", "executor_stuck", msg, retry=True)
        except ExecutorDied:
            how = await ex.reap()
            if len(jobs) > 1:  # find the tx that kills executors: re-run one at a time
                log.warning(
                    "executor died (%s) during %d txs; re-running them singly", how, len(jobs)
                )
                singles = await asyncio.gather(*(
                    self._execute_chunk([j], [i], deadline) for j, i in zip(jobs, ids, strict=True)
                ))
                return Outcome([s.results[0] for s in singles], [s.retry[0] for s in singles])
            msg = f"executor process died while running this transaction: {how}"
            return self.failed(jobs, ids, "error", "executor_died", msg)
        except asyncio.CancelledError:
            ex.kill("cancelled")  # its reply would be stale: never reuse it
            raise
        finally:
            self.metrics.inflight.dec(len(jobs))
            self.metrics.latency.observe(loop.time() - started)
        self.release(ex)
        rows = reply.get("results")
        try:
            if "error" in reply or not isinstance(rows, list) or len(rows) != len(jobs):
                raise MalformedRow(str(reply.get("error", "malformed executor reply")))
            results = [PackedResult.from_row(row) for row in rows]
        except MalformedRow as exc:
            return self.failed(jobs, ids, "error", "executor_error", str(exc))
        delta = reply.get("metrics")
        if isinstance(delta, dict):
            self.metrics.engine_delta(delta)
        retry = {i for i in reply.get("retry", ()) if isinstance(i, int)}
        return Outcome(results, [i in retry for i in range(len(jobs))])

    def failed(self, jobs: list[Any], ids: list[str | None], status: str, kind: str,
               message: str, retry: bool = False) -> Outcome:
        """Results the worker makes for txs the engine did not answer; `retry`: not a
        verdict, run them again rather than store these."""
        results = [
            PackedResult.of(failure(j, status, kind, message, self.schedule, self.worker_name,
                                    tx_id=i))
            for j, i in zip(jobs, ids, strict=True)
        ]
        return Outcome(results, [retry] * len(jobs))

    # -- single-tx jobs sharing requests ------------------------------------------------

    async def _run_single(self, job: Any, tx_id: str | None, deadline: float | None) -> Outcome:
        """The job's outcome, from a request it may share with other waiting jobs."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self.waiting.append(_Waiting(job, tx_id, deadline, future))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = loop.create_task(self._dispatch_singles())
        return await future

    async def _dispatch_singles(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            self._expire_singles(loop.time())
            if not self.waiting:
                return
            deadlines = [w.deadline for w in self.waiting if w.deadline is not None]
            try:
                async with asyncio.timeout_at(min(deadlines) if deadlines else None):
                    ex = await self.acquire()
            except TimeoutError:
                continue  # the next turn ends the jobs whose deadline passed
            taken = self._take_singles(loop.time())
            if taken:
                self.spawn_task(self._send_singles(ex, taken))
            else:
                self.release(ex)

    def _expire_singles(self, now: float) -> None:
        still: deque[_Waiting] = deque()
        for w in self.waiting:
            if w.future.done():
                continue  # cancelled while waiting
            if w.deadline is not None and w.deadline <= now:
                w.future.set_result(self.failed([w.job], [w.tx_id], "timeout",
                                                "no_executor", NO_EXECUTOR, retry=True))
            else:
                still.append(w)
        self.waiting = still

    def _take_singles(self, now: float) -> list[_Waiting]:
        """A fair share of the waiting jobs (the other idle executors get theirs next),
        as many as fit their earliest deadline."""
        share = min(MAX_SINGLES_PER_REQUEST,
                    math.ceil(len(self.waiting) / (1 + self.idle.qsize())))
        settings = self.settings
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

    async def _send_singles(self, ex: ExecutorProcess, taken: list[_Waiting]) -> None:
        deadlines = [w.deadline for w in taken if w.deadline is not None]
        try:
            outcome = await self.run_on(ex, [w.job for w in taken],
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

    async def close(self) -> None:
        """Stop every executor: close its pipe (it exits), kill what lingers."""
        self.closing = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        for w in self.waiting:
            if not w.future.done():
                w.future.set_exception(ExecutorDied("the worker is shutting down"))
        self.waiting.clear()
        for task in list(self._tasks):
            task.cancel()
        for ex in self.executors:
            if ex.disconnect():
                self.metrics.executors.dec()
        await asyncio.gather(*(ex.wait_exit() for ex in self.executors))

"""The parent side of the executors: an asyncio pool of N long-lived subprocesses
(worker/process.py runs one; worker/executor.py is the child).

Hard limits, per request: the deadline is the sum of the jobs' wall-clock timeouts
plus `executor_grace_ms` (plus a compile allowance, see process.py), capped by the
caller's deadline. Past it, the executor is SIGKILLed and respawned and its txs get
status `timeout`. If it dies, its txs get `error` naming the exit signal (a multi-tx
chunk is first re-run one tx at a time, so only the tx that kills an executor ends
in `error`). Neither is charged. The worker itself never goes down because of a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import subprocess
from typing import Any

from config import Settings
from worker.metrics import FarmMetrics
from worker.outcomes import failure, timeout_ms_of, tx_id_of
from worker.packed import MalformedRow, Outcome, PackedResult
from worker.process import ExecutorDied, ExecutorProcess, ExecutorTimeout
from worker.txqueue import NO_EXECUTOR, TxQueue

__all__ = ["ExecutorDied", "ExecutorPool", "ExecutorProcess", "ExecutorTimeout", "Outcome"]

log = logging.getLogger("wesfarm.executors")

# A job's txs go to one executor unless each part would get MIN_CHUNK of them: an
# executor request has a fixed cost, and concurrent jobs keep the executors busy anyway.
MIN_CHUNK, MAX_CHUNK = 64, 256


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
        self.singles = TxQueue(self)

    def pids(self) -> list[int]:
        return [ex.pid for ex in self.executors if ex.alive and ex.pid is not None]

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

    def budget_s(self, jobs: list[Any]) -> float:
        """The hard limit of a request: every job's timeout in turn, plus the grace."""
        s = self.settings
        total_ms = sum(
            timeout_ms_of(j, s.default_timeout_ms, s.limits.max_timeout_ms) for j in jobs
        )
        return (total_ms + s.executor_grace_ms) / 1000

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
        if n == 1:  # a single-tx job may share a request with others (worker/txqueue.py)
            return await self.singles.run(jobs[0], keys[0], deadline)
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
            return self.failed(jobs, ids, "timeout", "no_executor", NO_EXECUTOR)
        return await self.run_on(ex, jobs, ids, deadline)

    async def run_on(self, ex: ExecutorProcess, jobs: list[Any], ids: list[str | None],
                     deadline: float | None) -> Outcome:
        """One request on an acquired executor (released after, unless it is killed)."""
        loop = asyncio.get_running_loop()
        budget = self.budget_s(jobs)
        if deadline is not None:
            budget = max(0.0, min(budget, deadline - loop.time()))
        started = loop.time()
        self.metrics.inflight.inc(len(jobs))
        try:
            reply = await ex.request({"op": "execute", "jobs": jobs, "ids": ids}, budget)
        except ExecutorTimeout:
            self.metrics.timeouts.inc()
            ex.kill("timeout")
            limit = round(budget * 1000)
            msg = f"executor did not answer within {limit} ms; it was killed and restarted"
            return self.failed(jobs, ids, "timeout", "executor_timeout", msg)
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
               message: str) -> Outcome:
        results = [
            PackedResult.of(failure(j, status, kind, message, self.schedule, self.worker_name,
                                    tx_id=i))
            for j, i in zip(jobs, ids, strict=True)
        ]
        return Outcome(results, [False] * len(jobs))

    async def close(self) -> None:
        """Stop every executor: close its pipe (it exits), kill what lingers."""
        self.closing = True
        self.singles.close()
        for task in list(self._tasks):
            task.cancel()
        for ex in self.executors:
            if ex.alive and ex.sock is not None and ex.loop is not None:
                ex.loop.remove_reader(ex.sock.fileno())
                ex.sock.close()
                ex.alive = False
                if ex.started:
                    ex.started = False
                    self.metrics.executors.dec()
                fut, ex.pending = ex.pending, None
                if fut is not None and not fut.done():
                    fut.set_exception(ExecutorDied("the worker is shutting down"))
        for ex in self.executors:
            if ex.proc is not None and ex.proc.poll() is None:
                try:
                    await asyncio.to_thread(ex.proc.wait, 5.0)
                except subprocess.TimeoutExpired:
                    ex.proc.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        await asyncio.to_thread(ex.proc.wait, 5.0)

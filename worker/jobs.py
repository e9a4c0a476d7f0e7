"""arq job functions: `execute` (one job map -> one result) and `execute_batch`
(a list of job maps -> results in the same order), plus the start-up/shutdown hooks.

Every tx ends as a Result written once under its tx id (worker/results.py). A tx
whose result already exists (a second delivery) is not executed again: the stored
result is returned. Bad input never raises out of a job: it becomes an `invalid`
Result (the engine validates job maps; the worker checks the arq arguments).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from arq import Retry
from redis.exceptions import RedisError

from config import Settings
from engine.model import MAX_TX_ID_BYTES
from engine.version import version_line
from worker.arq_keys import namespace_arq
from worker.executor_pool import ExecutorPool
from worker.metrics import FarmMetrics
from worker.outcomes import failure, tx_id_of
from worker.packed import PackedResult
from worker.protocol import (
    BATCH_JOB_PREFIX,
    FN_BATCH,
    FN_EXECUTE,
    FN_REJECT,
    Keys,
    result_record,
)
from worker.results import ResultWriter

log = logging.getLogger("wesfarm.worker")
# Deliveries of one job: a transient failure (Redis) retries it after 1, 2, 4 ... s.
MAX_TRIES = 8
MAX_RETRY_DEFER_S = 16.0
DEADLINE_MARGIN_S = 1.0  # time left to write results before arq's job timeout

Ctx = dict[str, Any]


@dataclass
class Farm:
    settings: Settings
    pool: ExecutorPool
    writer: ResultWriter
    metrics: FarmMetrics
    name: str
    version: str


def retry_defer_s(ctx: Ctx) -> float:
    return float(min(2 ** (int(ctx.get("job_try", 1)) - 1), MAX_RETRY_DEFER_S))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def startup(ctx: Ctx) -> None:
    settings: Settings = ctx["settings"]
    namespace_arq(settings.key_prefix)
    metrics: FarmMetrics = ctx.get("metrics") or FarmMetrics()
    name = worker_name()
    pool = ExecutorPool(settings, ctx["redis_url"], metrics=metrics, worker_name=name)
    await pool.start()
    writer = ResultWriter(ctx["redis"], Keys(settings.key_prefix), settings.result_ttl_s,
                          settings.fee_stream_max)
    ctx["farm"] = Farm(settings, pool, writer, metrics, name,
                       version_line(settings.fees.version))
    log.info("worker %s ready: %d executors, queue %s", name, len(pool.pids()), settings.queue_name)


async def shutdown(ctx: Ctx) -> None:
    farm: Farm | None = ctx.get("farm")
    if farm is not None:
        await farm.pool.close()
        log.info("worker %s stopped its executors", farm.name)
        keys = Keys(farm.settings.key_prefix)
        try:  # producers stop counting its executors now, not when its word expires
            await ctx["redis"].zrem(keys.workers, farm.name)
            await ctx["redis"].hdel(keys.worker_executors, farm.name)
            await ctx["redis"].hdel(keys.worker_versions, farm.name)
        except (RedisError, OSError):
            pass


def _observe_queue_wait(farm: Farm, ctx: Ctx) -> None:
    enqueued = ctx.get("enqueue_time")
    if enqueued is not None:
        farm.metrics.queue_wait.observe(max(0.0, time.time() - enqueued.timestamp()))


async def _instrumented(name: str, ctx: Ctx, body: Callable[[Farm], Awaitable[Any]],
                        raws: list[Any], ids: list[str | None]) -> Any:
    """Run a job's body with metrics. A Redis error (down, loading, busy, out of memory)
    is weather: the job runs again later; so is a job still waiting on a stalled Redis
    when its time is nearly up (arq's own job timeout would end it with no Results). Any
    other exception is a bug of ours, not a verdict on the txs, but they still end (as
    `error`), so no one waits for them."""
    farm: Farm = ctx["farm"]
    _observe_queue_wait(farm, ctx)
    started = time.perf_counter()
    outcome = "failed"
    budget = asyncio.timeout(farm.settings.job_timeout_s - DEADLINE_MARGIN_S / 2)
    try:
        async with budget:
            value = await body(farm)
        outcome = "ok"
        return value
    except Retry:
        outcome = "retry"
        raise
    except RedisError as exc:
        outcome = "retry"
        log.warning("%s %s: redis unavailable (%s); retrying", name, ctx.get("job_id"), exc)
        raise Retry(defer=retry_defer_s(ctx)) from exc
    except Exception as exc:
        if isinstance(exc, TimeoutError) and budget.expired():
            outcome = "retry"
            log.warning("%s %s: not done in the job's time (redis stalled?); retrying", name,
                        ctx.get("job_id"))
            raise Retry(defer=retry_defer_s(ctx)) from exc
        log.exception("%s %s failed inside the worker", name, ctx.get("job_id"))
        try:
            await _fail_all(farm, raws, ids, "error", "internal_error",
                            f"the worker failed on this job: {exc!r}"[:500])
        except RedisError:
            outcome = "retry"
            raise Retry(defer=retry_defer_s(ctx)) from exc
        raise
    finally:
        farm.metrics.jobs.labels(function=name, status=outcome).inc()
        farm.metrics.job_latency.labels(function=name).observe(time.perf_counter() - started)


async def _run(
    farm: Farm, ctx: Ctx, raws: list[Any], ids: list[str | None], precheck: bool = True
) -> list[PackedResult]:
    """Results for `raws` in order, stored under `ids[i]` (None: not stored).

    With `precheck`, txs that already have a result are not run again (a batch
    delivered again: arq's job_try > 1). Otherwise a tx that has a result runs again,
    harmlessly: execution is pure and the write-once script hands back the first
    result. That saves a Redis round trip per job on a first delivery.
    """
    precheck = precheck and int(ctx.get("job_try", 1)) > 1
    out: list[PackedResult | None] = (
        list(await farm.writer.existing(ids)) if precheck else [None] * len(raws)
    )
    todo = [i for i, stored in enumerate(out) if stored is None]
    if len(todo) < len(raws):
        farm.metrics.duplicates.inc(len(raws) - len(todo))
    if not todo:
        return [r for r in out if r is not None]
    # Finish (with `timeout` results if need be) before arq's own job timeout would
    # cancel the job and leave its txs without any result.
    deadline = asyncio.get_running_loop().time() + farm.settings.job_timeout_s - DEADLINE_MARGIN_S
    outcome = await farm.pool.execute([raws[i] for i in todo], deadline, [ids[i] for i in todo])
    last_try = int(ctx.get("job_try", 1)) >= MAX_TRIES
    retry = False
    to_write: list[tuple[int, PackedResult]] = []
    unstored = 0
    for i, result, transient in zip(todo, outcome.results, outcome.retry, strict=True):
        out[i] = result
        if transient and not last_try:
            retry = True  # a Redis failure, not a verdict: do not store it
        elif ids[i]:
            to_write.append((i, result))
        else:
            unstored += 1
    if unstored:  # (once a job: a batch of id-less maps logged a line each, for seconds)
        log.warning("job %s: %d results with no usable tx id are not stored",
                    ctx.get("job_id"), unstored)
    stored = await _store(farm, [r for _, r in to_write])
    for (i, _), result in zip(to_write, stored, strict=True):
        out[i] = result
    if retry:
        raise Retry(defer=retry_defer_s(ctx))
    return [r for r in out if r is not None]


async def _fail_all(farm: Farm, raws: list[Any], ids: list[str | None], status: str,
                    kind: str, message: str) -> list[PackedResult]:
    """Store an uncharged `status` Result for each tx that has a usable id."""
    bad = [PackedResult.of(failure(raw, status, kind, message, farm.settings.fees.version,
                                   farm.name, tx_id=tx_id))
           for raw, tx_id in zip(raws, ids, strict=True) if tx_id]
    return await _store(farm, bad) if bad else []


async def _store(farm: Farm, results: list[PackedResult]) -> list[PackedResult]:
    """Write results once each; count the new ones; the stored (first) results back."""
    written = await farm.writer.write(results)
    statuses = Counter(w.result.status for w in written if w.created)
    for status, count in statuses.items():  # per status, not per tx: labels() is not free
        farm.metrics.txs.labels(status=status).inc(count)
    farm.metrics.fee_used.inc(sum(w.result.fee_used for w in written if w.created))
    if len(written) > statuses.total():
        farm.metrics.duplicates.inc(len(written) - statuses.total())
    return [w.result for w in written]


def _bad_arguments(what: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return f"{what} takes exactly one argument, got {len(args)} positional" + (
        f" and keyword arguments {sorted(map(str, kwargs))}" if kwargs else ""
    )


def receipt(result: PackedResult) -> dict[str, Any]:
    """What arq keeps as the job's return value. The Result itself lives under its tx
    id; arq storing a second copy of every Result cost the worker a large serialize
    and write per job. A Result with no tx id was not stored: its status and error are
    kept (whole, a batch of id-less maps made arq keep hundreds of megabytes)."""
    if not result.tx_id:
        return {"tx_id": "", "status": result.status, "error": result.wire().get("error")}
    return {"tx_id": result.tx_id, "status": result.status}


async def execute(ctx: Ctx, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One job map -> its Result (wire map); the job id is the tx id."""

    job_id = str(ctx["job_id"])
    raw = args[0] if len(args) == 1 else None
    fallback = job_id if len(job_id.encode()) <= MAX_TX_ID_BYTES else None
    ids = [tx_id_of(raw) or fallback]

    async def body(farm: Farm) -> dict[str, Any]:
        if len(args) != 1 or kwargs:
            message = _bad_arguments("execute", args, kwargs)
            [bad] = await _fail_all(farm, [None], ids, "invalid", "malformed_job", message)
            return bad.wire()
        [result] = await _run(farm, ctx, [raw], ids, precheck=False)
        return receipt(result)

    result: dict[str, Any] = await _instrumented(FN_EXECUTE, ctx, body, [raw], ids)
    return result


def batch_receipt(results: list[PackedResult]) -> dict[str, Any]:
    """What arq keeps for a batch: how many of its txs ended how. Each Result lives in its
    part; a receipt per tx was a record per tx more for Redis to store. A Result with no
    tx id was not stored: it is kept (receipt)."""
    return {"txs": len(results),
            "statuses": dict(sorted(Counter(r.status for r in results).items())),
            "unstored": [receipt(r) for r in results if not r.tx_id]}


async def execute_batch(ctx: Ctx, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A list of job maps -> their Results in the same order (each stored under its tx id),
    summed up as batch_receipt. Called wrongly, the txs of the list it was given (if any)
    end `invalid`."""
    raws: list[Any] = args[0] if args and isinstance(args[0], list) else []
    ids = [tx_id_of(raw) for raw in raws]

    async def body(farm: Farm) -> dict[str, Any]:
        if len(args) != 1 or kwargs or not isinstance(args[0], list):
            message = _bad_arguments("execute_batch", args, kwargs)
            if len(args) == 1 and not kwargs:
                message = f"execute_batch takes a list of job maps, got {type(args[0]).__name__}"
            log.warning("batch %s rejected: %s", ctx.get("job_id"), message)
            stored = await _fail_all(farm, raws, ids, "invalid", "malformed_batch", message)
            return batch_receipt(stored or [PackedResult.of(failure(
                None, "invalid", "malformed_batch", message, farm.settings.fees.version,
                farm.name, tx_id=""))])  # (no tx id to store it under: kept here)
        return batch_receipt(await _run(farm, ctx, raws, ids))

    results: dict[str, Any] = await _instrumented(FN_BATCH, ctx, body, raws, ids)
    return results


async def reject_payload(ctx: Ctx, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Stands in for a job whose arq payload could not be decoded (worker/protocol.py): an
    `invalid` Result under each tx id its job maps named (`tx_ids`, which only the
    deserializer can pass), else under the job id. Takes anything: a payload may name
    this function itself, with any arguments."""
    given = kwargs.get("tx_ids")
    ours = len(args) == 1 and isinstance(args[0], str) and set(kwargs) <= {"tx_ids"} and \
        isinstance(given, list | None)
    reason = args[0] if ours else f"a job named {FN_REJECT} with {len(args)} arguments"
    job_id = str(ctx["job_id"])
    named = [t for t in given if isinstance(t, str) and _storable(t)] if ours and given else []
    ids: list[str | None] = list(dict.fromkeys(named)) or [
        job_id if _storable(job_id) else None]

    async def body(farm: Farm) -> dict[str, Any]:
        log.warning("job %s: undecodable payload: %s", job_id, reason)
        bad = [failure(None, "invalid", "malformed_payload", reason[:500],
                       farm.settings.fees.version, farm.name, tx_id=tx_id or job_id)
               for tx_id in ids]
        if ids == [None]:
            return bad[0].to_wire()  # no tx id to store it under
        stored = await _store(farm, [PackedResult.of(b) for b in bad])
        if len(stored) == 1:
            return stored[0].wire()
        return {"rejected": reason[:500], **batch_receipt(stored)}

    result: dict[str, Any] = await _instrumented(FN_REJECT, ctx, body, [None] * len(ids), ids)
    return result


async def results_for_unreadable_job(ctx: Ctx, job_id: str, why: str) -> None:
    """A job whose arq payload key holds what arq cannot read (a key of another type,
    written by someone else): its tx, the job id, ends `invalid` naming that."""
    farm: Farm | None = ctx.get("farm")
    if farm is not None and _storable(job_id):
        await _fail_all(farm, [None], [job_id], "invalid", "malformed_payload",
                        f"the job's arq key cannot be read: {why}"[:500])


def _storable(job_id: str) -> bool:
    return not job_id.startswith(BATCH_JOB_PREFIX) and len(job_id.encode()) <= MAX_TX_ID_BYTES


# arq's failure before our function ran -> (status, kind) of the Results its txs get.
_ARQ_FAILURES = (("retries exceeded", "error", "max_tries"), ("expired", "error", "job_expired"),
                 ("not found", "invalid", "unknown_function"))


async def results_for_failed_job(ctx: Ctx, job_id: str, result_data: bytes | None) -> None:
    """arq gave up on a job without our function writing its Results (it expired, named an
    unknown function, or ran out of tries): every tx of it still gets one, so nobody
    waits forever. The tx ids come from arq's record of the job (its arguments)."""
    farm: Farm | None = ctx.get("farm")
    if farm is None:
        return
    record = result_record(result_data) if result_data else {}
    reason = record.get("r")
    message = str(reason.get("message") if isinstance(reason, dict) else
                  "arq failed the job")[:500]
    status, kind = next(((st, k) for text, st, k in _ARQ_FAILURES if text in message),
                        ("error", "job_failed"))
    args = record.get("a")
    if record.get("f") == FN_BATCH and isinstance(args, list) and args and \
            isinstance(args[0], list):
        raws: list[Any] = list(args[0])
        ids = [tx_id_of(raw) for raw in raws]
    else:  # a single tx: its job map's tx id, else the job id (as `execute` stores it)
        raws = [args[0] if isinstance(args, list) and len(args) == 1 else None]
        ids = [tx_id_of(raws[0]) or (job_id if _storable(job_id) else None)]
    stored = await _fail_all(farm, raws, ids, status, kind, f"{message} (job {job_id})")
    if stored:
        log.warning("job %s: %s; %d tx(s) end %s", job_id, message, len(stored), status)

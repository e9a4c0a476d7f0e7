"""FarmClient: the block builder's API to the farm (deploy, call, submit, wait, fees).

Everything goes through Redis with the layout and job encoding of worker/protocol.py
(msgpack, never pickle): an `execute` job's id is its tx id; an `execute_batch` job's
id is `batch:{prefix}:{n}:{digest of its tx ids}`. arq's job
keys are global to a Redis database, so farms sharing one Redis (different key
prefixes) must not reuse tx ids; reuse is detected and raised as JobIdTaken.

Every Redis call rides out an outage (producer/retrying.py): it is made again with
backoff for up to `redis_patience_s`, then FarmUnavailable is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from arq.connections import ArqRedis, RedisSettings, create_pool

from config import DEFAULT_REDIS_URL, Settings, load_settings
from engine.errors import ExecutionError
from engine.model import RESERVED_ADDRESSES, Context, Job, Mode, Result, unpack
from producer.deploy import Deployment, bind, validate_and_init
from producer.enqueue import ArqJob, FarmSize, PipelinedEnqueuer, chunks, farm_size, part_size
from producer.errors import DeployError, FarmUnavailable, JobIdTaken, WaitTimeout, refuse_reused
from producer.fee_watch import FeeWatch, Waiter, read_fee_entries
from producer.local_engine import LocalEngine
from producer.retrying import retrying
from producer.schedule import farm_jobs
from worker.protocol import (
    BATCH_JOB_PREFIX,
    FINISHED,
    FN_BATCH,
    FN_EXECUTE,
    FeeEntry,
    Keys,
    ResultLookup,
    batch_job_id,
    decode_state,
    health_check_key,
    job_deserializer,
    job_serializer,
    located,
    stored_results,
)

if TYPE_CHECKING:
    from producer.commit_record import CommitReport

__all__ = [
    "DeployError", "Deployment", "FarmClient", "FarmUnavailable", "FeeEntry", "JobIdTaken",
    "WaitTimeout",
]

ProgressCallback = Callable[[int, int], None]
MGET_CHUNK = 500
T = TypeVar("T")


class FarmClient:
    """Async client. Use `async with FarmClient(settings) as farm:` or connect()/close()."""

    def __init__(self, settings: Settings | None = None, redis_url: str | None = None) -> None:
        self.settings = settings or load_settings()
        self.url = redis_url or self.settings.redis_url or DEFAULT_REDIS_URL
        self.keys = Keys(self.settings.key_prefix)
        self.queue = self.settings.queue_name
        self.engine = LocalEngine(self.settings)
        self._redis: ArqRedis | None = None
        self._enqueuer: PipelinedEnqueuer | None = None
        self._fee_watch: FeeWatch | None = None

    # -- connection -------------------------------------------------------------------------

    async def connect(self) -> FarmClient:
        if self._redis is None:
            redis_settings = RedisSettings.from_dsn(self.url)
            redis_settings.conn_retries = 0  # retried here, with the client's patience
            # The worker's own msgpack (de)serializer: never pickle, same bytes both sides.
            self._redis = await self._retry(lambda: create_pool(
                redis_settings,
                job_serializer=job_serializer,
                job_deserializer=job_deserializer,
                default_queue_name=self.queue,
            ), "connect")
            self._enqueuer = PipelinedEnqueuer(self._redis, self.queue, self.keys)
        return self

    async def _retry(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        return await retrying(op, self.url, self.settings.redis_patience_s, what)

    async def close(self) -> None:
        self.engine.close()
        if self._fee_watch is not None:
            await self._fee_watch.close()
            self._fee_watch = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def __aenter__(self) -> FarmClient:
        return await self.connect()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def redis(self) -> ArqRedis:
        if self._redis is None:
            raise RuntimeError("FarmClient is not connected: use `async with` or connect()")
        return self._redis

    @property
    def enqueuer(self) -> PipelinedEnqueuer:
        if self._enqueuer is None:
            raise RuntimeError("FarmClient is not connected: use `async with` or connect()")
        return self._enqueuer

    # -- code ---------------------------------------------------------------------------------

    async def deploy(
        self, code: bytes, address: str, precompile: bool = False, deployer: str = ""
    ) -> Deployment:
        """Validate, store by sha256, bind address -> hash once. DeployError when refused.

        A module exporting `init` has it run once, in-process, when the address is
        first bound; its writes become the contract's initial committed state.
        """
        if not address or len(address.encode()) > 64:
            raise DeployError("invalid", ["address must be 1..64 bytes"])
        if address in RESERVED_ADDRESSES:
            raise DeployError("invalid", [f"address {address!r} is reserved (state version key)"])
        try:
            init = await asyncio.to_thread(validate_and_init, self.engine, code, address,
                                           deployer, self.settings.default_fee_limit)
        except ExecutionError as exc:
            raise DeployError(exc.status, [exc.message]) from None
        code_hash = hashlib.sha256(code).hexdigest()
        created = await self._retry(
            lambda: bind(self.redis, self.keys, code, code_hash, address, init), "deploy")
        if precompile:
            await asyncio.to_thread(self.engine.precompile, code)
        return Deployment(address, code_hash, created, precompile)

    async def code_hash(self, address: str) -> str | None:
        raw = await self._retry(lambda: self.redis.get(self.keys.address(address)), "code_hash")
        return None if raw is None else raw.decode()

    # -- jobs ---------------------------------------------------------------------------------

    def make_job(
        self,
        address: str,
        function: str,
        input: bytes = b"",
        fee_limit: int | None = None,
        mode: Mode = "call",
        caller: str = "",
        tx_id: str | None = None,
        block_height: int = 0,
        block_time: int = 0,
        access: Sequence[bytes] = (),
        timeout_ms: int | None = None,
    ) -> Job:
        """A Job; `access`: keys of the contract it will read (fetched together)."""
        return Job(
            tx_id=tx_id or f"call-{uuid.uuid4().hex}",
            contract=address,
            function=function,
            input=input,
            fee_limit=self.settings.default_fee_limit if fee_limit is None else fee_limit,
            context=Context(caller=caller, block_height=block_height, block_time=block_time),
            mode=mode,
            timeout_ms=timeout_ms,
            access=tuple(access),
        )

    async def enqueue(self, jobs: Sequence[Job]) -> None:
        """One `execute` job per tx (job id = tx id), pipelined."""
        arq_jobs = [ArqJob(j.tx_id, FN_EXECUTE, (j.to_wire(),)) for j in jobs]
        await self._enqueue_checked(arq_jobs, [[j.tx_id] for j in jobs])

    async def _enqueue_checked(self, arq_jobs: list[ArqJob], txs: list[list[str]]) -> None:
        """Enqueue; fail loudly for a job arq will not run again whose txs have no result.
        A tx id may not look like a batch job id (workers weigh jobs by their ids)."""
        _refuse_batch_ids(t for group in txs for t in group)
        await self.fee_watch.expect(t for group in txs for t in group)  # (before: see wait)
        flags = await self._retry(lambda: self.enqueuer.enqueue(arq_jobs), "enqueue")
        ran = [t for flag, group in zip(flags, txs, strict=True) if flag == FINISHED
               for t in group]
        if ran:
            self.fee_watch.unexpect(ran)
            have = await self.have_results(ran)
            lost = [t for t in ran if t not in have]
            if lost:
                raise JobIdTaken(lost, self.settings.key_prefix)

    async def call(self, address: str, function: str, input: bytes = b"", *,
                   timeout: float | None = None, **fields: Any) -> Result:
        """Run one tx on the farm and wait for its Result (WaitTimeout if none comes);
        `fields`: make_job's."""
        job = self.make_job(address, function, input, **fields)
        await self.enqueue([job])
        done = await self.wait([job.tx_id], timeout=timeout)
        refuse_reused([job], done)
        return done[job.tx_id]

    async def submit_batch(
        self, jobs: Sequence[Job], batch_size: int | None = None, skip_done: bool = False
    ) -> list[str]:
        """Enqueue `execute_batch` jobs of `batch_size` txs (1: `execute` per tx; None:
        parts sized to the live executors, producer/enqueue.py's part_size).

        Returns the tx ids in order. `skip_done` leaves out txs that already have a
        result (a block submitted again). Enqueuing the same batch twice is a no-op.
        """
        if batch_size is not None and batch_size <= 0:
            raise ValueError("batch_size must be positive")
        todo = list(jobs)
        if skip_done and todo:
            have = await self.have_results([j.tx_id for j in todo])
            todo = [j for j in todo if j.tx_id not in have]
        size = batch_size or part_size(len(todo), (await self.farm_size()).executors,
                                       self.settings)
        if size == 1:
            await self.enqueue(todo)
        else:
            prefix = self.settings.key_prefix
            groups = list(chunks(todo, size))
            ids = [[j.tx_id for j in group] for group in groups]
            arq_jobs = [
                ArqJob(batch_job_id(prefix, tx_ids), FN_BATCH, ([j.to_wire() for j in group],))
                for group, tx_ids in zip(groups, ids, strict=True)
            ]
            await self._enqueue_checked(arq_jobs, ids)
        return [j.tx_id for j in jobs]

    async def submit_block(self, jobs: Sequence[Job], batch_size: int | None = None,
                           skip_done: bool = False) -> list[str]:
        """Submit a block that `commit_block` will commit: its txs that touch a key an
        earlier tx declares it may write are left to the commit (producer/schedule.py),
        the rest go to the farm as `submit_batch`. Returns the tx ids to wait for."""
        todo = farm_jobs(jobs)
        await self.submit_batch(todo, batch_size, skip_done)
        return [j.tx_id for j in todo]

    async def farm_size(self) -> FarmSize:
        """Live workers and their live executors, as they advertise them."""
        return await self._retry(lambda: farm_size(self.redis, self.keys), "farm_size")

    async def workers_alive(self) -> bool:
        """Whether an arq worker on this queue reported health recently."""
        key = health_check_key(self.queue)
        return bool(await self._retry(lambda: self.redis.exists(key), "workers_alive"))

    # -- results ------------------------------------------------------------------------------

    async def results(self, tx_ids: Sequence[str], parts: Mapping[str, str] | None = None
                      ) -> dict[str, Result | None]:
        """tx id -> Result (None while there is none): the index, then the parts (`parts`:
        tx id -> the part holding its Result, where known: not looked up)."""
        out: dict[str, Result | None] = {}
        for group in chunks(list(tx_ids), MGET_CHUNK):
            known = {t: parts[t] for t in group if t in parts} if parts else None
            found = (await self._retry(partial(
                stored_results, self.redis, self.keys.prefix, self.settings.result_ttl_s, group,
                known), "results")).results
            for tx_id in group:
                raw = found.get(tx_id)
                out[tx_id] = None if raw is None else Result.from_stored(tx_id, raw)
        return out

    async def have_results(self, tx_ids: Sequence[str]) -> set[str]:
        """The tx ids that already have a result (the index, and their parts still there)."""
        have: set[str] = set()
        for group in chunks(list(tx_ids), MGET_CHUNK):
            lookup = ResultLookup(self.keys.prefix, self.settings.result_ttl_s, group)
            await self._retry(partial(located, self.redis, lookup), "have_results")
            parts = lookup.part_keys()
            types = [await self._retry(partial(self.redis.type, k), "have_results")
                     for k in parts]
            have |= lookup.found(types)
        return have

    async def wait(
        self,
        tx_ids: Sequence[str],
        timeout: float | None = None,
        progress_cb: ProgressCallback | None = None,
        seen: dict[str, float] | None = None,
        block_ms: int = 100,
        rescan_s: float = 2.0,
    ) -> dict[str, Result]:
        """Wait until every tx has a result; each result is fetched once, as it appears.

        No busy polling: the worker adds a `{p}:fees` stream entry in the same atomic
        step that stores a result, so the client reads that stream (one reader for all
        its waits, producer/fee_watch.py) and each wait fetches just the results its
        entries name. A look-up of everything pending runs first (but of the txs this
        client enqueued while its reader ran: their entries come after) and every
        `rescan_s` after (a safety net: a trimmed stream, a tx stored before).
        `progress_cb(done, total)` after each step that made progress; `seen[tx_id]` gets
        the time.monotonic() at which the result was first seen. `block_ms`: how often
        the deadline is checked.
        """
        order = list(dict.fromkeys(tx_ids))
        waiter = Waiter(order)
        pending = waiter.pending
        done: dict[str, Result] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        watch = self.fee_watch

        async def collect(candidates: Sequence[str], parts: Mapping[str, str] | None = None
                          ) -> None:
            # (a tx the stream named may have been found by a rescan since: not fetched again)
            found = await self.results([t for t in candidates if t in pending], parts)
            now = time.monotonic()
            new = 0
            for tx_id, result in found.items():
                if result is not None and tx_id in pending:
                    watch.found(waiter, tx_id)
                    done[tx_id] = result
                    new += 1
                    if seen is not None:
                        seen[tx_id] = now
            if new and progress_cb is not None:
                progress_cb(len(done), len(order))

        try:
            await watch.add(waiter)  # before the first scan: nothing slips by
            await collect(watch.claim(waiter, order))  # (not the ones the watch expected)
            next_scan = time.monotonic() + rescan_s
            while pending:
                now = time.monotonic()
                wait_s = min(block_ms / 1000, max(0.0, next_scan - now))
                if deadline is not None:
                    if now >= deadline:
                        raise WaitTimeout(done, [t for t in order if t in pending])
                    wait_s = min(wait_s, deadline - now)
                if not waiter.ready:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait_s):
                            await waiter.event.wait()
                if watch.error is not None:
                    raise watch.error
                ready = waiter.take()
                if ready:
                    await collect([t for t, _ in ready], {t: p for t, p in ready if p})
                if pending and (waiter.unwatched or time.monotonic() >= next_scan):
                    waiter.unwatched = False
                    await collect([t for t in order if t in pending])
                    next_scan = time.monotonic() + rescan_s
        finally:
            watch.remove(waiter)
        return done

    @property
    def fee_watch(self) -> FeeWatch:
        if self._fee_watch is None:
            self._fee_watch = FeeWatch(self.redis, self.keys.fees, self.keys.fee_hints, self._retry)
        return self._fee_watch

    async def fee_reports(
        self,
        tx_ids: Iterable[str] | None = None,
        start: str = "-",
        end: str = "+",
        count: int | None = None,
        page: int = 1_000,
    ) -> list[FeeEntry]:
        """Entries of the `{p}:fees` stream in order (only `tx_ids`' if given)."""
        return await read_fee_entries(self.redis, self.keys.fees, self._retry, tx_ids, start,
                                      end, count, page)

    async def state(self, address: str, key: bytes) -> tuple[bytes, int] | None:
        """The committed (value, version) of one key, or None when absent."""
        async def hget() -> bytes | None:
            raw: bytes | None = await self.redis.hget(  # type: ignore[misc]
                self.keys.state(address), key)  # type: ignore[arg-type]
            return raw

        raw = await self._retry(hget, "state")
        return None if raw is None else decode_state(raw)

    async def next_height(self) -> int:
        """The height after the highest committed block (0 before any)."""
        raw = await self._retry(lambda: self.redis.get(self.keys.height), "next_height")
        return 0 if raw is None else int(raw) + 1

    async def block_record(self, height: int) -> dict[str, Any] | None:
        """A committed block's record (CommitReport.record()), or None if not committed."""
        raw = await self._retry(lambda: self.redis.get(self.keys.block(height)), "block_record")
        return None if raw is None else dict(unpack(raw))

    async def commit_block(
        self, jobs: Sequence[Job], results: Mapping[str, Result], height: int
    ) -> CommitReport:
        """Apply a block's results in order; see producer/commit.py. Through a Redis
        outage the commit starts over, resuming after the txs already applied. It runs
        in a child process (producer/commit_runner.py), off this event loop."""
        from producer.commit_runner import commit_in_child

        return await commit_in_child(self.settings, self.url, jobs, results, height)


def _refuse_batch_ids(tx_ids: Iterable[str]) -> None:
    """A tx id may not look like a batch job id: workers weigh jobs by their ids."""
    for tx_id in tx_ids:
        if tx_id.startswith(BATCH_JOB_PREFIX):
            raise ValueError(f"tx id {tx_id!r}: ids starting {BATCH_JOB_PREFIX!r} are the "
                             "farm's batch job ids")

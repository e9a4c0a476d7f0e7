"""arq's Worker, with leases instead of a long in-progress key, claiming every job one poll
found in a single Redis call, and a poll loop that nothing in Redis or a job can end.

Claims. arq 0.28 claims each job on its own: WATCH its in-progress key, EXISTS, ZSCORE,
then MULTI PSETEX EXEC: four round trips per job (docs/HOT_PATH.md). ClaimingWorker makes
the same checks and writes the same key in one Lua script for all the ids of a poll, up
to the free job slots: atomic per job like arq's transaction, so two workers never both
start a job, and a job deferred to a later time is not started early.

Leases. arq keeps the in-progress key for the job timeout plus 10 s, so a dead worker's
jobs wait that long (130 s here) before anyone may run them again. Here the key is a
lease of `lease_ms`, renewed every third of it for every job this worker is running
(one Lua call); when the worker dies the lease lapses and the next poll of any worker
claims the job. A lease that lapses under a live worker (a Redis stall longer than the
lease) lets a second worker run the job too: harmless, as results and fee records are
written once per tx id.

Weather. A Redis error in a poll is logged once per outage and retried with backoff; an
exception a job's task ended with is logged, never re-raised into the loop (arq re-raises
it, which ends the worker); a queue member that is not a job id arq could run (not
UTF-8) is removed. Jobs arq fails before our functions run (expired, unknown function,
too many tries) still end with a Result for every tx id (worker/jobs.py).

Share. A worker claims only what its executors can start soon: two parts of a block
(multi-tx jobs; a batch job id says how many txs it carries) per live executor, the one
it runs and the next, and single-tx jobs while the txs it holds stay within
`prefetch_txs` per live executor (singles waiting together share executor requests). So
a block cut into parts (the producer sizes them from what workers advertise) spreads
over every worker, and an idle worker finds work while a block has unclaimed parts.
Every second the worker advertises its live executors under `{p}:workers` (expiring
after ADVERTISE_TTL_MS).

Everything after the claim (fetching the job, tries, timeouts, results) is arq's own
run_job. The worker keeps arq's constructor (arq reads its signature).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import RedisError, ResponseError

from worker.arq_keys import arq_key, in_progress_prefix
from worker.jobs import results_for_failed_job, results_for_unreadable_job
from worker.protocol import ADVERTISE_LUA, Keys, job_tx_count

log = logging.getLogger("wesfarm.worker")
MAX_BACKOFF_S = 5.0
ADVERTISE_S, ADVERTISE_TTL_MS = 1.0, 5_000
# Redis's replies to a command on a key holding what it cannot work on: data, not trouble.
UNREADABLE = ("WRONGTYPE", "value is not an integer")
PARTS_HELD = 2  # per live executor: the part it runs and the next, so it never waits a poll

# KEYS[1] the queue; ARGV[1] now (ms), ARGV[2] lease (ms), ARGV[3] the in-progress key
# prefix, ARGV[4] how many jobs to claim at most, ARGV[5] how many multi-tx jobs, ARGV[6]
# how many single-tx jobs, ARGV[7..] job id, its txs, job id, its txs, ...
# Returns [id, score, id, score, ...] of the jobs claimed, in the order given, then how many
# of the others a lease holds (claimed by someone: not for want of room here).
CLAIM_LUA = """
local out, claimed, parts, singles, held = {}, 0, 0, 0, 0
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[4])
local part_room, single_room = tonumber(ARGV[5]), tonumber(ARGV[6])
for i = 7, #ARGV, 2 do
  if claimed >= limit then break end
  local id, part = ARGV[i], tonumber(ARGV[i + 1]) > 1
  local key = ARGV[3] .. id
  local fits = (part and parts < part_room) or (not part and singles < single_room)
  if fits and redis.call('EXISTS', key) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) > 0 and tonumber(score) <= now then
      redis.call('PSETEX', key, ARGV[2], '1')
      out[#out + 1] = id
      out[#out + 1] = score
      claimed = claimed + 1
      if part then parts = parts + 1 else singles = singles + 1 end
    end
  elseif fits then
    held = held + 1
  end
end
out[#out + 1] = held
return out
"""
# ARGV[1] lease (ms), ARGV[2] the in-progress key prefix, ARGV[3..] job ids: renew the
# leases this worker holds (a key already gone stays gone). PTTL, not PEXPIRE's XX flag:
# Redis 6.2 (the embedded redis-server) has no XX, and the script failed every renewal.
RENEW_LUA = """
for i = 3, #ARGV do
  local key = ARGV[2] .. ARGV[i]
  if redis.call('PTTL', key) > 0 then
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return 0
"""


class ClaimingWorker(Worker):  # type: ignore[misc]
    lease_ms = 3_000  # worker/main.py sets it from the settings
    _scripts: tuple[Any, Any, Any] | None = None
    _next_renewal = 0.0
    _next_advert = 0.0
    _trouble_since: float | None = None
    _backoff = 0.05
    _held = 0  # members of the last page start_jobs saw that another's lease holds
    _claimed = 0  # and the jobs it claimed

    def _script(self, index: int) -> Any:
        if self._scripts is None:
            self._scripts = (self.pool.register_script(CLAIM_LUA),
                             self.pool.register_script(RENEW_LUA),
                             self.pool.register_script(ADVERTISE_LUA))
        return self._scripts[index]

    def _live_executors(self) -> int | None:
        """The executors that can take a job now (None: a worker without a farm's executors,
        as arq's own tests of this class run it, claims by max_jobs alone)."""
        farm = self.ctx.get("farm")
        return None if farm is None else farm.pool.live()

    def _room(self) -> tuple[int, int]:
        """(multi-tx jobs to claim, single-tx jobs to claim): PARTS_HELD parts per live
        executor, and singles while the txs held stay within `prefetch_txs` each."""
        executors = self._live_executors()
        if executors is None:
            return self.max_jobs, self.max_jobs
        held = [job_tx_count(job_id) for job_id, task in self.tasks.items() if not task.done()]
        parts = sum(1 for n in held if n > 1)
        return (executors * PARTS_HELD - parts,
                executors * self.ctx["settings"].prefetch_txs - sum(held))

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        self._held = self._claimed = 0
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        runnable = []
        for raw in job_ids:
            try:
                job_id = raw.decode()
            except UnicodeDecodeError:
                log.warning("queue %s: member %.80r is not a job id; removed", self.queue_name,
                            raw)
                await self.pool.zrem(self.queue_name, raw)
                continue
            # A lease that lapsed under this worker (a stall) must not start the job twice
            # here: arq keys its tasks by job id.
            if job_id not in self.tasks:
                runnable.append(job_id)
        part_room, single_room = self._room()
        if not runnable or (part_room <= 0 and single_room <= 0):
            return
        weighted = [x for job_id in runnable for x in (job_id, job_tx_count(job_id))]
        reply = await self._script(0)(
            keys=[self.queue_name],
            args=[timestamp_ms(), self.lease_ms, in_progress_prefix(), free, part_room,
                  single_room, *weighted])
        *reply, held = reply
        self._held, self._claimed = int(held), len(reply) // 2
        for i in range(0, len(reply), 2):
            job_id, score = reply[i].decode(), int(float(reply[i + 1]))
            await self.sem.acquire()  # never waits: at most `free` jobs were claimed
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    def _page_on(self, read: int) -> None:
        """Where the next poll reads. After a full page that other workers' leases hold
        throughout (jobs running elsewhere, or leases that never lapse, written by
        someone else), the page after it, so no number of such members at the head
        starves the jobs behind them; on there while it yields claims; else the head
        (the oldest jobs first: a page not claimed for want of room here is no reason
        to pass it)."""
        if read == self.queue_read_limit == self._held:
            self._queue_read_offset += read
        elif not (self._claimed and self._queue_read_offset):
            self._queue_read_offset = 0

    async def _renew_leases(self) -> None:
        now = time.monotonic()
        if now < self._next_renewal:
            return
        self._next_renewal = now + self.lease_ms / 3000
        running = [job_id for job_id, task in self.tasks.items() if not task.done()]
        if running:
            await self._script(1)(args=[self.lease_ms, in_progress_prefix(), *running])

    async def _advertise(self) -> None:
        now = time.monotonic()
        executors = self._live_executors()
        if now < self._next_advert or executors is None:
            return
        self._next_advert = now + ADVERTISE_S
        keys = Keys(self.ctx["settings"].key_prefix)
        await self._script(2)(keys=[keys.workers, keys.worker_executors, keys.worker_versions],
                              args=[self.ctx["farm"].name, ADVERTISE_TTL_MS, executors,
                                    self.ctx["farm"].version])
        self.ctx["farm"].metrics.queue_depth.set(await self.pool.zcard(self.queue_name))

    async def _poll_iteration(self) -> None:
        try:
            await self._renew_leases()
            await self._advertise()
            # A worker holding all it may claim does not read the queue: read on every poll
            # (every few ms), a block's parts cost a full worker a good part of its CPU.
            if self.allow_pick_jobs and self.job_counter < self.max_jobs and max(self._room()) > 0:
                # Scores are enqueue times (ms): what is at or below 0 is no job's.
                job_ids = await self.pool.zrangebyscore(
                    self.queue_name, min=1, max=timestamp_ms(),
                    start=self._queue_read_offset, num=self.queue_read_limit)
                await self.start_jobs(job_ids)
                self._page_on(len(job_ids))
            await self.heart_beat()
        except (RedisError, OSError) as exc:
            await self._redis_trouble(exc)
        else:
            if self._trouble_since is not None:
                log.info("redis is back after %.1f s", time.monotonic() - self._trouble_since)
                self._trouble_since = None
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                if not task.cancelled() and task.exception() is not None:
                    log.warning("job %s ended in arq with %r; its lease lapses and it runs "
                                "again", job_id, task.exception())

    async def _redis_trouble(self, exc: BaseException) -> None:
        if self._trouble_since is None:
            self._trouble_since = time.monotonic()
            self._backoff = 0.05
            log.warning("redis unavailable (%s); retrying", exc)
        await asyncio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)

    async def run_job(self, job_id: str, score: int) -> None:
        try:
            await super().run_job(job_id, score)
        except ResponseError as exc:
            if not any(text in str(exc) for text in UNREADABLE):
                raise
            await self._unreadable(job_id, str(exc))

    async def _unreadable(self, job_id: str, why: str) -> None:
        """One of the job's arq keys holds what arq cannot read (someone else wrote it):
        claimed, failed and lapsed every lease, it never ended. A payload key that is no
        string: the job ends `invalid` and leaves the queue. Else (a retry count that is
        no integer) that key goes, and the job runs on the next poll."""
        job_key = arq_key("job_key_prefix", job_id)
        payload_ok = await self.pool.type(job_key) in (b"string", b"none")
        if not payload_ok:
            await results_for_unreadable_job(self.ctx, job_id, why)
        async with self.pool.pipeline(transaction=True) as pipe:
            if not payload_ok:
                pipe.zrem(self.queue_name, job_id)
                pipe.delete(job_key)
            pipe.delete(arq_key("retry_key_prefix", job_id),
                        arq_key("in_progress_key_prefix", job_id))
            await pipe.execute()
        log.warning("job %s: an arq key of it was unreadable (%s); %s", job_id, why[:200],
                    "the job ends invalid" if not payload_ok else "it runs again")

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """arq failed the job before (or instead of) running it: the txs still get a Result."""
        try:
            await results_for_failed_job(self.ctx, job_id, result_data)
        except (RedisError, OSError):
            log.warning("job %s failed in arq and its Results could not be written", job_id)
            raise
        await super().finish_failed_job(job_id, result_data)

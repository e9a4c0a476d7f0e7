"""Workers and executors dying or hanging: kill -9 of every worker mid-block, a batch
whose worker is killed until its tries run out, and an executor SIGSTOPped while it
holds a multi-tx request (issue 11, items 1, 2 and 8)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
import redis
import wasmtime

from engine.model import Job, Result
from producer.client import FarmClient
from tests.faults.support import (
    READ_WORK_WAT,
    WORK_FEE_LIMIT,
    FaultFarm,
    alive,
    assert_no_tracebacks,
    assert_one_result_and_one_fee_entry,
    until,
)
from tests.support.farm import WorkerProcess
from worker.jobs import MAX_TRIES
from worker.protocol import Keys, batch_job_id

pytestmark = [pytest.mark.slow, pytest.mark.integration]


async def deploy_work(client: FarmClient) -> None:
    await client.deploy(bytes(wasmtime.wat2wasm(READ_WORK_WAT)), "work", precompile=True)


def work_jobs(client: FarmClient, farm: FaultFarm, name: str, n: int, iterations: int,
              fee_limit: int = WORK_FEE_LIMIT) -> list[Job]:
    return [client.make_job("work", "work", (iterations + i).to_bytes(8, "little"),
                            fee_limit=fee_limit, tx_id=f"{farm.prefix}-{name}-{i}")
            for i in range(n)]


def assert_all_ok(done: Mapping[str, Result], jobs: list[Job]) -> None:
    statuses = Counter(r.status for r in done.values())
    assert statuses == {"ok": len(jobs)}, statuses
    assert all(done[j.tx_id].return_data == j.input for j in jobs)


async def test_kill_9_every_worker_mid_block_new_workers_finish_it(
    farm: FaultFarm, client: FarmClient
) -> None:
    await deploy_work(client)
    old = [farm.start_worker(), farm.start_worker()]
    jobs = work_jobs(client, farm, "k9", 1200, 2_000_000)  # ~1 ms of wasm each
    ids = await client.submit_batch(jobs, batch_size=16)
    seen: dict[str, float] = {}
    waiting = asyncio.create_task(client.wait(ids, timeout=120, seen=seen))
    while len(seen) < len(ids) // 5:
        await asyncio.sleep(0.005)
    orphans = [pid for w in old for pid in w.executor_pids()]
    killed_at = time.monotonic()
    for worker in old:
        os.kill(worker.pid, signal.SIGKILL)
    done_at_kill = len(seen)
    assert done_at_kill < len(ids), "the block ended before the kill: make it longer"
    new = [farm.start_worker(ready=False), farm.start_worker(ready=False)]
    await asyncio.gather(*(asyncio.to_thread(w.wait_ready, 1) for w in new))
    ready_at = time.monotonic()
    done = await waiting
    after = sorted(t for t in seen.values() if t > killed_at)
    print(f"\nrecovery after kill -9 of both workers ({done_at_kill}/{len(ids)} txs done): "
          f"new workers ready {ready_at - killed_at:.2f} s, first result "
          f"{after[0] - killed_at:.2f} s, last result {after[-1] - killed_at:.2f} s")
    assert_all_ok(done, jobs)
    with redis.Redis.from_url(farm.redis.url) as r:
        assert_one_result_and_one_fee_entry(r, farm.keys, ids)
    assert all(w.proc.poll() is None for w in new)
    # The dead workers' executors notice and leave, quietly.
    until(lambda: not any(alive(pid) for pid in orphans), "orphaned executors exit", 30)
    assert_no_tracebacks(farm.workers)


def holder_of(farm: FaultFarm, r: redis.Redis, retry_key: str, delivery: int) -> WorkerProcess:
    """The worker running the `delivery`-th delivery of a job (its executor busy on it)."""
    found: list[WorkerProcess] = []

    def running() -> bool:
        tries: Any = r.get(retry_key)
        if int(tries or 0) < delivery:
            return False
        found[:] = [w for w in farm.workers if w.proc.poll() is None and busy(w)]
        return len(found) == 1

    def busy(worker: WorkerProcess) -> bool:
        try:
            return farm.metric(worker, "wesfarm_inflight_txs") > 0
        except OSError:  # still starting: no metrics endpoint yet
            return False

    until(running, f"delivery {delivery} runs on one worker", 60)
    return found[0]


async def test_a_batch_whose_worker_keeps_dying_still_ends_with_a_result_for_every_tx(
    farm: FaultFarm, client: FarmClient
) -> None:
    await deploy_work(client)
    # ~0.2 s of wasm a tx: every delivery is still running when its worker is killed.
    jobs = work_jobs(client, farm, "doomed", 8, 400_000_000, fee_limit=5 * 10**9)
    ids = [j.tx_id for j in jobs]
    retry_key = Keys(farm.prefix).arq("retry:") + batch_job_id(farm.prefix, ids)
    farm.start_worker()
    await client.submit_batch(jobs, batch_size=len(jobs))
    with redis.Redis.from_url(farm.redis.url) as r:
        for delivery in range(1, MAX_TRIES + 1):
            holder = await asyncio.to_thread(holder_of, farm, r, retry_key, delivery)
            farm.start_worker(ready=False)  # the next holder
            os.kill(holder.pid, signal.SIGKILL)
            holder.proc.wait()
        # The next delivery finds the job's tries used up: arq gives up on it, and every
        # tx of it still gets a Result (and a fee entry), so `wait` returns.
        done = await client.wait(ids, timeout=60)
        assert {(res.status, (res.error or {}).get("kind")) for res in done.values()} == {
            ("error", "max_tries")}, done
        assert_one_result_and_one_fee_entry(r, farm.keys, ids)
        # The same tx ids submitted again, as the same batch and one job per tx: not
        # refused (no JobIdTaken), and the first Results stand.
        assert await client.submit_batch(jobs, batch_size=len(jobs)) == ids
        assert await client.submit_batch(jobs, batch_size=1) == ids
        assert await client.wait(ids, timeout=60) == done
        until(lambda: r.zcard(farm.queue) == 0, "the resubmitted jobs ran", 60)
        assert_one_result_and_one_fee_entry(r, farm.keys, ids)
    assert any(w.proc.poll() is None for w in farm.workers)


async def test_a_sigstopped_executor_is_killed_after_one_tx_limit_and_its_txs_run_again(
    farm: FaultFarm, client: FarmClient
) -> None:
    # A long job timeout: were the hard limit the request's sum of tx limits (48 × 3 s),
    # capped by the job's deadline, the stopped executor would live ~59 s.
    worker = farm.start_worker(executors=1, job_timeout_s=60)
    await deploy_work(client)
    # Warm: a first use loads the module, and a load extends the hard limit (a compile).
    await client.call("work", "work", (1).to_bytes(8, "little"), fee_limit=WORK_FEE_LIMIT,
                      tx_id=f"{farm.prefix}-warm")
    jobs = work_jobs(client, farm, "hung", 48, 100_000_000)  # ~50 ms of wasm each
    ids = await client.submit_batch(jobs, batch_size=len(jobs))
    until(lambda: farm.metric(worker, "wesfarm_inflight_txs") == len(jobs),
          "the executor holds the whole batch")
    [executor] = worker.executor_pids()
    await asyncio.sleep(0.3)  # a few txs in
    os.kill(executor, signal.SIGSTOP)
    took = await asyncio.to_thread(until, lambda: not alive(executor), "the executor is killed",
                                   60)
    print(f"\nSIGSTOPped executor killed after {took:.2f} s (tx limit: 2 s timeout + 1 s "
          f"grace; request sum {len(jobs) * 3} s)")
    # One tx's limit from when the worker last saw progress: 3-6 s, not the 59 s a
    # per-request limit would give.
    assert took < 20, "noticed only after many txs' limits"
    assert farm.metric(worker, "wesfarm_executor_timeouts_total") >= 1
    done = await client.wait(ids, timeout=60)
    assert_all_ok(done, jobs)
    with redis.Redis.from_url(farm.redis.url) as r:
        assert_one_result_and_one_fee_entry(r, farm.keys, ids)
    assert worker.proc.poll() is None

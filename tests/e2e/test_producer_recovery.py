"""kill -9 a worker in the middle of a block: every tx still ends with exactly one result
and exactly one fee record (arq re-delivers the dead worker's jobs once their in-progress
keys expire: job timeout + 10 s, so the job timeout is 5 s here)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from pathlib import Path

import wasmtime

from producer.client import FarmClient, WaitTimeout
from tests.support.farm import WORK_WAT, two_worker_farm

ITERATIONS = 40_000_000  # ~20 ms of wasm per tx
TXS = 500


async def test_kill_9_a_worker_mid_batch_every_tx_gets_one_result_and_one_fee_record(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    env = {"WESFARM_JOB_TIMEOUT_S": "5", "WESFARM_LIMITS__MAX_TIMEOUT_MS": "5000"}
    with two_worker_farm(redis_url, key_prefix, tmp_path, extra_env=env) as farm:
        settings = farm.settings(job_timeout_s=5, limits={"max_timeout_ms": 5000})
        async with FarmClient(settings) as client:
            await client.deploy(bytes(wasmtime.wat2wasm(WORK_WAT)), "work", precompile=True)
            jobs = [
                client.make_job("work", "work", (ITERATIONS + i).to_bytes(8, "little"),
                                fee_limit=1_000_000_000, tx_id=farm.tx_id(f"k9-{i}"))
                for i in range(TXS)
            ]
            ids = await client.submit_batch(jobs, batch_size=5)
            # Wait until the farm is well into the block, then kill one worker outright.
            while len(await client.have_results(ids)) < TXS // 10:
                await asyncio.sleep(0.01)
            victim = farm.workers[0]
            executors = victim.executor_pids()
            os.kill(victim.pid, signal.SIGKILL)
            for pid in executors:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            victim.proc.wait()
            done_at_kill = len(await client.have_results(ids))
            assert done_at_kill < TXS, "the block finished before the kill: make txs slower"

            try:
                done = await client.wait(ids, timeout=180)
            except WaitTimeout as exc:
                log = farm.workers[1].log()[-4000:]
                raise AssertionError(f"{exc}\nsurvivor log:\n{log}") from None
            assert set(done) == set(ids)
            # With a 5 s job timeout a tx that waited too long for an executor in the
            # survivor may end `timeout` (a result too); nothing else may happen.
            statuses = Counter(r.status for r in done.values())
            assert set(statuses) <= {"ok", "timeout"} and statuses["ok"] > 0, statuses
            assert all(done[j.tx_id].return_data == j.input for j in jobs
                       if done[j.tx_id].status == "ok")
            counts = Counter(r.tx_id for r in await client.fee_reports(ids))
            assert set(counts) == set(ids) and set(counts.values()) == {1}
            fees = {r.tx_id: r.fee["used"] for r in await client.fee_reports(ids)}
            assert all(fees[t] == done[t].fee.used for t in ids)
        survivor = farm.workers[1]
        assert survivor.proc.poll() is None, survivor.log()

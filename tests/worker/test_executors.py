"""The executor pool in-process (real subprocesses, real Redis): results, hard kills,
respawns, the scrubbed environment and the memory limit.

Hanging an executor on purpose uses the test hooks (WESFARM_TEST_HOOKS=1, see
worker/executor.py): the `sleep` op and the `_test_sleep_s` job field.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config import load_settings
from engine.compiler import pool_memory_bytes
from tests.support.farm import deploy, job_map, wasm
from worker.executor_pool import ExecutorPool, ExecutorTimeout
from worker.metrics import FarmMetrics
from worker.packed import PackedResult

pytestmark = pytest.mark.integration  # subprocesses


@pytest.fixture()
async def pool(
    redis_url: str, key_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ExecutorPool]:
    monkeypatch.setenv("WESFARM_TEST_HOOKS", "1")
    monkeypatch.setenv("WESFARM_PROBE_SECRET", "must-not-leak")
    prefix = f"{key_prefix}-pool-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    deploy(client, prefix, "hello", wasm())
    client.close()
    settings = load_settings(
        key_prefix=prefix,
        cache_dir=tmp_path / "cache",
        executors=2,
        executor_grace_ms=200,
        executor_memory_mb=1024,
    )
    p = ExecutorPool(settings, redis_url, metrics=FarmMetrics(), worker_name="test")
    await p.start()
    yield p
    await p.close()


def sample(p: ExecutorPool, name: str, **labels: str) -> float:
    return p.metrics.registry.get_sample_value(name, labels) or 0.0


async def wait_alive(p: ExecutorPool, count: int) -> None:
    while len(p.pids()) < count or sample(p, "wesfarm_executors_alive") < count:
        await asyncio.sleep(0.02)


async def test_results_come_back_in_order_with_statuses(pool: ExecutorPool) -> None:
    jobs = [
        job_map("a", "hello", "hello"),
        job_map("b", "nowhere", "hello"),
        "not a map",
        job_map("d", "hello", "hello", fee_limit=0),
    ] + [job_map(f"n{i}", "hello", "hello") for i in range(40)]
    out = await pool.execute(jobs)
    statuses = [r.status for r in out.results]
    assert statuses[:4] == ["ok", "invalid", "invalid", "invalid"]
    assert statuses[4:] == ["ok"] * 40
    assert [r.tx_id for r in out.results[4:]] == [f"n{i}" for i in range(40)]
    assert out.results[0].wire()["return_data"] == b"hello"
    assert "unknown contract" in out.results[1].wire()["error"]["message"]
    assert out.retry == [False] * len(jobs)
    # engine counters of both executors arrived as deltas
    assert sample(pool, "wesfarm_engine_events_total", event="executions") == 42


async def test_sigkill_mid_job_gives_error_and_a_respawn(pool: ExecutorPool) -> None:
    spin = job_map("spin", "hello", "spin", fee_limit=10_000_000_000, timeout_ms=30_000)
    task = asyncio.create_task(pool.execute([spin]))
    while sample(pool, "wesfarm_inflight_txs") < 1:
        await asyncio.sleep(0.01)
    for pid in pool.pids():
        os.kill(pid, signal.SIGKILL)
    out = await task
    [res] = out.results
    assert res.status == "error" and res.fee_used == 0
    assert res.wire()["error"]["kind"] == "executor_died"
    assert "SIGKILL" in res.wire()["error"]["message"]
    await wait_alive(pool, 2)
    assert sample(pool, "wesfarm_executor_restarts_total", reason="died") == 2
    after = await pool.execute([job_map("after", "hello", "hello")])
    assert after.results[0].status == "ok"


async def test_a_stuck_executor_is_killed_and_its_txs_run_again(pool: ExecutorPool) -> None:
    """Stuck outside wasm (wasm's own deadline stops wasm): not the txs' doing, so no
    verdict -- the worker runs them again; on a job's last try they end `error`."""
    before = set(pool.pids())
    hung = [job_map(f"h{i}", "hello", "hello", timeout_ms=50, _test_sleep_s=60) for i in range(3)]
    out = await pool.execute(hung)
    assert [r.status for r in out.results] == ["error"] * 3 and out.retry == [True] * 3
    assert all(r.fee_used == 0 for r in out.results)
    message = out.results[0].wire()["error"]["message"]
    assert "stuck on tx 1 of 3" in message and "killed and restarted" in message
    assert sample(pool, "wesfarm_executor_timeouts_total") == 1
    await wait_alive(pool, 2)
    assert set(pool.pids()) != before
    assert sample(pool, "wesfarm_executor_restarts_total", reason="timeout") == 1
    assert (await pool.execute([job_map("ok", "hello", "hello")])).results[0].status == "ok"


async def test_generic_op_past_its_budget_is_killed(pool: ExecutorPool) -> None:
    with pytest.raises(ExecutorTimeout):
        await pool.call({"op": "sleep", "seconds": 60}, budget_s=0.2)
    await wait_alive(pool, 2)
    assert "pong" in await pool.call({"op": "ping"}, budget_s=10)


async def test_executors_get_no_secrets_and_a_memory_limit(pool: ExecutorPool) -> None:
    for pid in pool.pids():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        assert "WESFARM_PROBE_SECRET" not in names
        assert not {n for n in names if n.startswith("WESFARM_") and n != "WESFARM_TEST_HOOKS"}
        limits = Path(f"/proc/{pid}/limits").read_text()
        [line] = [ln for ln in limits.splitlines() if ln.startswith("Max data size")]
        # far above anything deterministic caps allow: the whole pool, plus the headroom
        assert line.split()[3] == str(pool_memory_bytes(pool.settings) + 1024 * 1024 * 1024)


async def test_the_hard_limit_is_per_tx_not_per_request(pool: ExecutorPool) -> None:
    """Two quick txs, then one that hangs: the limit runs from when each tx starts, so the
    executor is caught on the third, after the first two's time, not the sum of three."""
    jobs = [job_map("q1", "hello", "hello", timeout_ms=50),
            job_map("q2", "hello", "hello", timeout_ms=50),
            job_map("q3", "hello", "hello", timeout_ms=50, _test_sleep_s=60)]
    out = await pool.execute(jobs)
    assert out.retry == [True] * 3  # the two done ones' results died with the executor
    assert "stuck on tx 3 of 3" in out.results[2].wire()["error"]["message"]
    await wait_alive(pool, 2)


async def test_a_deadline_caps_waits_and_hard_limits(pool: ExecutorPool) -> None:
    """What keeps a batch inside arq's job timeout: past the deadline the executor is
    killed and its txs are run again (a later try), never stored as a verdict."""
    loop = asyncio.get_running_loop()
    slow = [
        job_map(f"s{i}", "hello", "hello", timeout_ms=30_000, _test_sleep_s=60) for i in range(3)
    ]
    out = await pool.execute(slow, deadline=loop.time() + 0.5)
    assert [r.status for r in out.results] == ["error"] * 3 and out.retry == [True] * 3
    assert [r.wire()["error"]["kind"] for r in out.results] == ["executor_stuck"] * 3
    assert all(r.fee_used == 0 for r in out.results)
    # every executor busy: waiting for one is capped by the deadline too
    blockers = [
        asyncio.create_task(pool.call({"op": "sleep", "seconds": 60}, budget_s=60))
        for _ in range(2)
    ]
    while sum(ex.pending is not None for ex in pool.executors) < 2:
        await asyncio.sleep(0.02)
    out = await pool.execute([job_map("w", "hello", "hello")], deadline=loop.time() + 0.2)
    assert out.results[0].status == "timeout"
    assert out.results[0].wire()["error"]["kind"] == "no_executor"
    assert out.retry == [True]  # it never ran: not a verdict
    for blocker in blockers:
        blocker.cancel()
    await asyncio.gather(*blockers, return_exceptions=True)
    await wait_alive(pool, 2)
    assert (await pool.execute([job_map("ok", "hello", "hello")])).results[0].status == "ok"


def test_a_redis_failure_is_reported_as_retryable_not_as_a_verdict(tmp_path: Path) -> None:
    from multiprocessing import Pipe

    from producer.devfarm import free_port
    from worker.executor_main import Executor

    parent, child = Pipe()
    settings = load_settings(key_prefix="nowhere", cache_dir=tmp_path / "cache")
    executor = Executor(child, settings, f"redis://127.0.0.1:{free_port()}/0")  # nothing there
    try:
        reply = executor.execute([job_map("r1", "hello", "hello"), "not a map"])
    finally:
        executor.close()
        parent.close()
        child.close()
    first, second = (PackedResult.from_row(row) for row in reply["results"])
    assert reply["retry"] == [0]  # the worker retries it later instead of storing it
    assert first.status == "error" and first.wire()["error"]["kind"] == "redis"
    assert second.status == "invalid"  # decided without Redis: a real verdict


def test_a_result_that_cannot_be_encoded_fails_its_job_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from multiprocessing import Pipe

    from producer.devfarm import free_port
    from worker import executor_main
    from worker.executor_main import Executor

    real = executor_main.PackedResult.of

    def of(result: Any) -> PackedResult:
        if result.tx_id == "huge" and result.status != "error":  # a write set too big to pack
            raise MemoryError
        return real(result)

    monkeypatch.setattr(executor_main.PackedResult, "of", of)
    parent, child = Pipe()
    settings = load_settings(key_prefix="nowhere", cache_dir=tmp_path / "cache")
    executor = Executor(child, settings, f"redis://127.0.0.1:{free_port()}/0")
    try:
        reply = executor.execute(["bad", {"tx_id": "huge"}, "also bad"], ["a", "huge", "c"])
    finally:
        executor.close()
        parent.close()
        child.close()
    rows = [PackedResult.from_row(row) for row in reply["results"]]
    assert [r.tx_id for r in rows] == ["a", "huge", "c"]
    assert [r.status for r in rows] == ["invalid", "error", "invalid"]
    assert rows[1].wire()["error"]["kind"] == "result_encoding" and rows[1].fee_used == 0


# -- single-tx jobs share requests ---------------------------------------------------------


async def test_single_tx_jobs_waiting_together_share_a_request(pool: ExecutorPool) -> None:
    requests = sample(pool, "wesfarm_execution_seconds_count")
    # both executors busy for a moment, then 60 single-tx jobs arrive at once
    blockers = [asyncio.create_task(pool.execute([job_map(f"blk{i}", "hello", "hello",
                                                          _test_sleep_s=0.3)]))
                for i in range(2)]
    await asyncio.sleep(0.05)
    singles = await asyncio.gather(*(pool.execute([job_map(f"s{i}", "hello", "hello")])
                                     for i in range(60)))
    await asyncio.gather(*blockers)
    assert [o.results[0].tx_id for o in singles] == [f"s{i}" for i in range(60)]
    assert all(o.results[0].status == "ok" and o.retry == [False] for o in singles)
    sent = sample(pool, "wesfarm_execution_seconds_count") - requests
    assert 2 + 2 <= sent <= 2 + 60 // 8, sent  # 60 jobs in a handful of requests


async def test_a_single_tx_job_nobody_takes_by_its_deadline_times_out(
    pool: ExecutorPool,
) -> None:
    loop = asyncio.get_running_loop()
    blockers = [asyncio.create_task(pool.execute([job_map(f"blk{i}", "hello", "hello",
                                                          _test_sleep_s=0.5)]))
                for i in range(2)]
    await asyncio.sleep(0.05)
    late = await pool.execute([job_map("late", "hello", "hello")], deadline=loop.time() + 0.1)
    assert late.results[0].status == "timeout"
    assert "no executor became free" in late.results[0].wire()["error"]["message"]
    assert late.retry == [True]
    assert [o.results[0].status for o in await asyncio.gather(*blockers)] == ["ok", "ok"]
    # the queue carries on: the next job runs
    after = await pool.execute([job_map("after", "hello", "hello")])
    assert after.results[0].status == "ok"


async def test_a_job_cancelled_while_it_waits_leaves_the_others_alone(
    pool: ExecutorPool,
) -> None:
    blockers = [asyncio.create_task(pool.execute([job_map(f"blk{i}", "hello", "hello",
                                                          _test_sleep_s=0.3)]))
                for i in range(2)]
    await asyncio.sleep(0.05)
    waiting = [asyncio.create_task(pool.execute([job_map(f"w{i}", "hello", "hello")]))
               for i in range(6)]
    await asyncio.sleep(0.01)
    waiting[2].cancel()
    done = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [d.results[0].tx_id for i, d in enumerate(done) if i != 2] == [  # type: ignore[union-attr]
        f"w{i}" for i in range(6) if i != 2]
    await asyncio.gather(*blockers)


BUFFER_THEN_GROW = """(module
  (import "wes" "input_read" (func $ir (param i32)))
  (import "wes" "storage_write" (func $sw (param i32 i32 i32 i32)))
  (import "wes" "return_data" (func $rd (param i32 i32)))
  (memory (export "memory") 2)
  ;; input: n (u32): n writes of 64 KiB values under distinct keys, then grow by 250 pages
  (func (export "run") (local $i i32) (call $ir (i32.const 0))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 0))))
      (i32.store (i32.const 16) (local.get $i))
      (call $sw (i32.const 16) (i32.const 4) (i32.const 65536) (i32.const 65536))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.store (i32.const 0) (memory.grow (i32.const 250)))
    (call $rd (i32.const 0) (i32.const 4))))"""


async def test_outcomes_do_not_depend_on_the_executors_memory(
        redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    """The issue's split: buffered writes and grown memory shared one rlimit, so a grow's
    result depended on how much memory the executor was given. Now the write set is capped
    deterministically and the rlimit sits above the whole pool."""
    prefix = f"{key_prefix}-mem-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    deploy(client, prefix, "grower", wasm(BUFFER_THEN_GROW))
    client.close()
    outcomes = []
    for memory_mb in (64, 4096):
        settings = load_settings(key_prefix=prefix, cache_dir=tmp_path / f"c{memory_mb}",
                                 executors=1, executor_memory_mb=memory_mb)
        pool = ExecutorPool(settings, redis_url, metrics=FarmMetrics(), worker_name="test")
        await pool.start()
        try:
            jobs = [job_map(f"g{n}", "grower", "run", input=n.to_bytes(4, "little"),
                            fee_limit=10_000_000_000) for n in (10, 2_500)]
            out = await pool.execute(jobs)
        finally:
            await pool.close()
        wires = [r.wire() for r in out.results]
        for w in wires:
            w.pop("worker"), w.pop("timings")
        outcomes.append(wires)
    assert outcomes[0] == outcomes[1]
    small, large = outcomes[0]
    assert small["status"] == "ok" and small["return_data"] == (2).to_bytes(4, "little")
    assert large["status"] == "trap" and "max_write_bytes" in large["error"]["message"]


def test_only_jobs_that_can_run_have_their_declared_keys_fetched(
        tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    """A job refused before it runs pays nothing, and one whose fee limit cannot cover its
    declared keys, or what it is charged before them, pays for few: fetching their keys
    would be free work for whoever sends them (64 keys of 64 KiB a job). Nor can the
    executor tell that of a contract whose code it has not loaded yet. Each such job keeps
    its keys out of the request's prefetch; the verdicts stay execute_wire's."""
    from multiprocessing import Pipe

    from tests.support import TEST_FEES
    from tests.support.contracts import example, module
    from worker.executor_main import Executor

    prefix = f"{key_prefix}:admit"
    client = redis.Redis.from_url(redis_url)
    deploy(client, prefix, "token", example("token"))
    deploy(client, prefix, "counter", example("counter"))
    # a data segment past its memory: every instantiation traps, before any key is read
    deploy(client, prefix, "trapper", wasm(module('(data (i32.const 65535) "xy") '
                                                  '(func (export "f"))')))
    parent, child = Pipe()
    settings = load_settings(key_prefix=prefix, cache_dir=tmp_path / "cache",
                             fees={**TEST_FEES, "storage_read_key": 1_000})
    executor = Executor(child, settings, redis_url)
    fetched: list[tuple[str, bytes]] = []
    begin = executor.sources.begin_request

    def watched(slots: Any = ()) -> None:
        fetched.extend(slots)
        begin(fetched)

    executor.sources.begin_request = watched  # type: ignore[method-assign]

    def request(*jobs: dict[str, Any]) -> list[str]:
        fetched.clear()
        reply = executor.execute(list(jobs))
        return [PackedResult.from_row(row).status for row in reply["results"]]

    try:
        ok = job_map("ok", "token", "total_supply", access=[b"bal:a"], fee_limit=100_000_000)
        assert request(ok) == ["ok"] and fetched == []  # its code is not loaded yet
        assert request(ok) == ["ok"] and fetched == [("token", b"bal:a")]
        statuses = request(
            job_map("nobody", "nowhere", "total_supply", access=[b"n"]),
            job_map("init", "token", "init", access=[b"i"]),
            job_map("nofn", "token", "no_such_entry", access=[b"u"]),  # its code is loaded
            job_map("slow", "token", "total_supply", access=[b"s"],
                    fee_limit=settings.limits.max_fee_per_timeout_ms + 1, timeout_ms=1),
            job_map("badmap", "token", "total_supply", access=[b"m"], fee_limit="x"),
            job_map("seq", "seq", "total_supply", access=[b"q"]),
            job_map("poor", "token", "total_supply", access=[b"p", b"p2"], fee_limit=1_999),
            # its keys, but not what is charged before them (its initial memory, 5,000 a page)
            job_map("first", "token", "total_supply", access=[b"f"], fee_limit=4_000),
            job_map("cold", "counter", "get", access=[b"c"], mode="view",
                    fee_limit=100_000_000),  # its code not loaded yet
            {**ok, "tx_id": "ok2"})
        assert statuses == ["invalid"] * 6 + ["out_of_fee", "out_of_fee", "ok", "ok"]
        assert fetched == [("token", b"bal:a")]
        assert request(job_map("warm", "counter", "get", access=[b"w"], mode="view",
                               fee_limit=100_000_000)) == ["ok"]
        assert fetched == [("counter", b"w")]  # its code is loaded now
        trapping = job_map("t1", "trapper", "f", access=[b"t"], fee_limit=100_000_000)
        assert request(trapping) == ["trap"] and fetched == []  # not loaded yet
        assert request({**trapping, "tx_id": "t2"}) == ["trap"] and fetched == []
    finally:
        executor.close()
        parent.close()
        child.close()
        client.delete(*client.keys(f"{prefix}:*"))
        client.close()

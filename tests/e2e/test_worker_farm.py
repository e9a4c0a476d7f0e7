"""A real `wesfarm worker` subprocess against a real Redis: execute and execute_batch,
duplicate delivery, bad input at the boundary, an executor killed mid-job, a hung
executor, and the metrics endpoint. One worker serves the whole module (each test
uses its own tx ids); it runs with test hooks on and a short executor grace.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from tests.support.farm import (
    RESULT_TTL_S,
    WorkerProcess,
    deploy,
    enqueue,
    enqueue_raw,
    fee_entries,
    job_map,
    metric,
    running_worker,
    scrape,
    stored_result,
    wait_results,
    wasm,
)
from worker.protocol import Keys


@dataclass
class Farm:
    client: redis.Redis
    prefix: str
    queue: str
    worker: WorkerProcess

    def tx(self, name: str) -> str:
        return f"{self.prefix}-{name}-{uuid.uuid4().hex[:6]}"

    def metrics(self) -> str:
        return scrape(self.worker.metrics_port)

    def value(self, name: str, **labels: str) -> float:
        return metric(self.metrics(), name, **labels)


@pytest.fixture(scope="module")
def farm(
    redis_url: str, key_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Farm]:
    prefix = f"{key_prefix}-farm-{uuid.uuid4().hex[:6]}"
    queue = f"{prefix}:queue"
    client = redis.Redis.from_url(redis_url)
    deploy(client, prefix, "hello", wasm())
    env = {"WESFARM_TEST_HOOKS": "1", "WESFARM_EXECUTOR_GRACE_MS": "300"}
    tmp = tmp_path_factory.mktemp("farm")
    with running_worker(redis_url, prefix, queue, tmp, executors=2, extra_env=env) as worker:
        yield Farm(client, prefix, queue, worker)
    assert worker.proc.returncode == 0, worker.log()  # SIGTERM drained and exited cleanly
    client.close()


def run(farm: Farm, job: object, tx_id: str) -> dict:
    enqueue(farm.client, farm.prefix, farm.queue, "execute", [job], tx_id)
    return wait_results(farm.client, farm.prefix, [tx_id])[tx_id]


def wait_metric(farm: Farm, name: str, at_least: float, **labels: str) -> None:
    deadline = time.monotonic() + 60
    while metric(farm.metrics(), name, **labels) < at_least:
        assert time.monotonic() < deadline, f"{name}{labels} never reached {at_least}"
        time.sleep(0.02)


def test_execute_writes_result_and_one_fee_report(farm: Farm) -> None:
    tx = farm.tx("hello")
    res = run(farm, job_map(tx, "hello", "hello"), tx)
    assert res["status"] == "ok" and res["return_data"] == b"hello"
    assert res["fee"]["used"] > 0 and res["worker"]
    [entry] = [e for e in fee_entries(farm.client, farm.prefix) if e.tx_id == tx]
    assert entry.status == "ok" and entry.fee == res["fee"]


def test_batch_results_in_order_and_duplicate_delivery_is_not_charged_twice(farm: Farm) -> None:
    batches = farm.value("wesfarm_jobs_total", function="execute_batch", status="ok")
    duplicates = farm.value("wesfarm_duplicate_deliveries_total")
    txs = [farm.tx(f"b{i}") for i in range(30)]
    jobs = [job_map(t, "hello", "hello") for t in txs]
    enqueue(farm.client, farm.prefix, farm.queue, "execute_batch", [jobs], f"batch:{farm.prefix}-1")
    first = wait_results(farm.client, farm.prefix, txs)
    # deliver the same txs again: as one batch, and one of them as a single job
    enqueue(farm.client, farm.prefix, farm.queue, "execute_batch", [jobs], f"batch:{farm.prefix}-2")
    enqueue(farm.client, farm.prefix, farm.queue, "execute", [jobs[0]], f"{txs[0]}-again")
    wait_metric(farm, "wesfarm_jobs_total", batches + 2, function="execute_batch", status="ok")
    wait_metric(farm, "wesfarm_duplicate_deliveries_total", duplicates + 31)
    assert wait_results(farm.client, farm.prefix, txs) == first
    entries = [e.tx_id for e in fee_entries(farm.client, farm.prefix) if e.tx_id in txs]
    assert sorted(entries) == sorted(txs)  # exactly one fee report per tx


BAD_JOBS = {
    "not_a_map": "a string",
    "missing_contract": {"tx_id": "X", "function": "hello", "fee_limit": 10},
    "mistyped_input": {
        "tx_id": "X",
        "contract": "hello",
        "function": "hello",
        "input": "hex",
        "fee_limit": 10,
    },
    "unknown_contract": {"tx_id": "X", "contract": "nowhere", "function": "hello", "fee_limit": 10},
    "zero_fee": {"tx_id": "X", "contract": "hello", "function": "hello", "fee_limit": 0},
    "fee_over_max": {"tx_id": "X", "contract": "hello", "function": "hello", "fee_limit": 10**15},
    "oversized_input": {
        "tx_id": "X",
        "contract": "hello",
        "function": "hello",
        "input": b"\0" * (64 * 1024 + 1),
        "fee_limit": 10,
    },
    "unknown_function": {"tx_id": "X", "contract": "hello", "function": "nope", "fee_limit": 10},
}


@pytest.mark.parametrize("case", sorted(BAD_JOBS))
def test_bad_job_maps_become_invalid_results(farm: Farm, case: str) -> None:
    tx = farm.tx(case)
    job = BAD_JOBS[case]
    if isinstance(job, dict):
        job = {**job, "tx_id": tx}
    res = run(farm, job, tx)
    assert res["status"] == "invalid", res
    assert res["error"]["message"] and res["fee"]["used"] == 0
    assert res["tx_id"] == tx


def test_malformed_arq_payloads_become_invalid_results(farm: Farm) -> None:
    garbage, pickled, wrong_args = farm.tx("garbage"), farm.tx("pickled"), farm.tx("args")
    enqueue_raw(farm.client, farm.prefix, farm.queue, garbage, b"\xc1 definitely not msgpack")
    enqueue_raw(farm.client, farm.prefix, farm.queue, pickled, b"\x80\x04\x95 pickle-ish")
    payload = msgpack.packb({"t": 1, "f": "execute", "a": [1, 2], "k": {}, "et": 0})
    enqueue_raw(farm.client, farm.prefix, farm.queue, wrong_args, payload)
    results = wait_results(farm.client, farm.prefix, [garbage, pickled, wrong_args])
    assert {r["status"] for r in results.values()} == {"invalid"}
    assert results[garbage]["error"]["kind"] == "malformed_payload"
    assert "exactly one argument" in results[wrong_args]["error"]["message"]
    # the worker carried on
    tx = farm.tx("after-garbage")
    assert run(farm, job_map(tx, "hello", "hello"), tx)["status"] == "ok"


def test_executor_killed_mid_job_gives_error_then_work_goes_on(farm: Farm) -> None:
    restarts = farm.value("wesfarm_executor_restarts_total", reason="died")
    inflight = farm.tx("spin")
    spin = job_map(inflight, "hello", "spin", fee_limit=10_000_000_000, timeout_ms=30_000)
    enqueue(farm.client, farm.prefix, farm.queue, "execute", [spin], inflight)
    wait_metric(farm, "wesfarm_inflight_txs", 1)
    for pid in farm.worker.executor_pids():
        os.kill(pid, signal.SIGKILL)
    res = wait_results(farm.client, farm.prefix, [inflight])[inflight]
    assert res["status"] == "error" and res["fee"]["used"] == 0
    assert "SIGKILL" in res["error"]["message"]
    wait_metric(farm, "wesfarm_executor_restarts_total", restarts + 2, reason="died")
    wait_metric(farm, "wesfarm_executors_alive", 2)
    later = [farm.tx(f"later{i}") for i in range(4)]
    for t in later:
        enqueue(farm.client, farm.prefix, farm.queue, "execute", [job_map(t, "hello", "hello")], t)
    assert {r["status"] for r in wait_results(farm.client, farm.prefix, later).values()} == {"ok"}


def test_a_stuck_executor_is_replaced_and_its_tx_runs_again(farm: Farm) -> None:
    """A state read that hangs (a Redis stall, here a test hook) gets the executor killed
    after the tx's hard limit; the tx is not finalized as `timeout` but run again, and
    ends `ok` once the stall is over."""
    before = set(farm.worker.executor_pids())
    restarts = farm.value("wesfarm_executor_restarts_total", reason="timeout")
    timeouts = farm.value("wesfarm_executor_timeouts_total")
    tx, stall = farm.tx("hang"), f"{farm.prefix}:stall"
    farm.client.set(stall, 1)
    enqueue(farm.client, farm.prefix, farm.queue, "execute",
            [job_map(tx, "hello", "hello", timeout_ms=50, _test_hang_while=stall)], tx)
    wait_metric(farm, "wesfarm_executor_restarts_total", restarts + 1, reason="timeout")
    assert farm.value("wesfarm_executor_timeouts_total") >= timeouts + 1
    assert stored_result(farm.client, Keys(farm.prefix), tx, RESULT_TTL_S) is None  # no verdict
    farm.client.delete(stall)
    res = wait_results(farm.client, farm.prefix, [tx])[tx]
    assert res["status"] == "ok" and res["return_data"] == b"hello"
    wait_metric(farm, "wesfarm_executors_alive", 2)
    assert set(farm.worker.executor_pids()) != before


def test_metrics_endpoint_counts_across_executors(farm: Farm) -> None:
    names = [
        ("wesfarm_txs_total", {"status": "ok"}),
        ("wesfarm_txs_total", {"status": "invalid"}),
        ("wesfarm_fee_used_total", {}),
        ("wesfarm_engine_events_total", {"event": "executions"}),
        ("wesfarm_compile_cache_total", {"result": "memory_hit"}),
        ("wesfarm_execution_seconds_count", {}),
        ("wesfarm_queue_wait_seconds_count", {}),
        ("wesfarm_jobs_total", {"function": "execute_batch", "status": "ok"}),
    ]
    before = {(n, tuple(sorted(lb.items()))): farm.value(n, **lb) for n, lb in names}

    def grew(name: str, **labels: str) -> float:
        return farm.value(name, **labels) - before[(name, tuple(sorted(labels.items())))]

    txs = [farm.tx(f"m{i}") for i in range(20)]
    bad = farm.tx("m-bad")
    jobs = [job_map(t, "hello", "hello") for t in txs] + [job_map(bad, "nowhere", "hello")]
    enqueue(farm.client, farm.prefix, farm.queue, "execute_batch", [jobs], f"batch:{bad}")
    results = wait_results(farm.client, farm.prefix, [*txs, bad])
    # counters move just after the results are written: wait for the job to finish
    wait_until_grew = 1.0
    deadline = time.monotonic() + 60
    while grew("wesfarm_jobs_total", function="execute_batch", status="ok") < wait_until_grew:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert grew("wesfarm_txs_total", status="ok") == 20
    assert grew("wesfarm_txs_total", status="invalid") == 1
    assert grew("wesfarm_fee_used_total") == sum(r["fee"]["used"] for r in results.values())
    # 20 txs over 2 executors (chunks of >= 8): both executors' engine counters arrive
    assert grew("wesfarm_engine_events_total", event="executions") == 21
    assert grew("wesfarm_compile_cache_total", result="memory_hit") >= 1
    assert grew("wesfarm_execution_seconds_count") >= 1
    assert grew("wesfarm_queue_wait_seconds_count") == 1
    text = farm.metrics()
    assert metric(text, "wesfarm_executors_alive") == 2
    assert metric(text, "wesfarm_inflight_txs") == 0
    assert "wesfarm_instance_pool_total" in text and "wesfarm_executor_restarts_total" in text


def test_sigterm_drains_the_running_job_then_exits_cleanly(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    prefix = f"{key_prefix}-drain-{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(redis_url)
    deploy(client, prefix, "hello", wasm())
    with running_worker(redis_url, prefix, f"{prefix}:queue", tmp_path, executors=1) as worker:
        tx = f"{prefix}-long"
        # runs until the engine's own 1.5 s deadline: a `timeout` the engine reports
        job = job_map(tx, "hello", "spin", fee_limit=10_000_000_000, timeout_ms=1_500)
        enqueue(client, prefix, f"{prefix}:queue", "execute", [job], tx)
        deadline = time.monotonic() + 60
        while metric(scrape(worker.metrics_port), "wesfarm_inflight_txs") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        executors = worker.executor_pids()
        assert len(executors) == 1
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(60) == 0
        # the worker stopped (and reaped) its executor before exiting
        assert not [pid for pid in executors if Path(f"/proc/{pid}").exists()]
    res = wait_results(client, prefix, [tx], timeout_s=1)[tx]
    assert res["status"] == "timeout" and res["error"]["kind"] != "executor_timeout"
    client.close()


def test_queue_depth_gauge_counts_waiting_jobs(farm: Farm) -> None:
    later = {f"{farm.prefix}-later-{i}": 4_000_000_000_000 for i in range(3)}  # not due
    farm.client.zadd(farm.queue, later)
    try:
        wait_metric(farm, "wesfarm_queue_depth", 3)
    finally:
        farm.client.zrem(farm.queue, *later)


def arq_return(farm: Farm, job_id: str) -> Any:
    """What arq keeps as a job's return value, once the job ended."""
    from worker.protocol import result_record

    key = Keys(farm.prefix).arq("result:") + job_id
    deadline = time.monotonic() + 30
    while (raw := farm.client.get(key)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert raw is not None
    return result_record(raw)["r"]


def test_a_batch_keeps_only_status_and_error_of_the_txs_it_cannot_store(farm: Farm) -> None:
    """A map with no usable tx id gets a Result nobody can look up: arq's record of the
    job (how many txs ended how) keeps its status and error, not the whole Result (a
    batch of id-less maps made arq keep hundreds of megabytes and the worker log a line
    per map)."""
    tx, job_id = farm.tx("beside-idless"), f"batch:{farm.prefix}-idless:3:x"
    enqueue(farm.client, farm.prefix, farm.queue, "execute_batch",
            [[job_map(tx, "hello", "hello"), {}, {"tx_id": 5}]], job_id)
    assert wait_results(farm.client, farm.prefix, [tx])[tx]["status"] == "ok"
    record = arq_return(farm, job_id)
    assert (record["txs"], record["statuses"]) == (3, {"invalid": 2, "ok": 1})
    unstored = record["unstored"]
    assert [set(r) for r in unstored] == [{"tx_id", "status", "error"}] * 2
    assert all(r["status"] == "invalid" and r["error"]["message"] for r in unstored)


def test_a_batch_called_with_no_list_keeps_its_one_result_in_arqs_record(farm: Farm) -> None:
    """No map, so no tx id: the `invalid` Result it ends with is kept where it can be
    read, counted as the batch's one Result."""
    job_id = f"batch:{farm.prefix}-nolist:1:x"
    enqueue(farm.client, farm.prefix, farm.queue, "execute_batch", [5], job_id)
    record = arq_return(farm, job_id)
    assert (record["txs"], record["statuses"]) == (1, {"invalid": 1})
    [kept] = record["unstored"]
    assert kept["tx_id"] == "" and kept["error"]["kind"] == "malformed_batch"
    assert "list of job maps" in kept["error"]["message"]


def test_a_job_whose_payload_key_is_not_a_string_ends_invalid_and_leaves_the_queue(
        farm: Farm) -> None:
    tx = farm.tx("hash-payload")
    farm.client.hset(Keys(farm.prefix).arq("job:") + tx, "f", "execute")
    farm.client.zadd(farm.queue, {tx: int(time.time() * 1000)})
    res = wait_results(farm.client, farm.prefix, [tx])[tx]
    assert res["status"] == "invalid" and res["error"]["kind"] == "malformed_payload"
    assert "cannot be read" in res["error"]["message"]
    deadline = time.monotonic() + 10
    while farm.client.zscore(farm.queue, tx) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert farm.client.zscore(farm.queue, tx) is None

"""Jobs nobody should have enqueued, straight into the arq queue, against a running
worker; and ClaimingWorker run through arq's own entry points (issue 11, items 5, 6, 10)."""

from __future__ import annotations

import asyncio
import time

import arq.worker
import msgpack
import pytest
import redis

from tests.faults.support import (
    FaultFarm,
    assert_no_tracebacks,
    assert_one_result_and_one_fee_entry,
    until,
)
from tests.support.farm import (
    deploy,
    enqueue,
    enqueue_raw,
    job_map,
    wait_results,
    wasm,
)
from worker.arq_config import KEEP_RESULT_S, worker_kwargs
from worker.claim import ClaimingWorker
from worker.jobs import MAX_TRIES
from worker.protocol import (
    FN_BATCH,
    FN_EXECUTE,
    FN_REJECT,
    health_check_key,
    job_deserializer,
    job_serializer,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def envelope(function: str, args: list[object], **fields: object) -> bytes:
    job = {"t": 1, "f": function, "a": args, "k": {}, "et": int(time.time() * 1000), **fields}
    return bytes(msgpack.packb(job, use_bin_type=True))


def nested_job(depth: int) -> bytes:
    """An `execute` envelope whose job map nests `depth` maps deep."""
    nested: object = None
    for _ in range(depth):
        nested = {"x": nested}
    return envelope(FN_EXECUTE, [nested])


def test_malformed_jobs_end_with_results_and_the_worker_goes_on(farm: FaultFarm) -> None:
    worker = farm.start_worker(executors=1)
    r = redis.Redis.from_url(farm.redis.url)
    try:
        deploy(r, farm.prefix, "hello", wasm())

        def tx(name: str) -> str:
            return f"{farm.prefix}-{name}"

        def job(name: str) -> dict[str, object]:
            return job_map(tx(name), "hello", "hello")

        batch_txs = [tx("batch-kw-0"), tx("batch-kw-1")]
        singles = {
            "huge-et": envelope(FN_EXECUTE, [job("huge-et")], et=2**62),
            "unknown-fn": envelope("no_such_function", [job("unknown-fn")]),
            "t6": envelope(FN_EXECUTE, [job("t6")], t=6),
            "kw-int": envelope(FN_EXECUTE, [job("kw-int")], k={1: 2}),
            "kw-ctx": envelope(FN_EXECUTE, [job("kw-ctx")], k={"ctx": 1}),
            "deep": nested_job(1_000),
            "empty": b"",
            "reject-arity": envelope(FN_REJECT, [1, 2, 3]),
        }
        bad_member = b"\xff\xfe not utf-8"
        r.zadd(farm.queue, {bad_member: int(time.time() * 1000)})
        for name, payload in singles.items():
            enqueue_raw(r, farm.prefix, farm.queue, tx(name), payload)
        batch_payload = envelope(FN_BATCH, [[job_map(t, "hello", "hello") for t in batch_txs]],
                                 k={"x": 1})
        enqueue_raw(r, farm.prefix, farm.queue, f"batch:{farm.prefix}:kw", batch_payload)
        enqueue(r, farm.prefix, farm.queue, FN_EXECUTE, [job("same-poll")], tx("same-poll"))

        bad = [tx(name) for name in singles] + batch_txs
        got = wait_results(r, farm.prefix, bad, timeout_s=60)
        wrong = {t: res["status"] for t, res in got.items() if res["status"] not in
                 ("invalid", "error")}
        assert not wrong, wrong
        assert all(res["fee"]["used"] == 0 for res in got.values())
        assert wait_results(r, farm.prefix, [tx("same-poll")])[tx("same-poll")]["status"] == "ok"
        until(lambda: r.zscore(farm.queue, bad_member) is None, "the bad member is removed")
        # The worker carried on: a job enqueued after all of them runs.
        enqueue(r, farm.prefix, farm.queue, FN_EXECUTE, [job("after")], tx("after"))
        assert wait_results(r, farm.prefix, [tx("after")])[tx("after")]["status"] == "ok"
        assert_one_result_and_one_fee_entry(r, farm.keys, [*bad, tx("same-poll"), tx("after")])
        # arq's record of the refused batch sums its txs up; each Result is in its part.
        record = msgpack.unpackb(r.get(farm.keys.arq(f"result:batch:{farm.prefix}:kw")))
        assert record["r"] == {"rejected": "job payload has keyword arguments (the farm's jobs "
                               "take none)", "txs": 2, "statuses": {"invalid": 2}, "unstored": []}
        assert worker.proc.poll() is None
        assert_no_tracebacks([worker])
    finally:
        r.close()


def test_claiming_worker_through_arqs_own_entry_points_keeps_its_settings(
    farm: FaultFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = farm.settings(executors=1)
    kwargs = worker_kwargs(settings, farm.redis.url, burst=True)
    live = farm.start_worker()
    # arq's CLI, run_worker, create_worker and check_health build `arq.worker.Worker`
    # from the settings that class's signature names: put ClaimingWorker there.
    monkeypatch.setattr(arq.worker, "Worker", ClaimingWorker)
    assert set(arq.worker.get_kwargs(kwargs)) == set(kwargs)
    assert arq.worker.check_health(kwargs) == 0  # it found the live worker's health key
    r = redis.Redis.from_url(farm.redis.url)
    deploy(r, farm.prefix, "hello", wasm())
    live.stop()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        made = arq.worker.create_worker(kwargs, handle_signals=False)
        assert isinstance(made, ClaimingWorker)
        assert set(made.functions) == {FN_EXECUTE, FN_BATCH, FN_REJECT}
        assert all(f.max_tries == MAX_TRIES for f in made.functions.values())
        assert (made.queue_name, made.health_check_key) == (farm.queue,
                                                            health_check_key(farm.queue))
        assert (made.job_serializer, made.job_deserializer) == (job_serializer,
                                                                job_deserializer)
        assert (made.max_jobs, made.job_timeout_s, made.poll_delay_s, made.keep_result_s,
                made.max_tries, made.burst) == (settings.max_jobs, settings.job_timeout_s,
                                                settings.poll_delay_s, KEEP_RESULT_S,
                                                MAX_TRIES, True)
        assert made.on_startup is kwargs["on_startup"] and made.ctx["settings"] is settings
        txs = [f"{farm.prefix}-arq-{i}" for i in range(3)]
        enqueue(r, farm.prefix, farm.queue, FN_EXECUTE, [job_map(txs[0], "hello", "hello")],
                txs[0])
        enqueue(r, farm.prefix, farm.queue, FN_BATCH,
                [[job_map(t, "hello", "hello") for t in txs[1:]]], f"batch:{farm.prefix}:arq")
        ran = arq.worker.run_worker(kwargs, handle_signals=False)  # burst: until the queue is empty
        assert isinstance(ran, ClaimingWorker) and ran._scripts is not None  # claimed by Lua
        assert (ran.jobs_complete, ran.jobs_failed) == (2, 0)
        got = wait_results(r, farm.prefix, txs, timeout_s=5)
        assert {res["status"] for res in got.values()} == {"ok"}
        assert_one_result_and_one_fee_entry(r, farm.keys, txs)
    finally:
        loop.close()
        asyncio.set_event_loop(None)
        r.close()

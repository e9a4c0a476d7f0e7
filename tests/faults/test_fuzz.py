"""Property-based fuzz of what can sit on the arq queue (hypothesis): arbitrary bytes and
msgpack values as payloads, arq envelopes with valid and mangled fields, valid and
invalid job maps, batches mixing them, queue members that are no job id. Against one
running worker: every tx id they name that is a valid result key ends with exactly one
Result and exactly one fee-stream entry, and the worker keeps running."""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from engine.model import MAX_TX_ID_BYTES
from tests.faults.support import FaultFarm, assert_no_tracebacks, fee_counts
from tests.support.farm import deploy, enqueue, enqueue_raw, job_map, wait_results, wasm
from worker.outcomes import tx_id_of
from worker.protocol import BATCH_JOB_PREFIX, FN_BATCH, FN_EXECUTE, FN_REJECT

pytestmark = [pytest.mark.slow, pytest.mark.integration]

INTEGERS = st.integers(-(2**63), 2**64 - 1)  # what msgpack encodes
SCALARS = (st.none() | st.booleans() | INTEGERS | st.floats()
           | st.text(max_size=12) | st.binary(max_size=12))
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.integers(-3, 3), inner, max_size=4),
    max_leaves=12)
JOB_FIELDS = ("contract", "function", "input", "fee_limit", "context", "mode", "timeout_ms")
BAD_TX_IDS = st.none() | INTEGERS | st.just("") | st.just("x" * (MAX_TX_ID_BYTES + 1))
FUNCTIONS = st.sampled_from([FN_EXECUTE, FN_REJECT, "nope"]) | st.text(max_size=12)


def usable(tx_id: object) -> str | None:
    """The tx id if it is a valid result key."""
    found = tx_id_of({"tx_id": tx_id})
    return found if found and not found.startswith(BATCH_JOB_PREFIX) else None


def draw_job_map(data: st.DataObject, tx_id: str) -> Any:
    kind = data.draw(st.sampled_from(["valid", "mutated", "bad_tx_id", "junk"]))
    if kind == "junk":
        return data.draw(VALUES)
    job = job_map(tx_id, "hello", data.draw(st.sampled_from(["hello", "nope"])))
    if kind == "mutated":
        for name in data.draw(st.sets(st.sampled_from(JOB_FIELDS), min_size=1, max_size=3)):
            if data.draw(st.booleans()):
                job.pop(name, None)
            else:
                job[name] = data.draw(VALUES)
    elif kind == "bad_tx_id":
        job["tx_id"] = data.draw(BAD_TX_IDS)
    return job


def draw_envelope(data: st.DataObject, function: str, args: list[Any],
                  batch: bool = False) -> dict[Any, Any]:
    """arq's job map; half the time with one to three fields mangled or dropped (a
    batch keeps its function and its list of job maps, maybe with an argument more)."""
    env: dict[Any, Any] = {"t": 1, "f": function, "a": args, "k": {},
                           "et": int(time.time() * 1000)}
    if data.draw(st.booleans()):
        names = ["t", "k", "et", "a", *([] if batch else ["f"])]
        for name in data.draw(st.sets(st.sampled_from(names), min_size=1, max_size=3)):
            if name == "a" and (batch or data.draw(st.booleans())):
                env["a"] = [*args, data.draw(VALUES)]
            elif data.draw(st.booleans()):
                del env[name]
            else:
                env[name] = data.draw(FUNCTIONS if name == "f" else VALUES)
    return env


def pack(value: Any) -> bytes:
    return bytes(msgpack.packb(value, use_bin_type=True))


def test_whatever_is_enqueued_every_tx_id_ends_with_exactly_one_result(
    farm: FaultFarm,
) -> None:
    farm.test_hooks = False  # no job map may make an executor sleep
    worker = farm.start_worker(executors=1)
    r = redis.Redis.from_url(farm.redis.url)
    deploy(r, farm.prefix, "hello", wasm())
    serial = itertools.count()
    every: list[str] = []

    def fresh() -> str:
        return f"{farm.prefix}-fz{next(serial)}"

    # No shrinking: every failing example costs the wait's timeout, and the report
    # already lists what was drawn.
    @settings(max_examples=40, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        jobs: list[tuple[str, bytes]] = []  # (job id, payload)
        members: list[bytes] = []  # queue members that are no job id
        expected: list[str] = []
        for _ in range(data.draw(st.integers(1, 5), label="jobs")):
            kind = data.draw(st.sampled_from(["bytes", "value", "single", "batch", "member"]))
            if kind == "member":  # no job id at all: it must just go away
                members.append(b"\xff" + data.draw(st.binary(max_size=8)))
                continue
            if kind == "batch":
                items = [draw_job_map(data, fresh()) for _ in range(data.draw(st.integers(0, 5)))]
                batch = pack(draw_envelope(data, FN_BATCH, [items], batch=True))
                jobs.append((f"{BATCH_JOB_PREFIX}{farm.prefix}:fz{next(serial)}", batch))
                expected += [t for item in items if (t := usable(tx_id_of(item)))]
                continue
            job_id = fresh()
            expected.append(job_id)
            if kind == "bytes":
                jobs.append((job_id, data.draw(st.binary(max_size=40))))
            elif kind == "value":
                jobs.append((job_id, pack(data.draw(VALUES))))
            else:
                arg = draw_job_map(data, job_id)
                if isinstance(arg, dict) and usable(arg.get("tx_id")):
                    arg["tx_id"] = job_id  # a job map names its own job's id, or none
                args = data.draw(st.sampled_from([[arg], [arg, arg], []]))
                jobs.append((job_id, pack(draw_envelope(data, data.draw(FUNCTIONS), args))))
        for member in members:
            r.zadd(farm.queue, {member: int(time.time() * 1000)})
        for job_id, payload in jobs:
            enqueue_raw(r, farm.prefix, farm.queue, job_id, payload)
        wait_results(r, farm.prefix, expected, timeout_s=20)
        counts = fee_counts(r, farm.keys)
        assert {t: counts[t] for t in expected} == dict.fromkeys(expected, 1)
        assert worker.proc.poll() is None, worker.log()[-3000:]
        every.extend(expected)

    try:
        check()
        assert every, "no example named a tx id"
        # The worker is whole: a plain job still runs.
        last = fresh()
        enqueue(r, farm.prefix, farm.queue, FN_EXECUTE, [job_map(last, "hello", "hello")], last)
        assert wait_results(r, farm.prefix, [last])[last]["status"] == "ok"
        assert_no_tracebacks([worker])
    finally:
        r.close()

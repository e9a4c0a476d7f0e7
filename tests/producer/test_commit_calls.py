"""Committing transactions whose cross-contract calls (ABI 1.1) touch several contracts:
reads validated and writes applied per contract, stale ones re-executed, the state root
exact, the end state the sequential one."""

from __future__ import annotations

import random

import redis

from engine import MemoryCode, MemoryState, WasmEngine
from producer.client import FarmClient
from tests.engine.test_calls import BANK, PROXY, fwd_input
from tests.producer.test_commit import execute_against_committed, farm  # noqa: F401
from tests.support.contracts import wasm
from tests.support.state import assert_root_exact
from worker.protocol import decode_state


async def test_a_block_of_calls_commits_to_the_sequential_state(farm: FarmClient) -> None:  # noqa: F811
    await farm.deploy(wasm(PROXY), "proxy")
    await farm.deploy(wasm(BANK), "bank")
    rng = random.Random(7)
    jobs = []
    for i in range(40):  # every other tx reads what the one before it wrote through a call
        function, data = ("put", f"v{i}".encode()) if i % 2 == 0 else ("get", b"")
        if rng.random() < 0.2:
            function = "fail"
        jobs.append(farm.make_job("proxy", "fwd", fwd_input("bank", function, data),
                                  tx_id=f"call-{i}", fee_limit=10_000_000))
    results = execute_against_committed(farm, jobs)
    assert any(r.call_write_sets for r in results.values())
    report = await farm.commit_block(jobs, results, height=1)
    assert report.committed == 40 and report.reexecuted > 0
    # the reference: one tx after another, every contract's ok writes applied
    engine = WasmEngine(farm.settings)
    state, codes = MemoryState(), MemoryCode()
    codes.deploy("proxy", wasm(PROXY))
    codes.deploy("bank", wasm(BANK))
    try:
        for job in jobs:
            r = engine.execute(job, state, codes)
            if r.status == "ok":
                for contract, writes in r.writes_by_contract(job.contract).items():
                    state.apply(contract, writes)
            final = report.results[job.tx_id]
            assert (final.return_data, final.call_write_sets) == (
                r.return_data, r.call_write_sets), job.tx_id
    finally:
        engine.shutdown()
    client = redis.Redis.from_url(farm.url)
    try:
        committed = {k: decode_state(v)[0] for k, v in
                     client.hgetall(farm.keys.state("bank")).items()}
        assert committed == {k: v for k, (v, _) in state.data["bank"].items()}
        assert_root_exact(client, farm.keys)
    finally:
        client.close()


async def test_a_removal_read_back_by_a_later_frame_commits(farm: FarmClient) -> None:  # noqa: F811
    """Its read of the removed key carries the committed version: the commit finds it
    current, not stale for ever."""
    from tests.engine.test_calls import GONE

    await farm.deploy(wasm(PROXY), "proxy")
    await farm.deploy(wasm(BANK), "bank")
    await farm.deploy(wasm(GONE), "gone")
    put = farm.make_job("proxy", "fwd", fwd_input("bank", "put", b"v"), tx_id="g-put")
    report = await farm.commit_block([put], execute_against_committed(farm, [put]), height=1)
    assert report.committed == 1
    gone = farm.make_job("gone", "run", tx_id="g-gone")
    results = execute_against_committed(farm, [gone])
    assert results["g-gone"].call_read_sets == {"bank": {b"k": 1}}
    report = await farm.commit_block([gone], results, height=2)
    assert report.committed == 1 and report.reexecuted == 0
    client = redis.Redis.from_url(farm.url)
    try:
        assert client.hget(farm.keys.state("bank"), b"k") is None
        assert_root_exact(client, farm.keys)
    finally:
        client.close()

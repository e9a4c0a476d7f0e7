"""Block commit: results applied in block order, stale txs re-executed, so a
block executed in parallel ends in the state sequential execution gives."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from config import Settings, load_settings
from engine import MemoryCode, MemoryState, WasmEngine
from engine.model import FeeReport, Job, Result, unpack
from producer.block import Tx, dump_block
from producer.client import FarmClient
from producer.committed_state import (
    RedisState,
    memory_state_root,
    redis_state_root,
    state_root_of,
    write_genesis,
)
from producer.errors import CommitError
from tests.support import CONTRACTS
from tests.support.farm import two_worker_farm
from tests.support.state import assert_root_exact
from worker.protocol import decode_state, encode_state

TOKEN = (CONTRACTS / "token" / "token.wasm").read_bytes()
COUNTER = (CONTRACTS / "counter" / "counter.wasm").read_bytes()


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def settings_for(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    prefix = f"{key_prefix}-cm-{uuid.uuid4().hex[:8]}"
    return load_settings(redis_url=redis_url, key_prefix=prefix, queue_name=f"{prefix}:q",
                         cache_dir=tmp_path / "cache")


@pytest.fixture()
async def farm(redis_url: str, key_prefix: str, tmp_path: Path) -> AsyncIterator[FarmClient]:
    async with FarmClient(settings_for(redis_url, key_prefix, tmp_path)) as client:
        yield client


def execute_against_committed(farm: FarmClient, jobs: list[Job]) -> dict[str, Result]:
    """What the farm would return: every tx executed against the pre-block state."""
    state = RedisState(redis.Redis.from_url(farm.url), farm.keys)
    return {j.tx_id: farm.engine.execute(j, state, state) for j in jobs}


def sequential(settings: Settings, genesis: list[Job], block: list[Job],
               contract: str, code: bytes) -> tuple[MemoryState, list[Result]]:
    """The reference: one engine, one tx after another, each ok write set applied."""
    engine = WasmEngine(settings)
    state, codes = MemoryState(), MemoryCode()
    codes.deploy(contract, code)
    results = []
    try:
        for job in genesis + block:
            result = engine.execute(job, state, codes)
            if result.status == "ok" and result.write_set:
                state.apply(contract, result.write_set)
            results.append(result)
    finally:
        engine.shutdown()
    return state, results[len(genesis):]


async def test_200_counter_increments_all_conflicting_commit_to_200(farm: FarmClient) -> None:
    await farm.deploy(COUNTER, "ctr")
    jobs = [farm.make_job("ctr", "incr", tx_id=f"inc-{i}") for i in range(200)]
    results = execute_against_committed(farm, jobs)
    assert {r.return_data for r in results.values()} == {u64(1)}  # all read count = 0
    report = await farm.commit_block(jobs, results, height=1)
    assert (report.committed, report.reexecuted, report.not_committed) == (200, 199, {})
    value, _version = await farm.state("ctr", b"count") or (b"", 0)
    assert value == u64(200)
    assert report.results["inc-199"].return_data == u64(200)
    record = unpack(await farm.redis.get(farm.keys.block(1)))
    assert record["reexecuted"] == 199 and record["txs"] == 200
    assert record["fees"]["total"] == sum(r.fee.used for r in report.results.values())
    assert record["state_root"] == report.state_root
    with pytest.raises(CommitError, match="already committed"):
        await farm.commit_block(jobs, results, height=1)


async def test_a_commit_resumed_after_a_crash_applies_nothing_twice(farm: FarmClient) -> None:
    await farm.deploy(COUNTER, "ctr")
    jobs = [farm.make_job("ctr", "incr", tx_id=f"r-{i}") for i in range(10)]
    results = execute_against_committed(farm, jobs)
    await farm.commit_block(jobs, results, height=3)
    await farm.redis.delete(farm.keys.block(3))  # as if the commit died before its record
    report = await farm.commit_block(jobs, results, height=3)
    assert report.committed == 10
    assert (await farm.state("ctr", b"count") or (b"",))[0] == u64(10)


async def test_a_write_from_outside_the_block_makes_a_tx_stale(farm: FarmClient) -> None:
    await farm.deploy(COUNTER, "ctr")
    [job] = [farm.make_job("ctr", "incr", tx_id="outside")]
    results = execute_against_committed(farm, [job])
    client = redis.Redis.from_url(farm.url)
    write_genesis(client, farm.keys, "ctr", {b"count": u64(41)})  # lands after execution
    client.close()
    report = await farm.commit_block([job], results, height=1)
    assert report.reexecuted == 1
    assert report.results["outside"].return_data == u64(42)
    assert (await farm.state("ctr", b"count") or (b"",))[0] == u64(42)


async def test_timeouts_and_missing_results_are_reported_not_committed(
    farm: FarmClient,
) -> None:
    await farm.deploy(COUNTER, "ctr")
    jobs = [farm.make_job("ctr", "incr", tx_id=f"t-{i}") for i in range(3)]
    results = execute_against_committed(farm, jobs)
    results["t-0"].status = "timeout"
    del results["t-2"]
    report = await farm.commit_block(jobs, results, height=9)
    assert report.not_committed == {"t-0": "timeout", "t-2": "missing"}
    assert report.committed == 1 and report.by_status == {"ok": 1, "timeout": 1, "missing": 1}
    assert (await farm.state("ctr", b"count") or (b"",))[0] == u64(1)


async def test_reverted_txs_are_charged_but_write_nothing(farm: FarmClient) -> None:
    await farm.deploy(TOKEN, "tok")
    mint = farm.make_job("tok", "mint", u64(5) + b"a", caller="a", tx_id="m")
    spend = farm.make_job("tok", "transfer", u64(3) + b"b", caller="a", tx_id="s")
    results = execute_against_committed(farm, [mint, spend])
    assert results["s"].status == "reverted"  # executed before the mint was committed
    report = await farm.commit_block([mint, spend], results, height=1)
    assert report.results["s"].status == "ok"  # re-executed after the mint: funds there
    assert report.fee_by_sender == {"a": report.fee_total}
    balances = [await farm.state("tok", k) for k in (b"bal:a", b"bal:b")]
    assert [b[0] if b else None for b in balances] == [u64(2), u64(3)]


# -- the farm: 2,000 transfers among 50 accounts, two workers, against sequential ----------


def token_blocks(accounts: int, txs: int, tag: str) -> tuple[list[Tx], list[Tx]]:
    rng = random.Random(4)
    names = [f"a{i:02d}" for i in range(accounts)]
    mints = [Tx(f"{tag}-m{i}", "tok", "mint", u64(rng.randint(100, 2_000)) + n.encode(),
                1_000_000, "genesis") for i, n in enumerate(names)]
    transfers = []
    for i in range(txs):
        src, dst = rng.sample(names, 2)
        amount = rng.choice([rng.randint(1, 200), rng.randint(1, 200), 10**9])
        fee = 3_000 if i % 50 == 7 else 1_000_000  # some out_of_fee
        transfers.append(Tx(f"{tag}-x{i}", "tok", "transfer", u64(amount) + dst.encode(), fee,
                            src))
    return mints, transfers


async def test_a_2000_transfer_block_on_two_workers_commits_to_the_sequential_state(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    with two_worker_farm(redis_url, key_prefix, tmp_path) as env:
        settings = env.settings()
        mints, transfers = token_blocks(50, 2000, env.prefix)
        genesis = [tx.job(1, 1_000, settings.default_fee_limit) for tx in mints]
        block = [tx.job(2, 2_000, settings.default_fee_limit) for tx in transfers]
        async with FarmClient(settings) as farm:
            await farm.deploy(TOKEN, "tok", precompile=True)
            await farm.submit_batch(genesis, batch_size=8)
            g = await farm.commit_block(genesis, await farm.wait([j.tx_id for j in genesis],
                                                                 timeout=120), 1)
            assert g.reexecuted == 49  # every mint updates `supply`
            await farm.submit_batch(block, batch_size=32)
            done = await farm.wait([j.tx_id for j in block], timeout=300)
            report = await farm.commit_block(block, done, 2)
            client = redis.Redis.from_url(farm.url)
            digest = redis_state_root(client, farm.keys)
            assert_root_exact(client, farm.keys)  # kept block by block, not rebuilt
            client.close()
            committed = {}
            for key in [b"supply"] + [f"bal:a{i:02d}".encode() for i in range(50)]:
                found = await farm.state("tok", key)
                if found is not None:
                    committed[key] = found[0]

        state, expected = sequential(settings, genesis, block, "tok", TOKEN)
        assert report.committed == 2000 and not report.not_committed
        assert report.reexecuted > 0  # many conflicts
        assert digest == report.state_root == memory_state_root(state)
        assert committed == {k: v for k, (v, _ver) in state.data["tok"].items()}
        got = [report.results[j.tx_id] for j in block]
        assert [(r.status, r.return_data, r.fee.used) for r in got] == [
            (r.status, r.return_data, r.fee.used) for r in expected
        ]
        statuses = {r.status for r in got}
        assert {"ok", "reverted", "out_of_fee"} <= statuses
        assert report.fee_total == sum(r.fee.used for r in expected)

        # The CLI: `wesfarm submit --commit` on a further block, then `wesfarm state`.
        more = [Tx(f"{env.prefix}-cli{i}", "tok", "transfer", u64(150) + b"a01", None, "a00")
                for i in range(5)]
        path = tmp_path / "more.jsonl"
        path.write_text(dump_block(more))
        proc = env.cli("submit", str(path), "--commit", "--height", "3")
        assert proc.returncode == 0, proc.stderr
        assert "committed block 3: 5/5 txs" in proc.stdout
        shown = env.cli("state", "tok", b"bal:a01".hex(), "--json")
        assert shown.returncode == 0, shown.stderr
        later = [t.job(3, 0, settings.default_fee_limit) for t in more]
        state, _ = sequential(settings, genesis + block, later, "tok", TOKEN)
        want = state.get("tok", b"bal:a01")
        assert want is not None and json.loads(shown.stdout)["value"] == want[0].hex()


@pytest.mark.parametrize("size", [0, 5, 300, 70_000])
async def test_commit_reads_versions_of_values_of_every_size(farm: FarmClient, size: int) -> None:
    client = redis.Redis.from_url(farm.url)
    version = write_genesis(client, farm.keys, "c", {b"k": b"\xab" * size})
    client.close()
    fee = FeeReport(10, 1, {}, "wes-fee-test")
    job = farm.make_job("c", "f", tx_id="syn")
    synthetic = Result("syn", "ok", fee, read_set={b"k": version},
                       write_set={b"k": b"\xcd" * size, b"gone": None})
    report = await farm.commit_block([job], {"syn": synthetic}, height=1)
    assert report.reexecuted == 0 and report.committed == 1
    assert await farm.state("c", b"k") == (b"\xcd" * size, version + 1)


async def test_the_state_root_is_built_from_the_registry_once_and_then_kept_exact(
    farm: FarmClient,
) -> None:
    """A farm from before roots (and before the registry): the first root is built from
    the hashes the registry names, completed once by a SCAN; from then on every write
    moves it, and it stays the root of the whole state."""
    await farm.deploy(TOKEN, "tok")
    mint = farm.make_job("tok", "mint", u64(5) + b"a", caller="a", tx_id="reg-m")
    await farm.commit_block([mint], execute_against_committed(farm, [mint]), height=1)
    client = redis.Redis.from_url(farm.url)
    try:
        client.hset(farm.keys.state("old"), b"k", encode_state(b"v", 1))  # from before it
        client.srem(farm.keys.contracts, b"")  # not known to be complete
        client.delete(farm.keys.root)  # nor the root
        scanned = state_root_of(
            (name.decode().rsplit(":", 1)[1], bytes(k), decode_state(raw)[0])
            for name in client.scan_iter(match=f"{farm.keys.state('')}*", _type="hash")
            for k, raw in client.hgetall(name).items())
        assert redis_state_root(client, farm.keys) == scanned
        assert client.sismember(farm.keys.contracts, b"")
        assert client.sismember(farm.keys.contracts, farm.keys.state("old"))
        write_genesis(client, farm.keys, "new", {b"n": b"1"})
        write_genesis(client, farm.keys, "old", {b"k": b"w"})  # replaces a value
        assert client.sismember(farm.keys.contracts, farm.keys.state("new"))
        assert redis_state_root(client, farm.keys) != scanned
        assert_root_exact(client, farm.keys)
    finally:
        client.close()


async def test_the_root_follows_a_run_that_creates_overwrites_deletes_and_recreates(
    farm: FarmClient,
) -> None:
    """One script call's writes to one key cancel out but for the first and the last: the
    root the commit keeps is still the root of the state it leaves."""
    client = redis.Redis.from_url(farm.url)
    try:
        write_genesis(client, farm.keys, "c", {b"keep": b"1", b"drop": b"2"})
        fee = FeeReport(10, 1, {}, "wes-fee-test")
        steps: list[dict[bytes, bytes | None]] = [
            {b"new": b"a"}, {b"new": b"b", b"drop": None}, {b"new": None},
            {b"new": b"c", b"keep": b"1"}, {b"drop": b"3"}, {b"gone": None},
        ]
        jobs = [farm.make_job("c", "f", tx_id=f"run-{i}") for i in range(len(steps))]
        results = {j.tx_id: Result(j.tx_id, "ok", fee, write_set=w)
                   for j, w in zip(jobs, steps, strict=True)}
        report = await farm.commit_block(jobs, results, height=1)
        assert report.committed == len(steps) and report.reexecuted == 0
        assert await farm.state("c", b"new") is not None
        assert_root_exact(client, farm.keys)
    finally:
        client.close()


async def test_a_tx_id_commits_once_whatever_block_names_it_again(farm: FarmClient) -> None:
    await farm.deploy(COUNTER, "once")
    jobs = [farm.make_job("once", "incr", tx_id=f"once-{i}") for i in range(3)]
    first = await farm.commit_block(jobs[:2], execute_against_committed(farm, jobs[:2]), 1)
    assert first.committed == 2
    # block 2 names one of them again, beside a new one
    again = [jobs[1], jobs[2]]
    second = await farm.commit_block(again, execute_against_committed(farm, again), 2)
    assert second.committed == 1 and second.by_status == {"already_committed": 1, "ok": 1}
    assert second.not_committed == {"once-1": "committed in block 1"}
    raw = redis.Redis.from_url(farm.url).hget(farm.keys.state("once"), b"count")
    assert raw is not None and decode_state(raw)[0] == u64(3)  # 2 + 1, not 4


def test_the_commits_view_takes_no_address_record_but_a_code_hash_for_a_contract(
        redis_url: str, key_prefix: str) -> None:
    """As the farm's executors do (worker/sources.py): a record like "../../x" named a file
    outside the artifact cache when the commit ran the tx itself."""
    from worker.protocol import Keys

    client = redis.Redis.from_url(redis_url)
    keys = Keys(f"{key_prefix}:commit-addr")
    view = RedisState(client, keys)
    try:
        for bad in ("../../victim", "AB" * 32, "x"):
            client.set(keys.address("c"), bad)
            assert view.code_hash("c") is None
        client.set(keys.address("c"), "ab" * 32)
        assert view.code_hash("c") == "ab" * 32
    finally:
        client.delete(keys.address("c"))
        client.close()

"""Declared writes (Job.writes): a tx touching a key an earlier tx of its block may write
is left to the commit, which runs it in block order; the block still ends in the state
sequential execution gives, and every tx still ends with one Result and one fee record."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from engine.model import Job
from producer.block import Tx, dump_block
from producer.client import FarmClient
from producer.committed_state import memory_state_root, redis_state_root
from producer.schedule import FARM_MIN_TXS, commit_runs, farm_jobs
from tests.producer.test_commit import TOKEN, sequential, token_blocks, u64
from tests.producer.test_commit_resume import declared
from tests.support.farm import two_worker_farm
from tests.support.state import assert_root_exact


def job(tx_id: str, access: tuple[bytes, ...] = (), writes: tuple[bytes, ...] = (),
        contract: str = "c") -> Job:
    return Job(tx_id, contract, "f", access=access, writes=writes)


def test_a_tx_goes_to_the_commit_only_after_a_declared_write_of_what_it_touches() -> None:
    block = [
        job("w1", writes=(b"k",)),  # first writer of k: the farm
        job("r1", access=(b"k",)),  # reads what w1 may write: the commit
        job("w2", writes=(b"k",)),  # writes it again after w1: the commit
        job("ro1", access=(b"cfg",)),  # a key only ever read: the farm, however many
        job("ro2", access=(b"cfg",)),
        job("other", access=(b"k",), contract="d"),  # the same key of another contract
        job("plain"),  # declares nothing: the farm, as ever
        job("w3", access=(b"j",), writes=(b"j",)),
        job("r3", access=(b"j", b"cfg")),
        *(job(f"more{i}") for i in range(FARM_MIN_TXS - 6)),
    ]
    assert commit_runs(block) == {"r1", "w2", "r3"}
    assert [j.tx_id for j in farm_jobs(block)][:6] == ["w1", "ro1", "ro2", "other", "plain",
                                                       "w3"]
    # fewer than FARM_MIN_TXS left for the farm: not worth a part, the commit runs them all
    assert commit_runs(block[:-1]) == {j.tx_id for j in block[:-1]}
    assert farm_jobs(block[:-1]) == []
    # nothing follows a declared write: the farm, however few
    assert commit_runs([job("a", writes=(b"x",)), job("b", writes=(b"y",))]) == set()


async def test_a_hot_block_is_run_by_the_commit_and_ends_in_the_sequential_state(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    with two_worker_farm(redis_url, key_prefix, tmp_path) as env:
        settings = env.settings()
        txs = token_blocks(6, 300, env.prefix)
        mints = [tx.job(1, 1_000, settings.default_fee_limit) for tx in txs[0]]
        block = declared([tx.job(2, 2_000, settings.default_fee_limit) for tx in txs[1]])
        async with FarmClient(settings) as farm:
            await farm.deploy(TOKEN, "tok", precompile=True)
            await farm.submit_batch(mints)
            await farm.commit_block(mints, await farm.wait([j.tx_id for j in mints],
                                                           timeout=120), 1)
            sent = await farm.submit_block(block)
            ours = commit_runs(block)
            assert sent == [j.tx_id for j in block if j.tx_id not in ours]
            assert len(ours) == 300  # six hot accounts: too few txs left for a part
            done = await farm.wait(sent, timeout=120)
            assert not (await farm.have_results(sorted(ours)))  # the farm never ran them
            report = await farm.commit_block(block, done, 2)
            stored = await farm.results([j.tx_id for j in block])
            fees = await farm.fee_reports()
            client = redis.Redis.from_url(farm.url)
            root = redis_state_root(client, farm.keys)
            assert_root_exact(client, farm.keys)
            client.close()

        state, expected = sequential(settings, mints, block, "tok", TOKEN)
        assert report.committed == 300 and not report.not_committed
        assert root == report.state_root == memory_state_root(state)
        got = [report.results[j.tx_id] for j in block]
        assert [(r.status, r.return_data, r.fee.used) for r in got] == [
            (r.status, r.return_data, r.fee.used) for r in expected]
        assert {"ok", "reverted", "out_of_fee"} <= {r.status for r in got}
        for tx_id in ours:  # the commit wrote what a worker writes: its committed Result
            found = stored[tx_id]
            assert found is not None and found.worker == "commit"
            assert found.consensus_bytes() == report.results[tx_id].consensus_bytes()
        per_tx = [e.tx_id for e in fees if e.tx_id.startswith(f"{env.prefix}-x")]
        assert sorted(per_tx) == sorted(j.tx_id for j in block)  # one fee record each

        # The CLI: `wesfarm submit --commit --json` on a block file declaring its writes
        # prints every tx's committed Result, the commit's own ones included, then the record.
        more = [Tx(f"{env.prefix}-cli{i}", "tok", "transfer", u64(7) + b"a01", None, "a00",
                   (b"bal:a00", b"bal:a01"), (b"bal:a00", b"bal:a01")) for i in range(4)]
        path = tmp_path / "hot.jsonl"
        path.write_text(dump_block(more))
        proc = env.cli("submit", str(path), "--commit", "--json", "--height", "3")
        assert proc.returncode == 0, proc.stderr
        *lines, record = [json.loads(line) for line in proc.stdout.splitlines()]
        assert [r["tx_id"] for r in lines] == [t.tx_id for t in more]
        assert [r["worker"] for r in lines] == ["commit"] * 4  # all of it: too few for a part
        assert record["committed"] == 4 and record["reexecuted"] == 4


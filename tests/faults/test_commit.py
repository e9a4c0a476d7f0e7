"""A producer killed mid-commit (SIGKILL of `wesfarm submit --commit`), then run again:
the block record it stores is byte for byte the record an uninterrupted commit of the
same block stores on another key prefix with the same genesis (issue 11, item 7)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
import redis

from producer.block import Tx, dump_block
from producer.client import FarmClient
from producer.committed_state import redis_state_root
from tests.faults.support import FaultFarm, until
from tests.producer.test_commit import TOKEN, token_blocks
from tests.support.state import assert_root_exact

pytestmark = [pytest.mark.slow, pytest.mark.integration]
HEIGHT, BLOCK_TIME = 2, 2_000


async def genesis(farm: FaultFarm, whole: FaultFarm, mints: list[Tx]) -> None:
    """The token and its mints on both prefixes: executed once, on the farm, and the same
    results committed on each."""
    async with FarmClient(farm.settings()) as cut, FarmClient(whole.settings()) as ref:
        for client in (cut, ref):
            await client.deploy(TOKEN, "tok", precompile=client is cut)
        jobs = [tx.job(1, 1_000, cut.settings.default_fee_limit) for tx in mints]
        await cut.submit_batch(jobs, batch_size=8)
        done = await cut.wait([j.tx_id for j in jobs], timeout=60)
        for client in (cut, ref):
            await client.commit_block(jobs, done, 1)


async def test_a_commit_killed_midway_and_run_again_stores_the_uninterrupted_record(
    farm: FaultFarm, tmp_path: Path
) -> None:
    whole = FaultFarm(farm.redis, tmp_path / "whole")
    farm.start_worker()
    farm.start_worker()
    mints, transfers = token_blocks(40, 3000, farm.prefix)
    await genesis(farm, whole, mints)
    block = tmp_path / "block.jsonl"
    block.write_text(dump_block(transfers))
    args = ("submit", str(block), "--commit", "--height", str(HEIGHT), "--time",
            str(BLOCK_TIME), "--quiet")
    applied = farm.keys.block_applied(HEIGHT)
    with redis.Redis.from_url(farm.redis.url) as r:
        cuts = []
        for at_least in (300, 1500):  # killed twice: early, and again in the resumed run
            def under_way(n: int = at_least) -> bool:
                return int(r.hlen(applied)) >= n

            producer = farm.cli_process(*args)
            try:
                await asyncio.to_thread(until, under_way, "the commit is under way", 120, 0.002)
                os.killpg(producer.pid, signal.SIGKILL)
            finally:
                if producer.poll() is None:
                    producer.kill()
                producer.communicate()
            cuts.append(r.hlen(applied))
            assert cuts[-1] < len(transfers) and r.get(farm.keys.block(HEIGHT)) is None, cuts
        again = farm.cli(*args)
        assert again.returncode == 0, again.stderr
        print(f"\ncommit of {len(transfers)} transfers killed after {cuts} decisions, then "
              f"resumed:\n{again.stdout.strip()}")

        # The reference: the same jobs and farm results, committed in one go.
        async with FarmClient(farm.settings()) as cut, FarmClient(whole.settings()) as ref:
            jobs = [tx.job(HEIGHT, BLOCK_TIME, cut.settings.default_fee_limit)
                    for tx in transfers]
            results = await cut.results([j.tx_id for j in jobs])
            want = await ref.commit_block(jobs, {t: res for t, res in results.items() if res},
                                          HEIGHT)
        assert want.reexecuted > 1000 and not want.not_committed
        stored = r.get(farm.keys.block(HEIGHT))
        assert stored is not None and stored == r.get(whole.keys.block(HEIGHT))
        assert redis_state_root(r, farm.keys) == redis_state_root(r, whole.keys)
        assert_root_exact(r, farm.keys)

"""A commit cut off at any script call (its reply lost or never sent) and run again
writes the record an uninterrupted commit writes, byte for byte, and the same state."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from engine import MemoryState
from engine.model import Context, Job, Result, unpack
from producer import committer
from producer.commit import commit_block
from producer.commit_record import Applied
from producer.committed_state import (
    RedisState,
    memory_state_root,
    redis_state_root,
    write_genesis,
)
from producer.deploy import bind, validate_and_init
from producer.errors import CommitError
from producer.local_engine import LocalEngine
from producer.schedule import commit_runs, farm_jobs
from tests.producer.test_commit import TOKEN, u64
from tests.support.farm import fee_entries
from tests.support.state import assert_root_exact
from worker.protocol import Keys, stored_results_sync


class Cut(redis.Redis):
    """A real client whose `cut`-th script call fails: before Redis runs it, or after
    (the reply lost on the way back)."""

    def __init__(self, url: str, cut: int, after: bool) -> None:
        super().__init__(connection_pool=redis.ConnectionPool.from_url(url))
        self.calls, self.cut, self.after = 0, cut, after

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.cut and not self.after:
            raise redis.ConnectionError("cut before the script ran")
        reply = super().evalsha(*args, **kwargs)
        if self.calls == self.cut:
            raise redis.ConnectionError("cut after the script ran")
        return reply


def block(n: int, accounts: int) -> tuple[list[Job], list[Job]]:
    rng = random.Random(11)
    names = [f"a{i:03d}" for i in range(accounts)]
    mints = [Job(f"m{i}", "tok", "mint", u64(1_000) + name.encode(), 10**9)
             for i, name in enumerate(names)]
    txs = []
    for i in range(n):
        src, dst = rng.sample(names, 2)
        amount = rng.choice([rng.randint(1, 300), 10**9])
        txs.append(Job(f"x{i}", "tok", "transfer", u64(amount) + dst.encode(),
                       3_000 if i % 37 == 5 else 10**9, Context(caller=src)))
    return mints, txs


def fresh_farm(redis_url: str, key_prefix: str, local: LocalEngine, mints: list[Job]) -> Keys:
    """A new key prefix (under the test's, so cleaned up) with the token deployed and
    the mints committed."""
    keys = Keys(f"{key_prefix}-rs-{uuid.uuid4().hex[:8]}")

    async def deploy() -> None:
        client = Redis.from_url(redis_url)
        try:
            init = validate_and_init(local, TOKEN, "tok", "", 10**9)
            await bind(client, keys, TOKEN, hashlib.sha256(TOKEN).hexdigest(), "tok", init)
        finally:
            await client.aclose()

    asyncio.run(deploy())
    with redis.Redis.from_url(redis_url) as client:
        state = RedisState(client, keys)
        commit_block(client, keys, local, mints,
                     {j.tx_id: local.execute(j, state, state) for j in mints}, 1)
    return keys


def declared(txs: list[Job]) -> list[Job]:
    """The transfers declaring their two balance keys as read and written."""
    out = []
    for job in txs:
        keys = (b"bal:" + job.context.caller.encode(), b"bal:" + job.input[8:])
        out.append(dataclasses.replace(job, access=keys, writes=keys))
    return out


@pytest.mark.parametrize("declare", [False, True], ids=["farm_results", "declared_writes"])
@pytest.mark.parametrize("after", [False, True], ids=["never_ran", "reply_lost"])
def test_a_resumed_commit_writes_the_uninterrupted_record(
    redis_url: str, key_prefix: str, local: LocalEngine, after: bool, declare: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With declared writes, most txs are the commit's to run (and to write the Results
    of): a cut may land on those writes too."""
    monkeypatch.setattr(committer, "TXS_PER_SCRIPT", 16)  # many script calls to cut at
    mints, txs = block(600, 40)
    if declare:
        txs = declared(txs)
    whole = fresh_farm(redis_url, key_prefix, local, mints)
    cut = fresh_farm(redis_url, key_prefix, local, mints)
    with redis.Redis.from_url(redis_url) as client:
        # Results as the farm gives them: all against the pre-block state, so many
        # transfers are stale and re-executed at commit.
        state = RedisState(client, whole)
        results = {j.tx_id: local.execute(j, state, state) for j in farm_jobs(txs)}
        want = commit_block(client, whole, local, txs, results, 2)
        assert want.reexecuted > 100 and {"ok", "reverted", "out_of_fee"} <= set(want.by_status)
        for at in (2, 5, 9):
            with Cut(redis_url, at, after) as cutter, pytest.raises(redis.ConnectionError):
                commit_block(cutter, cut, local, txs, results, 2)
        got = commit_block(client, cut, local, txs, results, 2)
        assert client.get(cut.block(2)) == client.get(whole.block(2))
        assert got.record() == want.record()
        assert redis_state_root(client, cut) == redis_state_root(client, whole)
        assert_root_exact(client, cut)  # a resumed commit keeps the root exact too
        assert {t: r.consensus_bytes() for t, r in got.results.items()} == {
            t: r.consensus_bytes() for t, r in want.results.items()}
        ours = sorted(commit_runs(txs))
        assert len(ours) > 400 if declare else not ours
        stored = stored_results_sync(client, cut.prefix, 0, ours).results  # written once
        assert [Result.from_wire(unpack(stored[t])).consensus_bytes() for t in ours] == [
            want.results[t].consensus_bytes() for t in ours]
        assert sorted(e.tx_id for e in fee_entries(client, cut.prefix)) == ours
        with pytest.raises(CommitError, match="already committed"):
            commit_block(client, cut, local, txs, results, 2)
        # The retry of a commit whose last reply was lost: the stored record, rebuilt.
        again = commit_block(client, cut, local, txs, results, 2, resume=True)
        assert again.record() == want.record()


class Before(redis.Redis):
    """A real client that runs `act` just before its `at`-th script call (another writer,
    another commit: between the commit's reads and its script)."""

    def __init__(self, url: str, at: int, act: Callable[[], Any]) -> None:
        super().__init__(connection_pool=redis.ConnectionPool.from_url(url))
        self.at, self.act, self.calls = at, act, 0

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            self.act()
        return super().evalsha(*args, **kwargs)


def test_a_write_landing_inside_the_commit_applies_nothing_of_its_run(
    redis_url: str, key_prefix: str, local: LocalEngine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 3rd run's first sender is given a new balance after the commit read the
    state: that run's check fails, nothing of it is applied, and it is decided again on
    the state as it now is: the block ends where sequential execution with that write
    between the 2nd and 3rd runs ends."""
    monkeypatch.setattr(committer, "TXS_PER_SCRIPT", 16)
    mints, txs = block(80, 6)
    keys = fresh_farm(redis_url, key_prefix, local, mints)
    outside = {b"bal:" + txs[32].context.caller.encode(): u64(777)}
    reference = MemoryState()
    with redis.Redis.from_url(redis_url) as plain:
        codes = RedisState(plain, keys)
        for job in (*mints, *txs[:32], None, *txs[32:]):
            if job is None:
                reference.apply("tok", dict(outside))
                continue
            result = local.execute(job, reference, codes)
            if result.status == "ok":
                reference.apply("tok", result.write_set)
    with Before(redis_url, 3, lambda: write_genesis(client, keys, "tok", outside)) as client:
        state = RedisState(client, keys)
        results = {j.tx_id: local.execute(j, state, state) for j in txs}
        report = commit_block(client, keys, local, txs, results, 2)
        assert client.calls == 80 // 16 + 1  # the 3rd run went twice
        assert report.committed == 80
        assert redis_state_root(client, keys) == memory_state_root(reference)
        assert_root_exact(client, keys)


def test_a_version_taken_by_another_writer_while_a_run_is_on_its_way_moves_the_rest(
    redis_url: str, key_prefix: str, local: LocalEngine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer takes a version (state of another contract) just before the 2nd
    run's script call, while the 3rd run is decided on the versions the 2nd was to leave:
    the 2nd applies under the versions it got, the 3rd is decided again (its guess never
    sent: no extra call, no failed check), and the block's writing txs hold consecutive
    versions around the outside one."""
    monkeypatch.setattr(committer, "TXS_PER_SCRIPT", 16)
    mints, txs = block(80, 6)
    keys = fresh_farm(redis_url, key_prefix, local, mints)
    taken: list[int] = []
    with redis.Redis.from_url(redis_url) as plain, Before(redis_url, 2, lambda: taken.append(
            write_genesis(plain, keys, "elsewhere", {b"k": b"v"}))) as client:
        state = RedisState(client, keys)
        results = {j.tx_id: local.execute(j, state, state) for j in txs}
        before = int(plain.get(keys.state_seq) or 0)  # type: ignore[arg-type]
        report = commit_block(client, keys, local, txs, results, 2)
        assert client.calls == 80 // 16 and report.committed == 80
        decided = {bytes(t).decode(): Applied.decode(bytes(e)) for t, e in
                   plain.hgetall(keys.block_applied(2)).items()}  # type: ignore[union-attr]
        versions = [decided[j.tx_id].version for j in txs if decided[j.tx_id].version]
        assert len(versions) > 30 and before < taken[0] < versions[-1]
        assert sorted([*versions, *taken]) == list(range(before + 1, versions[-1] + 1))
        assert versions == sorted(versions)
        reference = MemoryState()
        for job in (*mints, *txs):
            result = local.execute(job, reference, state)
            if result.status == "ok":
                reference.apply("tok", result.write_set)
        reference.apply("elsewhere", {b"k": b"v"})
        assert redis_state_root(client, keys) == memory_state_root(reference)
        assert_root_exact(client, keys)

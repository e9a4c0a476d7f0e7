"""A commit beside other writers and other commits, and blocks that try to cheat it: the
state stays the one sequential execution gives, and every tx keeps one Result."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import redis

from engine.model import Context, Job, Result, pack, unpack
from producer.commit import commit_block
from producer.commit_record import CommitReport
from producer.committed_state import RedisState, write_genesis
from producer.errors import CommitError, TxIdReused
from producer.local_engine import LocalEngine
from producer.schedule import commit_runs
from tests.producer.test_commit import u64
from tests.producer.test_commit_resume import Before, Cut, block, declared, fresh_farm
from tests.support.farm import fee_entries, plant_result, stored_result
from worker.protocol import Keys, decode_state, stored_results_sync


def balance(client: redis.Redis, keys: Keys, account: str) -> int | None:
    raw = client.hget(keys.state("tok"), b"bal:" + account.encode())
    return None if raw is None else int.from_bytes(decode_state(raw)[0], "little")  # type: ignore[arg-type]


def transfer(tx_id: str, src: str, dst: str, amount: int) -> Job:
    return Job(tx_id, "tok", "transfer", u64(amount) + dst.encode(), 10**9, Context(src))


def mint(tx_id: str, account: str, amount: int) -> Job:
    return Job(tx_id, "tok", "mint", u64(amount) + account.encode(), 10**9)


def commit_as_alice_is_emptied(redis_url: str, keys: Keys, local: LocalEngine, jobs: list[Job]
                              ) -> tuple[dict[str, Result], CommitReport, int]:
    """The farm's results of `jobs` on the state before the block, then their commit as
    block 2, alice's balance set to 0 by another writer just before its first script
    call: (the farm's results, the report, the script calls made)."""
    with Before(redis_url, 1, lambda: write_genesis(
            redis.Redis.from_url(redis_url), keys, "tok", {b"bal:alice": u64(0)})) as client:
        state = RedisState(client, keys)
        results = {j.tx_id: local.execute(j, state, state) for j in jobs}
        return results, commit_block(client, keys, local, jobs, results, 2), client.calls


def test_a_run_decided_again_forgets_what_it_executed_the_first_time(
    redis_url: str, key_prefix: str, local: LocalEngine,
) -> None:
    """t2's re-execution read alice at the version the run predicted for t1's write; an
    outside write taking exactly that version must not make that stale result current."""
    keys = fresh_farm(redis_url, key_prefix, local, [mint("m", "alice", 100)])
    t1, t2 = transfer("t1", "alice", "bob", 50), transfer("t2", "alice", "carol", 30)
    _, report, _ = commit_as_alice_is_emptied(redis_url, keys, local, [t1, t2])
    assert {t: r.status for t, r in report.results.items()} == {"t1": "reverted",
                                                                 "t2": "reverted"}
    with redis.Redis.from_url(redis_url) as client:
        assert (balance(client, keys, "alice"), balance(client, keys, "carol")) == (0, None)


def test_a_farm_result_current_again_after_a_failed_check_is_not_recorded_as_re_executed(
    redis_url: str, key_prefix: str, local: LocalEngine,
) -> None:
    """x read bob's balance before a1 wrote it, so the first decision re-ran x; an outside
    write then fails a1's check and a1, decided again, reverts and writes nothing: x's
    farm result is current again and stands, as a commit that never saw the first try
    decides it (not as a re-executed result)."""
    keys = fresh_farm(redis_url, key_prefix, local, [mint("m1", "alice", 100),
                                                     mint("m2", "dave", 100)])
    a1, x = transfer("a1", "alice", "bob", 50), transfer("x", "dave", "bob", 1)
    results, report, calls = commit_as_alice_is_emptied(redis_url, keys, local, [a1, x])
    assert calls == 2  # the first try failed its check
    assert report.results["a1"].status == "reverted" and report.reexecuted == 1
    assert report.results["x"].consensus_bytes() == results["x"].consensus_bytes()
    assert "x" not in report.packed
    with redis.Redis.from_url(redis_url) as client:
        assert balance(client, keys, "bob") == 1


def test_a_commit_beside_one_that_ran_the_block_first_takes_its_decisions(
    redis_url: str, key_prefix: str, local: LocalEngine,
) -> None:
    mints, txs = block(200, 10)
    keys = fresh_farm(redis_url, key_prefix, local, mints)
    with redis.Redis.from_url(redis_url) as plain:
        state = RedisState(plain, keys)
        results = {j.tx_id: local.execute(j, state, state) for j in txs}
        first: list[Any] = []
        with Before(redis_url, 1, lambda: first.append(
                commit_block(plain, keys, local, txs, results, 2))) as client:
            second = commit_block(client, keys, local, txs, results, 2, resume=True)
        assert client.calls == 1  # every decision taken at once, none re-run
        assert second.record() == first[0].record()


def test_a_tx_id_twice_in_a_block_is_refused(
    redis_url: str, key_prefix: str, local: LocalEngine,
) -> None:
    keys = fresh_farm(redis_url, key_prefix, local, [mint("m", "alice", 100)])
    t = transfer("t", "alice", "bob", 10)
    with redis.Redis.from_url(redis_url) as client:
        state = RedisState(client, keys)
        with pytest.raises(CommitError, match="appears twice"):
            commit_block(client, keys, local, [t, t], {"t": local.execute(t, state, state)}, 2)
        assert balance(client, keys, "bob") is None


def test_a_tx_the_commit_would_run_keeps_the_result_stored_under_its_id(
    redis_url: str, key_prefix: str, local: LocalEngine,
) -> None:
    """Another job's Result under the id is refused, as on the farm path; the job's own
    (a timeout, say) counts as the farm's result: not committed, whoever would run it."""
    keys = fresh_farm(redis_url, key_prefix, local, [mint("m", "alice", 100)])
    [k1, k2] = declared([transfer("k1", "alice", "bob", 1), transfer("k2", "alice", "carol", 2)])
    assert commit_runs([k1, k2]) == {"k1", "k2"}  # (too few for the farm: the commit runs both)
    with redis.Redis.from_url(redis_url) as client:
        state = RedisState(client, keys)
        farm = {"k1": local.execute(k1, state, state)}
        other = local.execute(dataclasses.replace(k2, input=u64(9) + b"dave"), state, state)
        plant_result(client, keys, "k2", pack(other.to_wire()))
        with pytest.raises(TxIdReused):
            commit_block(client, keys, local, [k1, k2], farm, 2)
        timeout = dataclasses.replace(local.execute(k2, state, state), status="timeout")
        plant_result(client, keys, "k2", pack(timeout.to_wire()))
        report = commit_block(client, keys, local, [k1, k2], farm, 2)
        assert report.not_committed == {"k2": "timeout"} and balance(client, keys, "carol") is None


def test_the_results_of_a_run_are_written_with_it_not_at_the_end(
    redis_url: str, key_prefix: str, local: LocalEngine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from producer import committer

    monkeypatch.setattr(committer, "TXS_PER_SCRIPT", 16)
    mints, txs = block(80, 6)
    txs = declared(txs)
    keys = fresh_farm(redis_url, key_prefix, local, mints)
    ours = commit_runs(txs)
    with Cut(redis_url, 3, after=False) as cutter, pytest.raises(redis.ConnectionError):
        commit_block(cutter, keys, local, txs, {}, 2)  # (the first tx has no result: missing)
    with redis.Redis.from_url(redis_url) as client:
        applied = client.hgetall(keys.block_applied(2))
        assert applied  # the first run was applied; each tx it ran has its Result already
        for tx_id in (bytes(t).decode() for t in applied):
            if tx_id in ours:
                raw = stored_result(client, keys, tx_id)
                assert raw is not None and Result.from_wire(unpack(raw)).tx_id == tx_id  # type: ignore[arg-type]


def test_a_result_stored_inside_the_commit_under_a_tx_id_it_runs_stays_first(
    redis_url: str, key_prefix: str, local: LocalEngine,
) -> None:
    """A worker stores k2's Result after the commit looked for one and before the script
    that applies k2's run (which writes the Results of the txs it ran): the script keeps
    the stored one and adds no second fee record, the report notes it, and the block
    record holds the committed Result."""
    keys = fresh_farm(redis_url, key_prefix, local, [mint("m", "alice", 100)])
    [k1, k2] = declared([transfer("k1", "alice", "bob", 1), transfer("k2", "alice", "carol", 2)])
    assert commit_runs([k1, k2]) == {"k1", "k2"}
    with redis.Redis.from_url(redis_url) as plain:
        state = RedisState(plain, keys)
        early = pack(local.execute(k2, state, state).to_wire())  # on the state before k1
        racing = Before(redis_url, 1, lambda: plant_result(plain, keys, "k2", early))
        try:
            report = commit_block(racing, keys, local, [k1, k2], {}, 2, retention=(0, 0))
        finally:
            racing.close()
        assert racing.calls == 1  # one script call applied the run and wrote its Results
        assert report.committed == 2 and balance(plain, keys, "carol") == 2
        assert [n.split(":")[0] for n in report.notes] == ["k2"]
        assert stored_result(plain, keys, "k2") == early
        stored_first = Result.from_wire(unpack(early))
        assert report.results["k2"].consensus_bytes() != stored_first.consensus_bytes()
        raw = stored_result(plain, keys, "k1")
        assert raw is not None and Result.from_wire(unpack(raw)).worker == "commit"
        fees = [e.tx_id for e in fee_entries(plain, keys.prefix)]
        assert fees.count("k1") == 1 and "k2" not in fees


def test_a_resumed_commit_keeps_what_it_decided_whatever_was_stored_since(
    redis_url: str, key_prefix: str, local: LocalEngine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another job's Result lands under k2's id after the commit looked and before k2's
    run (the run's script keeps it and the commit notes it); the connection drops at the
    next run. The resumed commit does not refuse k2 for it: k2 was decided already."""
    from producer import committer

    monkeypatch.setattr(committer, "TXS_PER_SCRIPT", 1)
    keys = fresh_farm(redis_url, key_prefix, local, [mint("m", "alice", 100)])
    ks = declared([transfer("k1", "alice", "bob", 1), transfer("k2", "alice", "carol", 2),
                   transfer("k3", "alice", "dave", 3)])
    with redis.Redis.from_url(redis_url) as plain:
        state = RedisState(plain, keys)
        other = pack(local.execute(dataclasses.replace(ks[1], input=u64(9) + b"eve"), state,
                                   state).to_wire())

        class Intruding(Cut):
            def evalsha(self, *args: Any, **kwargs: Any) -> Any:
                if self.calls == 1:  # before the 2nd script call: k2's run
                    plant_result(plain, keys, "k2", other)
                return super().evalsha(*args, **kwargs)

        with Intruding(redis_url, 3, after=False) as cut, pytest.raises(redis.ConnectionError):
            commit_block(cut, keys, local, ks, {}, 2, retention=(0, 0))
        assert sorted(plain.hkeys(keys.block_applied(2))) == [b"k1", b"k2"]
        report = commit_block(plain, keys, local, ks, {}, 2, resume=True, retention=(0, 0))
        assert report.committed == 3 and balance(plain, keys, "carol") == 2
        assert stored_result(plain, keys, "k2") == other  # the first stored stays
        assert report.results["k2"].worker == "commit"  # the block holds the committed one
        assert [n.split(":")[0] for n in report.notes] == ["k2"]


def test_a_job_naming_the_reserved_address_does_not_stop_its_block(
    redis_url: str, key_prefix: str, local: LocalEngine,
) -> None:
    """`{p}:state:seq` is the version counter, not a state hash: a tx naming contract
    "seq" with an access list is invalid, and its declared key is never read as state."""
    keys = fresh_farm(redis_url, key_prefix, local, [mint("m", "alice", 100)])
    t1 = transfer("t1", "alice", "bob", 5)
    evil = Job("evil", "seq", "f", b"", 10**9, access=(b"x",), writes=(b"x",))
    with redis.Redis.from_url(redis_url) as client:
        state = RedisState(client, keys)
        results = {j.tx_id: local.execute(j, state, state) for j in (t1, evil)}
        assert results["evil"].status == "invalid"
        report = commit_block(client, keys, local, [t1, evil], results, 2)
        assert report.committed == 2 and report.by_status == {"ok": 1, "invalid": 1}
        assert balance(client, keys, "bob") == 5


@pytest.mark.parametrize("ttl", [0, 600])
def test_the_results_the_commit_runs_keep_the_farms_result_ttl(
    redis_url: str, key_prefix: str, local: LocalEngine, ttl: int,
) -> None:
    """A tx the commit ran for the farm gets its Result under the result TTL a worker
    gives (0: kept for good)."""
    keys = fresh_farm(redis_url, key_prefix, local, [mint("m", "alice", 100)])
    ks = declared([transfer("k1", "alice", "bob", 1), transfer("k2", "alice", "carol", 2)])
    assert commit_runs(ks) == {"k1", "k2"}
    with redis.Redis.from_url(redis_url) as client:
        report = commit_block(client, keys, local, ks, {}, 2, retention=(ttl, 0))
        assert report.committed == 2
        lookup = stored_results_sync(client, keys.prefix, ttl, ["k1", "k2"])
        assert set(lookup.results) == {"k1", "k2"}
        for part in lookup.part_ids:
            left = client.ttl(keys.part(part))
            assert (left == -1) if ttl == 0 else (0 < left <= ttl)  # type: ignore[operator]

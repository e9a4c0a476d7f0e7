"""The producer against real worker processes: deploy -> call -> result and one fee
report; a 500-tx batch over two workers; the CLI (call, submit, state)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from producer.block import Tx, dump_block
from producer.client import FarmClient
from producer.errors import TxIdReused
from tests.support import CONTRACTS
from tests.support.farm import Farm, two_worker_farm

TOKEN = CONTRACTS / "token" / "token.wasm"


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


@pytest.fixture(scope="module")
def farm(
    redis_url: str, key_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Farm]:
    with two_worker_farm(redis_url, key_prefix, tmp_path_factory.mktemp("farm")) as f:
        yield f


@pytest.fixture(scope="module")
async def client(farm: Farm) -> AsyncIterator[FarmClient]:
    async with FarmClient(farm.settings()) as c:
        await c.deploy(TOKEN.read_bytes(), "token", precompile=True)
        yield c


async def test_deploy_call_result_and_exactly_one_fee_report(
    farm: Farm, client: FarmClient
) -> None:
    tx = farm.tx_id("mint-1")
    result = await client.call("token", "mint", u64(500) + b"alice", fee_limit=1_000_000,
                               caller="alice", tx_id=tx, timeout=60)
    assert result.status == "ok", result.error
    assert result.return_data == u64(500)
    assert result.write_set == {b"bal:alice": u64(500), b"supply": u64(500)}
    assert 0 < result.fee.used <= 1_000_000
    [report] = await client.fee_reports([tx])
    assert report.fee["used"] == result.fee.used and report.status == "ok"
    # nothing is committed by a call: a view sees the pre-call state
    view = await client.call("token", "balance_of", b"alice", mode="view",
                             tx_id=farm.tx_id("view-1"), timeout=60)
    assert (view.status, view.return_data) == ("ok", u64(0))
    # the same tx again (a retry): the first result, no second fee report
    again = await client.call("token", "mint", u64(500) + b"alice", fee_limit=1_000_000,
                              caller="alice", tx_id=tx, timeout=60)
    assert again.return_data == u64(500) and again.job == result.job
    assert len(await client.fee_reports([tx])) == 1
    # the same tx id for another transaction: refused, naming it
    with pytest.raises(TxIdReused, match=f"different job.*{tx}"):
        await client.call("token", "mint", u64(999) + b"alice", fee_limit=1_000_000,
                          caller="alice", tx_id=tx, timeout=60)
    assert len(await client.fee_reports([tx])) == 1


async def test_unknown_contract_and_bad_fee_limit_are_invalid_results(
    farm: Farm, client: FarmClient
) -> None:
    nowhere = await client.call("nowhere", "f", tx_id=farm.tx_id("nowhere"), timeout=60)
    assert nowhere.status == "invalid" and "unknown contract" in nowhere.error["message"]
    too_big = client.settings.limits.max_fee_limit + 1
    bad = await client.call("token", "mint", u64(1), fee_limit=too_big,
                            tx_id=farm.tx_id("bigfee"), timeout=60)
    assert bad.status == "invalid" and "fee_limit" in bad.error["message"]


async def test_a_500_tx_batch_over_two_workers_one_result_and_one_fee_record_each(
    farm: Farm, client: FarmClient
) -> None:
    jobs = [
        client.make_job("token", "mint", u64(i + 1) + f"acct{i % 37}".encode(),
                        fee_limit=1_000_000, caller="minter", tx_id=farm.tx_id(f"b500-{i}"))
        for i in range(500)
    ]
    ids = await client.submit_batch(jobs, batch_size=16)
    assert ids == [j.tx_id for j in jobs]
    progress: list[int] = []
    done = await client.wait(ids, timeout=120, progress_cb=lambda d, t: progress.append(d))
    assert set(done) == set(ids) and progress[-1] == 500
    assert all(done[t].status == "ok" for t in ids)
    assert [done[t].return_data for t in ids[:3]] == [u64(1), u64(2), u64(3)]
    counts = Counter(r.tx_id for r in await client.fee_reports(ids))
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    # arq's record of each part sums it up (its Results are in the part's record).
    records = [msgpack.unpackb(await client.redis.get(key))["r"] async for key in
               client.redis.scan_iter(f"{client.keys.arq('result:')}batch:*")]
    assert records and all(set(r) == {"txs", "statuses", "unstored"} for r in records)
    assert sum(r["statuses"].get("ok", 0) for r in records) >= 500


async def test_a_wait_looks_up_none_of_the_txs_its_client_enqueued_while_watching(
    farm: Farm, client: FarmClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client watched the fee stream from before it enqueued them: each Result is
    read where the stream's entry names it, nothing looked up in the index first."""
    import producer.client as module

    looked: list[str] = []
    real = module.stored_results

    async def spy(redis: Any, prefix: str, ttl: int, tx_ids: Any, hints: Any = None) -> Any:
        looked.extend(t for t in tx_ids if not hints or t not in hints)
        return await real(redis, prefix, ttl, tx_ids, hints)

    monkeypatch.setattr(module, "stored_results", spy)
    jobs = [client.make_job("token", "mint", u64(1) + b"fresh", fee_limit=1_000_000,
                            caller="m", tx_id=farm.tx_id(f"fresh-{i}")) for i in range(40)]
    ids = await client.submit_batch(jobs, batch_size=8)
    done = await client.wait(ids, timeout=60, rescan_s=600)
    assert all(done[t].status == "ok" for t in ids) and looked == []


async def test_a_tx_stored_before_and_enqueued_again_in_another_part_is_still_found(
    farm: Farm, client: FarmClient,
) -> None:
    """Its new part's worker finds its Result and adds no fee record, but names the part
    holding it in the stream: the wait finds it there, not by a look-up much later."""
    first = client.make_job("token", "mint", u64(3) + b"again", fee_limit=1_000_000,
                            caller="m", tx_id=farm.tx_id("again"))
    [done] = (await client.wait(await client.submit_batch([first], batch_size=2))).values()
    other = client.make_job("token", "mint", u64(4) + b"again", fee_limit=1_000_000,
                            caller="m", tx_id=farm.tx_id("again-other"))
    ids = await client.submit_batch([first, other], batch_size=2)
    again = await client.wait(ids, timeout=60, rescan_s=600)
    assert again[first.tx_id].consensus_bytes() == done.consensus_bytes()
    assert len(await client.fee_reports([first.tx_id])) == 1


def test_cli_call_prints_the_result_as_wesfarm_run_json(farm: Farm, client: FarmClient) -> None:
    tx = farm.tx_id("cli-call")
    proc = farm.cli("call", "token", "mint", "--input-hex", (u64(7) + b"bob").hex(),
                    "--fee-limit", "1000000", "--caller", "bob", "--tx-id", tx, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"tx_id", "status", "return_data", "error", "fee", "events", "logs",
                        "read_set", "write_set", "worker", "timings"}
    assert (out["tx_id"], out["status"], out["return_data"]) == (tx, "ok", u64(7).hex())
    readable = farm.cli("call", "token", "total_supply", "--mode", "view",
                        "--tx-id", farm.tx_id("cli-view"))
    assert readable.returncode == 0 and ": ok" in readable.stdout
    reverted = farm.cli("call", "token", "transfer", "--input-hex", (u64(1) + b"x").hex(),
                        "--caller", "nobody-has-funds", "--tx-id", farm.tx_id("cli-poor"))
    assert reverted.returncode == 0, reverted.stderr  # a result was produced
    assert "reverted" in reverted.stdout and "insufficient funds" in reverted.stdout


def test_cli_submit_json_and_summary_and_state(
    farm: Farm, client: FarmClient, tmp_path: Path
) -> None:
    txs = [Tx(farm.tx_id(f"sub-{i}"), "token", "mint", u64(10) + b"carol", 1_000_000, "c")
           for i in range(30)]
    txs.append(Tx(farm.tx_id("sub-poor"), "token", "transfer", u64(10**9) + b"carol", None,
                  "poor"))
    block = tmp_path / "block.jsonl"
    block.write_text(dump_block(txs))
    proc = farm.cli("submit", str(block), "--json", "--batch-size", "4", "--height", "5")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [x["tx_id"] for x in lines] == [t.tx_id for t in txs]  # block order
    assert [x["status"] for x in lines] == ["ok"] * 30 + ["reverted"]
    assert "/31" in proc.stderr  # the progress bar
    again = farm.cli("submit", str(block))  # already executed: same results, a summary
    assert again.returncode == 0, again.stderr
    assert "31/31 txs" in again.stdout and "reverted" in again.stdout
    assert "fees: used" in again.stdout and "p99" in again.stdout
    state = farm.cli("state", "token", b"supply".hex(), "--json")
    assert state.returncode == 1 and json.loads(state.stdout)["found"] is False


def test_cli_submit_commit_json_prints_committed_results_and_block_reads_the_record(
    farm: Farm, client: FarmClient, tmp_path: Path
) -> None:
    """dave's second transfer ran `ok` on the farm (it read his balance before the first
    was committed); committed, it is re-executed and reverts: --json prints that."""
    genesis = tmp_path / "genesis.jsonl"
    genesis.write_text(dump_block([Tx(farm.tx_id("dave-mint"), "token", "mint",
                                      u64(10) + b"dave", None, "g")]))
    assert farm.cli("submit", str(genesis), "--commit", "--height", "41").returncode == 0
    block = tmp_path / "spend.jsonl"
    block.write_text(dump_block([
        Tx(farm.tx_id(f"dave-pays-{i}"), "token", "transfer", u64(10) + b"erin", None, "dave")
        for i in range(2)]))
    proc = farm.cli("submit", str(block), "--commit", "--json", "--height", "42")
    assert proc.returncode == 0, proc.stderr
    *results, record = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["status"] for r in results] == ["ok", "reverted"]
    assert record["height"] == 42 and record["reexecuted"] == 1
    assert record["committed"] == 2 and record["by_status"] == {"ok": 1, "reverted": 1}
    stored = farm.cli("block", "42", "--json")
    assert stored.returncode == 0 and json.loads(stored.stdout) == record
    text = farm.cli("block", "42")
    assert "committed block 42: 2/2 txs, 1 re-executed" in text.stdout
    absent = farm.cli("block", "4242")
    assert absent.returncode == 1 and "not committed" in absent.stdout


def test_cli_state_root_verifies_and_catches_a_state_changed_behind_its_back(
    farm: Farm, client: FarmClient
) -> None:
    import redis

    from tests.support.state import assert_root_exact

    shown = farm.cli("state-root", "--verify", "--json")
    assert shown.returncode == 0, shown.stderr
    out = json.loads(shown.stdout)
    assert out["stored"] and out["verified"] and out["entries"] > 0
    record = json.loads(farm.cli("block", "42", "--json").stdout)
    assert record["state_root"] == out["state_root"]  # nothing committed since block 42
    sync = redis.Redis.from_url(farm.redis_url)
    try:
        assert_root_exact(sync, client.keys)
        sync.hset(client.keys.state("token"), b"forged", b"\x01" + bytes(8) + b"x")
        bad = farm.cli("state-root", "--verify")
        assert bad.returncode == 1 and "MISMATCH" in bad.stdout
    finally:
        sync.hdel(client.keys.state("token"), b"forged")
        sync.close()
    assert farm.cli("state-root", "--verify").returncode == 0


def test_signed_posts_through_the_farm_commit_in_block_order(
    farm: Farm, client: FarmClient, tmp_path: Path
) -> None:
    """The notary example (ABI 1.1 signatures) deployed, a block submitted and committed:
    a replayed signature ran `ok` beside the first post (both read nonce 0), and the
    commit re-executes it against the first post's write: reverted."""
    import struct

    import coincurve
    from Crypto.Hash import keccak
    from nacl.signing import SigningKey

    deployed = farm.cli("deploy", str(CONTRACTS / "notary" / "notary.wasm"), "--address",
                        "notary")
    assert deployed.returncode == 0, deployed.stderr
    ed = SigningKey(bytes(range(32)))
    pk = bytes(ed.verify_key)
    signed = ed.sign(b"notary" + struct.pack("<Q", 0) + b"one").signature
    eth = coincurve.PrivateKey(bytes(range(1, 33)))
    digest = keccak.new(digest_bits=256, data=b"notary" + struct.pack("<Q", 0) + b"two")
    rsv = eth.sign_recoverable(digest.digest(), hasher=None)
    block = tmp_path / "posts.jsonl"
    block.write_text(dump_block([
        Tx(farm.tx_id("post-ed"), "notary", "post_ed25519", pk + signed + b"one", None, "a"),
        Tx(farm.tx_id("post-eth"), "notary", "post_eth", rsv + struct.pack("<Q", 0) + b"two",
           None, "b"),
        Tx(farm.tx_id("replay-ed"), "notary", "post_ed25519", pk + signed + b"one", None, "c"),
    ]))
    proc = farm.cli("submit", str(block), "--commit", "--json", "--height", "43")
    assert proc.returncode == 0, proc.stderr
    *results, record = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["status"] for r in results] == ["ok", "ok", "reverted"]
    assert bytes.fromhex(results[2]["return_data"]) == b"bad signature"
    assert record["reexecuted"] == 1 and record["by_status"] == {"ok": 2, "reverted": 1}
    key = (b"m:ed:" + pk).hex()
    state = farm.cli("state", "notary", key, "--json")
    assert state.returncode == 0 and json.loads(state.stdout)["value"] == b"one".hex()


def test_status_shows_workers_queue_last_minute_and_last_block(farm: Farm,
                                                             client: FarmClient) -> None:
    proc = farm.cli("status", "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert len(status["workers"]) == 2 and status["executors"] == 4
    assert all(w["version"].startswith("wesfarm ") and "wes-fee-" in w["version"]
               for w in status["workers"])
    assert status["queue"] == f"{farm.prefix}:queue" and status["queue_depth"] == 0
    assert status["last_minute"]["txs"] > 0 and "ok" in status["last_minute"]["by_status"]
    block = status["last_block"]
    assert block["height"] == 43 and block["state_root"] == json.loads(
        farm.cli("block", "43", "--json").stdout)["state_root"]
    text = farm.cli("status").stdout
    assert "2 alive, 4 executors" in text and "last block   43" in text


def test_submit_commits_the_height_after_the_last_committed_block(farm: Farm,
                                                                  tmp_path: Path) -> None:
    block = tmp_path / "next.jsonl"
    block.write_text(dump_block([Tx(farm.tx_id("next-mint"), "token", "mint",
                                    u64(1) + b"zed", None, "z")]))
    proc = farm.cli("submit", str(block), "--commit", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.splitlines()[-1])
    assert record["height"] == 44  # block 43 was the last one committed
    assert json.loads(farm.cli("status", "--json").stdout)["last_block"]["height"] == 44


def test_every_key_of_the_farm_arqs_included_is_under_its_prefix(farm: Farm) -> None:
    import redis

    with redis.Redis.from_url(farm.redis_url) as sync:
        assert list(sync.scan_iter(match=f"{farm.prefix}:arq:*"))  # arq's keys are here
        assert not list(sync.scan_iter(match=f"arq:*{farm.prefix}*"))  # and nowhere else


def test_clean_counts_refuses_without_yes_and_deletes_only_its_prefix(farm: Farm) -> None:
    import redis

    other = f"{farm.prefix}x"  # another farm whose prefix starts like ours
    env_other = {"WESFARM_KEY_PREFIX": other, "WESFARM_QUEUE_NAME": f"{other}:queue"}
    with redis.Redis.from_url(farm.redis_url) as sync:
        sync.set(f"{other}:part:p1", b"r")
        sync.hset(f"{other}:state:c", b"k", b"v")
        sync.zadd(f"{other}:queue", {"job": 1})
        before = sum(1 for _ in sync.scan_iter(match=f"{farm.prefix}:*"))
        dry = farm.cli("clean", "--dry-run", "--json", env=env_other)
        assert json.loads(dry.stdout) == {"prefix": other, "keys": 3, "deleted": 0,
                                          "by_kind": {"part": 1, "queue": 1, "state": 1}}
        refused = farm.cli("clean", env=env_other)
        assert refused.returncode == 2 and "pass --yes" in refused.stderr
        done = farm.cli("clean", "--yes", env=env_other)
        assert done.returncode == 0 and "deleted: 3 keys" in done.stdout
        assert not list(sync.scan_iter(match=f"{other}:*"))
        assert sum(1 for _ in sync.scan_iter(match=f"{farm.prefix}:*")) == before


def test_an_escrow_that_calls_the_token_commits_through_the_farm(
    farm: Farm, client: FarmClient, tmp_path: Path
) -> None:
    """ABI 1.1 calls on the farm: workers run the escrow's calls into the token (code and
    state from Redis); the commit re-executes the stale ones in block order and writes
    both contracts' state."""
    deployed = farm.cli("deploy", str(CONTRACTS / "escrow" / "escrow.wasm"), "--address",
                        "escrow")
    assert deployed.returncode == 0, deployed.stderr
    block = tmp_path / "escrow.jsonl"
    block.write_text(dump_block([
        Tx(farm.tx_id("esc-mint"), "token", "mint", u64(50), None, "gus"),
        Tx(farm.tx_id("esc-send"), "token", "transfer", u64(20) + b"escrow", None, "gus"),
        Tx(farm.tx_id("esc-deposit"), "escrow", "deposit", b"", None, "gus"),
        Tx(farm.tx_id("esc-release"), "escrow", "release", u64(15) + b"hal", None, "gus"),
    ]))
    proc = farm.cli("submit", str(block), "--commit", "--json", "--height", "45")
    assert proc.returncode == 0, proc.stderr
    *results, record = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["status"] for r in results] == ["ok"] * 4 and record["reexecuted"] >= 2
    assert results[3]["calls"]["write_sets"]["token"] == {
        b"bal:hal".hex(): u64(15).hex(), b"bal:escrow".hex(): u64(5).hex()}
    for key, value in ((b"bal:hal", 15), (b"bal:escrow", 5), (b"bal:gus", 30)):
        state = farm.cli("state", "token", key.hex(), "--json")
        assert json.loads(state.stdout)["value"] == u64(value).hex(), key
    credit = farm.cli("state", "escrow", (b"c:gus").hex(), "--json")
    assert json.loads(credit.stdout)["value"] == u64(5).hex()
    assert farm.cli("state-root", "--verify").returncode == 0

"""`wesfarm demo`: the whole farm on this machine, with nothing configured.

Redis: WESFARM_REDIS_URL, else localhost:6379, else an embedded redis-server. Two
`wesfarm worker` processes; the example token contract; a genesis block of mints,
committed; then a block of transfers (some fail: insufficient funds, out of fee)
executed in parallel and committed in order; progress, results by status, fees,
throughput; everything shut down and cleaned up at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from config.environment import masked_url
from producer.cliutil import EXIT_FAILED, EXIT_OK, EXIT_USAGE, err
from producer.exits import EXIT_INTERRUPTED

TOKEN = Path(__file__).resolve().parents[2] / "examples" / "contracts" / "token" / "token.wasm"
TOKEN_ADDRESS = "token"
TRANSFER_FEE_LIMIT = None  # the settings' default_fee_limit
TINY_FEE_LIMIT = 2_000  # below the token's initial-memory charge: out_of_fee at once
HUGE_AMOUNT = 10**15


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="run a local farm end to end (embedded Redis if none configured)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--txs", type=int, default=2000, help="transfers in the block (default 2000)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--accounts", type=int, default=50, help="token accounts (default 50)")
    p.add_argument("--executors", type=int, default=None,
                   help="executor subprocesses per worker (default: CPUs / workers, at least 1)")
    p.add_argument("--batch-size", type=int, default=None, help="txs per worker job")
    p.add_argument("--seed", type=int, default=7, help="seed of the block generator")
    p.add_argument("--embedded-redis", action="store_true",
                   help="always start a private redis-server (ignore WESFARM_REDIS_URL "
                   "and localhost:6379)")
    p.set_defaults(handler=run)


def amount_to(amount: int, account: str) -> bytes:
    return amount.to_bytes(8, "little") + account.encode()


def make_blocks(
    accounts: int, txs: int, seed: int, tag: str = "demo"
) -> tuple[list[Any], list[Any]]:
    """(mints, transfers) as producer.block.Tx lists; deterministic for a seed.

    Tx ids carry `tag` (unique per run): arq job ids are global to a Redis.
    """
    from producer.block import Tx

    rng = random.Random(seed)
    names = [f"acct{i:03d}" for i in range(accounts)]
    mints = [
        Tx(f"{tag}-mint-{i:03d}", TOKEN_ADDRESS, "mint",
           amount_to(rng.randint(1_000, 10_000), name), TRANSFER_FEE_LIMIT, "demo")
        for i, name in enumerate(names)
    ]
    transfers = []
    for i in range(txs):
        sender, recipient = rng.sample(names, 2)
        roll = rng.random()
        amount = HUGE_AMOUNT if roll < 0.04 else rng.randint(1, 400)
        fee = TINY_FEE_LIMIT if 0.04 <= roll < 0.08 else TRANSFER_FEE_LIMIT
        transfers.append(Tx(f"{tag}-xfer-{i:05d}", TOKEN_ADDRESS, "transfer",
                            amount_to(amount, recipient), fee, sender))
    return mints, transfers


def run(args: argparse.Namespace) -> int:
    from config import SettingsError, load_settings
    from producer.devfarm import FarmStartError, LocalFarm, answers

    if args.txs <= 0 or args.workers <= 0 or args.accounts < 2:
        err("--txs and --workers must be positive, --accounts at least 2")
        return EXIT_USAGE
    if not TOKEN.is_file():
        err(f"missing {TOKEN} (run examples/contracts/build.sh)")
        return EXIT_FAILED
    try:
        base = load_settings()
    except SettingsError as exc:
        err(str(exc))
        return EXIT_USAGE
    if base.redis_url and not args.embedded_redis and not answers(base.redis_url, timeout=1.0):
        err(f"cannot reach Redis at {masked_url(base.redis_url)} (WESFARM_REDIS_URL); unset "
            "it, or pass --embedded-redis, to run the demo on an embedded redis-server")
        return EXIT_FAILED
    executors = args.executors or max(1, (os.cpu_count() or 1) // args.workers)
    farm = LocalFarm(args.workers, executors, base.redis_url, embedded=args.embedded_redis)
    say("starting: Redis and workers ...")
    try:
        with farm:
            where = "embedded redis-server" if farm.server else "shared Redis"
            say(f"redis {farm.url} ({where}); key prefix {farm.prefix!r}; "
                f"{args.workers} workers x {executors} executors")
            settings = load_settings(redis_url=farm.url, key_prefix=farm.prefix,
                                     queue_name=farm.queue)
            ok = asyncio.run(_demo(args, settings))
            say("stopping workers (SIGTERM, drain) ...")
            codes = farm.stop_workers()
            if any(code != 0 for code in codes):
                say(f"worker exit codes: {codes}")
    except FarmStartError as exc:
        err(f"demo: could not start the farm: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    say("demo OK" if ok else "demo FAILED")
    return EXIT_OK if ok else EXIT_FAILED


def say(text: str) -> None:
    print(text, flush=True)


async def _demo(args: argparse.Namespace, settings: Any) -> bool:
    from producer.client import FarmClient
    from producer.report import ProgressBar, render_record, render_summary, summarize

    tag = settings.key_prefix.rsplit("-", 1)[-1]
    mints, transfers = make_blocks(args.accounts, args.txs, args.seed, tag)
    now = int(time.time() * 1000)
    async with FarmClient(settings) as farm:
        deployed = await farm.deploy(TOKEN.read_bytes(), TOKEN_ADDRESS, precompile=True)
        say(f"deployed token at {deployed.address!r}: code {deployed.code_hash[:16]}...")

        genesis = [tx.job(1, now, settings.default_fee_limit) for tx in mints]
        await farm.submit_batch(genesis, args.batch_size)
        minted = await farm.wait([j.tx_id for j in genesis], timeout=120)
        bad = [r for r in minted.values() if r.status != "ok"]
        if bad:
            err(f"demo: mint {bad[0].tx_id} ended {bad[0].status}: {bad[0].error}")
            return False
        report = await farm.commit_block(genesis, minted, 1)
        say(f"genesis: minted to {len(mints)} accounts; block 1 committed "
            f"({report.reexecuted} re-executed: every mint updates `supply`)")

        block = [tx.job(2, now + 1000, settings.default_fee_limit) for tx in transfers]
        tx_ids = [j.tx_id for j in block]
        say(f"block 2: {len(block)} transfers among {args.accounts} accounts ...")
        seen: dict[str, float] = {}
        bar = ProgressBar(len(block))
        started = time.monotonic()
        await farm.submit_batch(block, args.batch_size)
        try:
            results = await farm.wait(tx_ids, timeout=max(120.0, len(block) / 20),
                                      progress_cb=bar, seen=seen)
        finally:
            bar.finish()
        elapsed = time.monotonic() - started
        latencies = [seen[t] - started for t in tx_ids if t in seen]
        say(render_summary(summarize(tx_ids, results, elapsed, latencies)))

        commit = await farm.commit_block(block, results, 2)
        say(render_record(commit.record(), commit.seconds))
        return await _check(farm, mints + transfers, results, commit, args.accounts)


async def _check(
    farm: Any, txs: list[Any], results: dict[str, Any], commit: Any, accounts: int
) -> bool:
    """Every tx: one fee record; supply == sum of balances; the expected failures seen."""
    ok = True
    records = await farm.fee_reports([tx.tx_id for tx in txs])
    counts = Counter(r.tx_id for r in records)
    if len(counts) != len(txs) or any(n != 1 for n in counts.values()):
        err(f"fee stream: {len(records)} records for {len(txs)} txs (want exactly one each)")
        ok = False
    supply = await farm.state(TOKEN_ADDRESS, b"supply")
    total = 0
    for i in range(accounts):
        found = await farm.state(TOKEN_ADDRESS, f"bal:acct{i:03d}".encode())
        total += int.from_bytes(found[0], "little") if found else 0
    supply_value = int.from_bytes(supply[0], "little") if supply else -1
    statuses = Counter(commit.results[t].status for t in commit.results)
    say(f"check: {len(records)} fee records, one per tx; total supply {supply_value:,} "
        f"{'==' if supply_value == total else '!='} sum of balances {total:,}; "
        f"final statuses {dict(sorted(statuses.items()))}")
    if supply_value != total:
        ok = False
    for want in ("ok", "reverted", "out_of_fee"):
        if statuses[want] == 0 and len(results) >= 200:
            err(f"expected some `{want}` transfers, saw none")
            ok = False
    if commit.not_committed:
        # `timeout` (a slow or overloaded machine) is a result, reported and not
        # committed; a tx with no result at all is a failure.
        say(f"not committed: {len(commit.not_committed)} txs "
            f"{dict(list(commit.not_committed.items())[:5])}")
        if "missing" in commit.not_committed.values():
            ok = False
    sys.stdout.flush()
    return ok

"""Block-commit figures: conflict rate and speed-up against sequential execution.

Two kinds of block of token transfers, REPEATS blocks of each (other accounts, other
amounts), each on its own token contract and after its own genesis block of mints
(committed through the farm too):

- low conflict: N transfers among 2N distinct accounts (every account in at most one
  transfer, so no tx reads what an earlier one wrote);
- high conflict: N transfers among 20 accounts (nearly every tx goes stale).

Every transfer declares its two balance keys as read and written (Job.access, writes),
as a wallet does; `submit_block` leaves to the commit each tx that follows a declared
write of a key it touches (producer/schedule.py): nearly all of the high-conflict block.

Farm: the bench's 2 workers execute the block, `FarmClient.commit_block` commits it;
`commit_<b>_farm_s` is submit → every farm result → commit done (wall seconds, the commit's
in-process re-executions and its state digest included). Sequential: the same block,
one tx after another, in this process through `engine.WasmEngine` against a
`MemoryState`, each ok write set applied in order (`commit_<b>_sequential_s`, the
engine warmed by the genesis block first). Each figure is the median of the kind's
blocks; `high_conflict_vs_sequential` the median of the blocks' own ratios (a block's
farm and sequential times are taken one after the other, so a slow stretch of the
machine moves both). The MemoryState starts as a copy of the
committed state of the farm's prefix before the genesis blocks, so after each block
the farm's state digest must equal the sequential one (`commit_digest_match`).

State growth: GROWTH_BLOCKS low-conflict blocks of N transfers on a contract of their
own, committed with the prefix's state as the blocks above left it, then GROWTH_KEYS
more committed keys (one genesis write to a filler contract), then GROWTH_BLOCKS more:
`commit_s_small_state` / `commit_s_plus_100k` are the median commit times (the commit
alone: validation, re-executions, writes, the state root), `commit_growth_100k` their
ratio. Beside it, `commit_growth_100k_vs_reference`: the same with each commit's time
over a reference timed right after it (the same block in-process, one tx after another),
which takes out the VM's drift between the halves and adds the reference's own noise.
The root the commits kept is then checked against one built from scratch.

Everything runs under the farm's private key prefix (tx ids carry it), deleted with it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import TOKEN, Report, Scale, rounded

if TYPE_CHECKING:
    from config import Settings
    from engine import Job, MemoryCode, MemoryState
    from producer import FarmClient, Tx

BLOCKS = ("low", "high")
HIGH_CONFLICT_ACCOUNTS = 20
COMMIT_KEYS = (
    *(f"commit_{b}_{figure}" for b in BLOCKS
      for figure in ("conflict_rate", "farm_s", "sequential_s", "speedup")),
    "commit_digest_match", "high_conflict_vs_sequential",
    "commit_s_small_state", "commit_s_plus_100k", "commit_growth_100k",
)
REPEATS = 3  # blocks of each kind: one block's ratio moves with this VM's noise
GROWTH_BLOCKS, GROWTH_KEYS = 5, 100_000
GENESIS_TIME_MS = 1_700_000_000_000
WAIT_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class BlockRun:
    """One block's figures: whether the farm's root matched, its seconds on the farm
    (submit → committed), sequentially, and of the commit alone; its re-executions."""

    match: bool
    farm_s: float
    sequential_s: float
    commit_s: float
    reexecuted: int


@dataclass(frozen=True, slots=True)
class BenchBlock:
    """One scenario: a contract address, its genesis mints and its block of transfers."""

    name: str  # "low" | "high"
    contract: str
    mints: list[Tx]
    transfers: list[Tx]


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def make_block(name: str, txs: int, tag: str, seed: int = 11,
               contract: str | None = None) -> BenchBlock:
    """Deterministic mints + transfers; tx ids carry `tag` (arq job ids are per Redis)."""
    from producer import Tx

    rng = random.Random(seed)
    contract = contract or f"commit-{name}"
    if name == "low":
        pairs = [(f"s{i:05d}", f"r{i:05d}") for i in range(txs)]
        funded = [sender for sender, _ in pairs]
    elif name == "high":
        funded = [f"h{i:02d}" for i in range(HIGH_CONFLICT_ACCOUNTS)]
        pairs = [(a, b) for a, b in (rng.sample(funded, 2) for _ in range(txs))]
    else:
        raise ValueError(f"unknown block {name!r}")
    mints = [Tx(f"{tag}-{contract}-m{i}", contract, "mint", u64(10**9) + account.encode(),
                None, "genesis") for i, account in enumerate(funded)]
    transfers = [Tx(f"{tag}-{contract}-x{i}", contract, "transfer",
                    u64(rng.randint(1, 1_000)) + recipient.encode(), None, sender, keys, keys)
                 for i, (sender, recipient) in enumerate(pairs)
                 for keys in ((b"bal:" + sender.encode(), b"bal:" + recipient.encode()),)]
    return BenchBlock(name, contract, mints, transfers)


def run_sequential(engine: Any, state: MemoryState, codes: MemoryCode, jobs: list[Job]) -> int:
    """Execute `jobs` one after another, applying each ok write set; returns how many ok."""
    ok = 0
    for job in jobs:
        result = engine.execute(job, state, codes)
        if result.status == "ok":
            ok += 1
            if result.write_set:
                state.apply(job.contract, result.write_set)
    return ok


async def commit_figures(rep: Report, farm: Any, scale: Scale, cache_dir: Path) -> None:
    """The bench's block-commit part (`farm`: a started producer.devfarm.LocalFarm)."""
    from config import load_settings

    settings = load_settings(redis_url=farm.url, key_prefix=farm.prefix,
                             queue_name=farm.queue, cache_dir=cache_dir)
    await run_commit_bench(rep, settings, scale.commit_txs)


async def run_commit_bench(rep: Report, settings: Settings, txs: int) -> None:
    """Both kinds of block of `txs` transfers, REPEATS of each, on the farm serving
    `settings`' prefix and queue."""
    import statistics

    from engine import MemoryCode, WasmEngine
    from producer import FarmClient

    tag = settings.key_prefix
    blocks = [make_block(name, txs, tag, seed=11 + r, contract=f"commit-{name}-{r}")
              for name in BLOCKS for r in range(REPEATS)]
    async with FarmClient(settings) as client:
        code = TOKEN.read_bytes()
        codes = MemoryCode()
        for block in blocks:
            await client.deploy(code, block.contract, precompile=True)
            codes.deploy(block.contract, code)
        state = await _snapshot(client)  # the farm's committed state, before any genesis
        engine = WasmEngine(settings)
        runs: dict[str, list[BlockRun]] = {name: [] for name in BLOCKS}
        try:
            height = await _free_height(client)
            for block in blocks:
                runs[block.name].append(await _one_block(rep, client, engine, state, codes,
                                                         block, height, settings))
                height += 2
            await _growth(rep, client, engine, txs, height)
        finally:
            engine.shutdown()
        for name, done in runs.items():
            key = f"commit_{name}"
            farm_s = statistics.median(r.farm_s for r in done)
            sequential_s = statistics.median(r.sequential_s for r in done)
            ratios = sorted(r.farm_s / r.sequential_s for r in done)
            rep.set(f"{key}_conflict_rate", rounded(max(r.reexecuted for r in done) / txs),
                    f"of {txs} txs, re-executed at commit (the most of {REPEATS} blocks)")
            rep.set(f"{key}_farm_s", rounded(farm_s),
                    f"submit → results → commit, median of {REPEATS} blocks; commit alone "
                    f"{statistics.median(r.commit_s for r in done):.3f} s")
            rep.set(f"{key}_sequential_s", rounded(sequential_s),
                    f"in-process, one engine, median of {REPEATS}")
            rep.set(f"{key}_speedup", rounded(sequential_s / farm_s))
            if name == "high":
                rep.set("high_conflict_vs_sequential", rounded(statistics.median(ratios)),
                        f"farm (submit → committed) / sequential in-process, each block's; "
                        f"median of {REPEATS} ({ratios[0]:.2f}–{ratios[-1]:.2f})")
    rep.set("commit_digest_match", all(r.match for done in runs.values() for r in done),
            "farm state root == sequential, after each block")


async def _growth(rep: Report, client: FarmClient, engine: Any, txs: int, height: int) -> None:
    """Commit time with the state as it is, then with GROWTH_KEYS more keys committed, and
    each commit's time over a reference timed right after it (the same block in-process,
    one tx after another)."""
    import asyncio
    import statistics

    import redis

    from engine import MemoryCode, MemoryState
    from producer import redis_state_items, redis_state_root, state_root_of, write_genesis

    await client.deploy(TOKEN.read_bytes(), "commit-growth", precompile=True)
    blocks = [make_block("low", txs, f"{client.keys.prefix}-g{b}", seed=b,
                         contract="commit-growth") for b in range(2 * GROWTH_BLOCKS)]
    mints = [tx.job(height, GENESIS_TIME_MS, client.settings.default_fee_limit)
             for block in blocks for tx in block.mints]
    await _committed(client, mints, height)
    reference, codes = MemoryState(), MemoryCode()
    codes.deploy("commit-growth", TOKEN.read_bytes())
    run_sequential(engine, reference, codes, mints)
    sync = redis.Redis.from_url(client.url)
    try:
        seconds: list[float] = []
        relative: list[float] = []
        for b, block in enumerate(blocks):
            if b == GROWTH_BLOCKS:
                rep.progress(f"commit: {GROWTH_KEYS:,} more committed keys ...")
                filler = {f"f{i:07d}".encode(): u64(i) for i in range(GROWTH_KEYS)}
                await asyncio.to_thread(write_genesis, sync, client.keys, "commit-filler", filler)
            jobs = [tx.job(height + 1 + b, GENESIS_TIME_MS, client.settings.default_fee_limit)
                    for tx in block.transfers]
            seconds.append(await _committed(client, jobs, height + 1 + b))
            started = time.perf_counter()
            run_sequential(engine, reference, codes, jobs)
            relative.append(seconds[-1] / (time.perf_counter() - started))
        stored = redis_state_root(sync, client.keys)
        exact = stored == state_root_of(await asyncio.to_thread(redis_state_items, sync,
                                                                client.keys))
    finally:
        sync.close()
    small = statistics.median(seconds[:GROWTH_BLOCKS])
    large = statistics.median(seconds[GROWTH_BLOCKS:])
    rep.set("commit_s_small_state", rounded(small),
            f"{txs} transfers, commit alone, median of {GROWTH_BLOCKS}")
    rep.set("commit_s_plus_100k", rounded(large), f"the same after {GROWTH_KEYS:,} more keys")
    rep.set("commit_growth_100k", rounded(large / small),
            f"medians of {GROWTH_BLOCKS} commits each")
    rep.extra("commit_growth_100k_vs_reference", rounded(
        statistics.median(relative[GROWTH_BLOCKS:]) / statistics.median(relative[:GROWTH_BLOCKS])))
    rep.extra("commit_root_exact", exact)
    if not exact:
        rep.note("commit: the state root kept by the commits differs from one built from scratch")


async def _committed(client: FarmClient, jobs: list[Job], height: int) -> float:
    """Execute `jobs` on the farm, commit them as block `height`; the commit's seconds."""
    await client.submit_batch(jobs)
    done = await client.wait([j.tx_id for j in jobs], timeout=WAIT_TIMEOUT_S)
    report = await client.commit_block(jobs, done, height)
    if report.not_committed:
        raise RuntimeError(f"block {height}: {len(report.not_committed)} txs not committed")
    return report.seconds


async def _one_block(rep: Report, client: FarmClient, engine: Any, state: MemoryState,
                     codes: MemoryCode, block: BenchBlock, height: int,
                     settings: Settings) -> BlockRun:
    from producer import memory_state_root

    fee = settings.default_fee_limit
    genesis = [tx.job(height, GENESIS_TIME_MS, fee) for tx in block.mints]
    jobs = [tx.job(height + 1, GENESIS_TIME_MS + 1_000, fee) for tx in block.transfers]
    n = len(jobs)
    rep.progress(f"commit, {block.name}-conflict block ({block.contract}): genesis of "
                 f"{len(genesis)} mints, then {n} transfers (height {height + 1}) ...")
    await client.submit_batch(genesis)
    minted = await client.wait([j.tx_id for j in genesis], timeout=WAIT_TIMEOUT_S)
    g_report = await client.commit_block(genesis, minted, height)
    run_sequential(engine, state, codes, genesis)  # also warms the engine
    genesis_match = g_report.state_root == memory_state_root(state)

    started = time.perf_counter()
    sent = await client.submit_block(jobs)
    done = await client.wait(sent, timeout=WAIT_TIMEOUT_S)
    report = await client.commit_block(jobs, done, height + 1)
    farm_s = time.perf_counter() - started

    started = time.perf_counter()
    seq_ok = run_sequential(engine, state, codes, jobs)
    sequential_s = time.perf_counter() - started

    match = genesis_match and report.state_root == memory_state_root(state)
    farm_ok = report.by_status.get("ok", 0)
    if report.not_committed or farm_ok != seq_ok or farm_ok != n:
        rep.note(f"commit {block.contract}: {farm_ok}/{n} ok on the farm, {seq_ok}/{n} "
                 f"sequentially, not committed {dict(list(report.not_committed.items())[:3])}")
    if not match:
        rep.note(f"commit {block.contract}: farm state digest differs from the sequential one")
    return BlockRun(match, farm_s, sequential_s, report.seconds, report.reexecuted)


async def _snapshot(client: FarmClient) -> MemoryState:
    """A MemoryState holding every committed (contract, key, value) of the prefix."""
    import asyncio

    import redis

    from engine import MemoryState
    from producer import redis_state_items

    def items() -> list[tuple[str, bytes, bytes]]:
        sync = redis.Redis.from_url(client.url)
        try:
            return redis_state_items(sync, client.keys)
        finally:
            sync.close()

    state = MemoryState()
    for contract, key, value in await asyncio.to_thread(items):
        state.data.setdefault(contract, {})[key] = (value, 0)
    return state


async def _free_height(client: FarmClient) -> int:
    """One above the highest committed block of the prefix (heights are per prefix)."""
    prefix = client.keys.block(0)[:-1]
    top = 0
    async for name in client.redis.scan_iter(match=f"{prefix}*", count=1000):
        tail = name.decode()[len(prefix):]
        if tail.isdigit():
            top = max(top, int(tail))
    return top + 1

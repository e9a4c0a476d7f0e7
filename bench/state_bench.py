"""Realistic state: what a block of transfers among many distinct accounts costs, in CPU of
every process of the farm, with and without access lists.

State: a token contract of its own whose ACCOUNTS accounts are funded by one genesis
write (producer/committed_state.py's write_genesis; the setup is not measured). Block:
STATE_TXS transfers, random sender and recipient among the ACCOUNTS, so almost every
state read is of a key no earlier tx read. It runs ROUNDS + 1 times on the bench's farm
(fresh tx ids, the same kind of block): ROUNDS with each tx's access list (its two
balance keys, `Job.access`: the executor fetches the keys of a whole request in one HMGET
per contract), the figures their medians, then once without (one Redis round trip per
read). Measured around submit →
every result readable (no commit): Redis's own CPU (INFO cpu, user + sys; per command
from INFO commandstats as a detail), the worker processes' and their executors' CPU
(/proc), and this producer's. Figures per tx: Redis
CPU (`redis_cpu_us_per_tx`), all of it (`farm_cpu_us_per_tx`), against the engine's own
time per transfer in-process on a MemoryState holding the same accounts
(`engine_exec_us_per_tx`); `one_redis_ceiling_tx_per_s` = 10^6 / Redis CPU per tx.
"""

from __future__ import annotations

import os
import random
import resource
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import TOKEN, Report, Scale, median, rounded

if TYPE_CHECKING:
    from engine import Job
    from producer import FarmClient

STATE_KEYS = ("redis_cpu_us_per_tx", "farm_cpu_us_per_tx", "engine_exec_us_per_tx",
              "one_redis_ceiling_tx_per_s")
ACCOUNTS = {"tiny": 2_000, "quick": 40_000, "full": 40_000}
STATE_TXS = {"tiny": 300, "quick": 10_000, "full": 10_000}
CONTRACT = "state-token"
ENGINE_SAMPLE = 2_000  # transfers a round of the in-process figure times
ROUNDS = 3  # blocks with access lists (and in-process rounds): a figure is their median
TICK = os.sysconf("SC_CLK_TCK")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def accounts(n: int) -> list[str]:
    return [f"acct{i:06d}" for i in range(n)]


def transfers(tag: str, names: list[str], n: int, fee: int, access: bool,
              seed: int) -> list[Job]:
    from engine import Context, Job

    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        sender, recipient = rng.sample(names, 2)
        jobs.append(Job(f"{tag}-{i}", CONTRACT, "transfer",
                        u64(rng.randint(1, 100)) + recipient.encode(), fee,
                        Context(sender, 2, 1_700_000_000_000),
                        access=((b"bal:" + sender.encode(), b"bal:" + recipient.encode())
                                if access else ())))
    return jobs


async def state_figures(rep: Report, farm: Any, scale: Scale, cache_dir: Path) -> None:
    """The bench's realistic-state part (`farm`: a started producer.devfarm.LocalFarm)."""
    from config import load_settings

    settings = load_settings(redis_url=farm.url, key_prefix=farm.prefix,
                             queue_name=farm.queue, cache_dir=cache_dir)
    await run_state_bench(rep, settings, [p.pid for p in farm.processes],
                          ACCOUNTS[scale.name], STATE_TXS[scale.name])


async def run_state_bench(rep: Report, settings: Any, worker_pids: list[int], n_accounts: int,
                          n: int) -> None:
    """The figures on the farm serving `settings`, whose workers are `worker_pids`."""
    from producer import FarmClient

    names = accounts(n_accounts)
    async with FarmClient(settings) as client:
        await _genesis(client, names)
        rep.progress(f"realistic state: {len(names):,} funded accounts; {n:,} transfers "
                     "with access lists, then without ...")
        blocks = []
        for b in range(ROUNDS + 1):  # the last one without access lists
            jobs = transfers(f"{settings.key_prefix}-st{b}", names, n,
                             settings.default_fee_limit, b < ROUNDS, seed=b)
            blocks.append(await _measured(client, jobs, worker_pids))
    engine_us = _engine_us(settings, names)
    runs = {True: _median_block(blocks[:ROUNDS]), False: blocks[ROUNDS]}
    best = runs[True]
    each = ", ".join(f"{b['redis_us']:.1f}" for b in blocks[:ROUNDS])
    rep.set("redis_cpu_us_per_tx", rounded(best["redis_us"]),
            f"{n:,} transfers among {len(names):,} accounts, with access lists (median of "
            f"{ROUNDS} blocks: {each}); without: {runs[False]['redis_us']:.1f}")
    rep.set("farm_cpu_us_per_tx", rounded(best["farm_us"]),
            f"Redis + workers + executors + producer; without access lists: "
            f"{runs[False]['farm_us']:.0f}")
    rep.set("engine_exec_us_per_tx", rounded(engine_us), "in-process, MemoryState, same accounts")
    rep.set("one_redis_ceiling_tx_per_s", rounded(1e6 / best["redis_us"]),
            "10^6 / Redis CPU per tx")
    rep.extra("state_farm_cpu_vs_engine", rounded(best["farm_us"] / engine_us))
    rep.extra("state_tx_per_s", {"access": rounded(best["tx_per_s"]),
                                 "no_access": rounded(runs[False]["tx_per_s"])})
    rep.extra("state_redis_us_per_tx_by_command", {
        "access": {k: rounded(v) for k, v in best["by_command"].items()},
        "no_access": {k: rounded(v) for k, v in runs[False]["by_command"].items()}})
    rep.extra("state_cpu_us_per_tx_by_part", {
        "access": {k: rounded(v) for k, v in best["parts"].items()},
        "no_access": {k: rounded(v) for k, v in runs[False]["parts"].items()}})


def _median_block(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The block of median Redis CPU, its farm CPU the median of the blocks' (each
    figure a median: one block is one sample of a VM whose speed drifts)."""
    mid = sorted(blocks, key=lambda b: b["redis_us"])[len(blocks) // 2]
    return {**mid, "farm_us": median([b["farm_us"] for b in blocks])}


async def _genesis(client: FarmClient, names: list[str]) -> None:
    import asyncio

    import redis

    from producer import write_genesis

    await client.deploy(TOKEN.read_bytes(), CONTRACT, precompile=True)
    values = {b"bal:" + a.encode(): u64(10**9) for a in names}
    values[b"supply"] = u64(10**9 * len(names))
    sync = redis.Redis.from_url(client.url)
    try:
        await asyncio.to_thread(write_genesis, sync, client.keys, CONTRACT, values)
    finally:
        sync.close()


async def _measured(client: FarmClient, jobs: list[Job], pids: list[int]) -> dict[str, Any]:
    commands = await _command_usec(client)
    before = await _cpu(client, pids, opening=True)
    started = time.perf_counter()
    await client.submit_batch(jobs)
    done = await client.wait([j.tx_id for j in jobs], timeout=600)
    seconds = time.perf_counter() - started
    after = await _cpu(client, pids, opening=False)
    spent = await _command_usec(client)
    bad = [r for r in done.values() if r.status not in ("ok", "reverted")]
    if bad:
        raise RuntimeError(f"{len(bad)} transfers ended {bad[0].status}: {bad[0].error}")
    parts = {k: (after[k] - before[k]) * 1e6 / len(jobs) for k in after}
    by_command = {name: (usec - commands.get(name, 0)) / len(jobs)
                  for name, usec in spent.items()}
    return {"redis_us": parts["redis"], "farm_us": sum(parts.values()), "parts": parts,
            "tx_per_s": len(jobs) / seconds,
            "by_command": dict(sorted(((k, v) for k, v in by_command.items() if v >= 0.05),
                                      key=lambda kv: -kv[1]))}


async def _command_usec(client: FarmClient) -> dict[str, int]:
    """Redis's own time per command so far (INFO commandstats; scripts count as the
    EVALSHA that ran them, with the commands they call inside it)."""
    stats = await client.redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(fields["usec"]) for name, fields in stats.items()
            if isinstance(fields, dict) and "usec" in fields}


async def _cpu(client: FarmClient, pids: list[int], opening: bool) -> dict[str, float]:
    """CPU seconds so far: Redis's, the workers' with their executors', this process's.
    This process's own clock is read after the scan of /proc when the window opens and
    before it when it closes: the reading's own work is not the producer's."""
    closing = None if opening else resource.getrusage(resource.RUSAGE_SELF)
    info = await client.redis.info("cpu")
    workers = sum(_process_cpu(p) for p in _with_children(pids))
    own = closing if closing is not None else resource.getrusage(resource.RUSAGE_SELF)
    return {"redis": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "workers": workers, "producer": own.ru_utime + own.ru_stime}


def _with_children(pids: list[int]) -> list[int]:
    """`pids` and every process below them (executors, compile children)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(pids), list(pids)
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent and p not in found]
        found.update(kids)
        frontier += kids
    return sorted(found)


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def _engine_us(settings: Any, names: list[str]) -> float:
    """µs per transfer in-process: the engine alone, against the same accounts; the
    median of ROUNDS rounds of ENGINE_SAMPLE transfers after as many to warm up."""
    from engine import MemoryCode, MemoryState, WasmEngine

    engine = WasmEngine(settings)
    try:
        state, codes = MemoryState(), MemoryCode()
        codes.deploy(CONTRACT, TOKEN.read_bytes())
        state.apply(CONTRACT, {b"bal:" + a.encode(): u64(10**9) for a in names})
        jobs = transfers("engine", names, ENGINE_SAMPLE * (ROUNDS + 1),
                         settings.default_fee_limit, False, 7)
        rounds = []
        for r in range(ROUNDS + 1):  # the first compiles and warms the pool
            started = time.perf_counter()
            for job in jobs[r * ENGINE_SAMPLE : (r + 1) * ENGINE_SAMPLE]:
                result = engine.execute(job, state, codes)
                if result.status == "ok":
                    state.apply(CONTRACT, result.write_set)
            rounds.append((time.perf_counter() - started) * 1e6 / ENGINE_SAMPLE)
        return median(rounds[1:])
    finally:
        engine.shutdown()


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.state_bench [--blocks N]`: the realistic-state block alone, N
    times with access lists on a LocalFarm of 2 workers, a JSON line of CPU µs per tx
    (Redis, workers with executors, producer) and Redis's command time each: what an A/B
    of two commits compares, run alternately."""
    import argparse
    import asyncio
    import json
    import tempfile
    import uuid

    from config import load_settings
    from config.gc_pace import pace_collector
    from producer import FarmClient, LocalFarm

    pace_collector()  # as the CLI (and so `wesfarm bench`) runs
    p = argparse.ArgumentParser(prog="python -m bench.state_bench")
    p.add_argument("--blocks", type=int, default=3)
    args = p.parse_args(argv)

    async def blocks(farm: Any, settings: Any) -> None:
        names = accounts(ACCOUNTS["full"])
        async with FarmClient(settings) as client:
            await _genesis(client, names)
            for b in range(args.blocks):
                jobs = transfers(f"{settings.key_prefix}-b{b}", names, STATE_TXS["full"],
                                 settings.default_fee_limit, True, seed=b)
                m = await _measured(client, jobs, [p.pid for p in farm.processes])
                print(json.dumps({"cpu_us_per_tx": {k: rounded(v) for k, v in m["parts"].items()},
                                  "tx_per_s": rounded(m["tx_per_s"]),
                                  "redis_us_per_tx_by_command": m["by_command"]}), flush=True)

    with tempfile.TemporaryDirectory(prefix="wesfarm-state-") as cache:
        farm = LocalFarm(workers=2, extra_env={"WESFARM_CACHE_DIR": cache})
        farm.prefix = f"wesfarm-state-{uuid.uuid4().hex[:10]}"
        farm.queue = f"{farm.prefix}:queue"
        with farm:
            asyncio.run(blocks(farm, load_settings(redis_url=farm.url, key_prefix=farm.prefix,
                                                   queue_name=farm.queue, cache_dir=Path(cache))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

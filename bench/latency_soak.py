"""Steady-rate latency soak: open-loop single-tx arrivals at a fixed share of the farm's
capacity, with realistic state and a block commit every few seconds.

State: a token contract of its own with ACCOUNTS funded accounts (a genesis block of
mints, committed through the farm). Capacity: closed loop first, with the soak's
commits (rounds of CAPACITY_ROUND single-tx transfers, CAPACITY_DEPTH rounds in flight,
a new one enqueued as each completes, the txs done committed every BLOCK_S): every tx
over the time until the last commit is done gives `soak_capacity_tx_per_s`, a rate the
farm and its commits keep up together (the commit competes with the farm for the
machine's cores, and its blocks of transfers among few accounts are mostly
re-executed).
Soak: transfers among the ACCOUNTS (random sender and recipient) arrive open-loop at
`load` × that capacity, each enqueued through `FarmClient.enqueue` when its arrival
time comes (every tx due goes in one pipelined call, so a late producer does not lower
the offered rate); one `FarmClient.wait` per COHORT_S of arrivals, started before its
first tx is enqueued, records when each result is first seen (`seen`). Every BLOCK_S
the txs that arrived in the block's window are committed (`FarmClient.commit_block`,
once all their results are in; one commit after another) while arrivals go on.

Latency = result first seen − the tx's scheduled arrival (the producer's own lag
counts, as it would for a client), split into legs: arrival → enqueue sent, sent →
result written (the fee-stream entry's id: Redis's clock), written → seen. Figures:
p50/p90/p99/max (ms), the achieved rate (soak txs / first arrival → last result seen),
p99 of the txs in flight during a commit and outside one, and Redis memory growth per
tx: INFO memory `used_memory` after the soak's last commit minus before its first
arrival, over the soak's txs, with the keys it went to (MEMORY USAGE) as a detail.

Run as `python -m bench.latency_soak [--seconds S] [--load F | --rate R]` it starts its
own LocalFarm (2 workers, a private prefix) and prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.commit_bench import GENESIS_TIME_MS, _free_height, u64
from bench.common import TOKEN, Report, Scale, rounded
from bench.redis_memory import bytes_by_key, used_memory

if TYPE_CHECKING:
    from config import Settings
    from engine import Job, Result
    from producer import FarmClient

SOAK_KEYS = ("soak_capacity_tx_per_s", "soak_rate_tx_per_s", "soak_p50_ms", "soak_p90_ms",
             "soak_p99_ms", "soak_max_ms", "soak_redis_bytes_per_tx")
ACCOUNTS = 1_000
BLOCK_S = 5.0
LOAD = 0.5
COHORT_S = 0.1
CAPACITY_ROUND, CAPACITY_DEPTH = 256, 4
WARM_TXS = 500
SOAK_S = {"tiny": 6.0, "quick": 60.0, "full": 180.0}
CAPACITY_S = {"tiny": 2.0, "quick": 8.0, "full": 15.0}
CONTRACT = "soak-token"


@dataclass(slots=True)
class Commit:
    height: int
    txs: int
    started: float  # seconds since the first arrival
    seconds: float
    reexecuted: int


@dataclass(slots=True)
class SoakFigures:
    capacity_tx_per_s: float
    offered_tx_per_s: float
    rate_tx_per_s: float
    txs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    # p50/p99 (ms) of each leg: scheduled arrival → enqueue sent (the producer's lag),
    # sent → result written (the farm: the fee-stream entry's id is Redis's clock),
    # written → seen by FarmClient.wait
    legs_ms: dict[str, dict[str, float]]
    p99_during_commit_ms: float | None
    p99_outside_commit_ms: float | None
    redis_bytes_per_tx: float
    redis_bytes_per_tx_by_key: dict[str, float] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)
    not_ok: int = 0
    not_ok_sample: str = ""  # the status and error of one tx that was not ok
    # per tx: (scheduled arrival, latency, lag, farm leg), seconds since the first arrival
    samples: list[tuple[float, float, float, float]] = field(default_factory=list)


def quantile(values: list[float], q: float) -> float:
    """Nearest rank of sorted `values`."""
    return values[max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))]


class Traffic:
    """Transfers among the accounts: deterministic ids, random senders and recipients."""

    def __init__(self, tag: str, settings: Settings, seed: int = 9) -> None:
        self.tag, self.fee = tag, settings.default_fee_limit
        self.rng = random.Random(seed)
        self.accounts = [f"a{i:04d}" for i in range(ACCOUNTS)]

    def genesis(self, height: int) -> list[Job]:
        from producer import Tx

        return [Tx(f"{self.tag}-soak-m{i}", CONTRACT, "mint", u64(10**12) + a.encode(),
                   None, "genesis").job(height, GENESIS_TIME_MS, self.fee)
                for i, a in enumerate(self.accounts)]

    def tx_id(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def transfer(self, name: str, height: int, time_ms: int) -> Job:
        from producer import Tx

        sender, recipient = self.rng.sample(self.accounts, 2)
        return Tx(self.tx_id(name), CONTRACT, "transfer",
                  u64(self.rng.randint(1, 100)) + recipient.encode(), None,
                  sender).job(height, time_ms, self.fee)


async def soak_figures(rep: Report, farm: Any, scale: Scale, cache_dir: Path) -> None:
    """The bench's soak part (`farm`: a started producer.devfarm.LocalFarm)."""
    from config import load_settings

    settings = load_settings(redis_url=farm.url, key_prefix=farm.prefix,
                             queue_name=farm.queue, cache_dir=cache_dir)
    await run_soak(rep, settings, SOAK_S[scale.name], capacity_s=CAPACITY_S[scale.name])


async def run_soak(rep: Report, settings: Settings, soak_s: float, load: float = LOAD,
                   rate: float | None = None, capacity_s: float = 8.0) -> SoakFigures:
    """Measure capacity, then soak at `load` × capacity (or at `rate` tx/s) for `soak_s`."""
    from producer import FarmClient

    traffic = Traffic(settings.key_prefix, settings)
    async with FarmClient(settings) as client:
        await client.deploy(TOKEN.read_bytes(), CONTRACT, precompile=True)
        height = await _free_height(client)
        genesis = traffic.genesis(height)
        await client.submit_batch(genesis)
        await client.commit_block(genesis, await client.wait(
            [j.tx_id for j in genesis], timeout=300), height)
        rep.progress(f"soak: {CONTRACT} deployed, {ACCOUNTS} accounts funded; warm-up and "
                     f"capacity ({capacity_s:g} s closed loop) ...")
        warm = [traffic.transfer(f"w{i}", height + 1, GENESIS_TIME_MS) for i in range(WARM_TXS)]
        await client.enqueue(warm)
        await client.wait([j.tx_id for j in warm], timeout=300)
        capacity, first = await _capacity(client, traffic, capacity_s, height + 1)
        offered = rate if rate is not None else load * capacity
        rep.progress(f"soak: capacity {capacity:.0f} tx/s; {soak_s:g} s at {offered:.0f} tx/s, "
                     f"a block every {BLOCK_S:g} s ...")
        figures = await _soak(client, traffic, offered, soak_s, first)
        figures.capacity_tx_per_s = rounded(capacity)
    rep.set("soak_capacity_tx_per_s", figures.capacity_tx_per_s,
            f"closed loop for {capacity_s:g} s, {CAPACITY_DEPTH}×{CAPACITY_ROUND} single-tx "
            f"transfers in flight, a block committed every {BLOCK_S:g} s")
    rep.set("soak_rate_tx_per_s", figures.rate_tx_per_s,
            f"offered {figures.offered_tx_per_s:.0f} tx/s for {soak_s:g} s, {figures.txs} txs"
            + (f", {figures.not_ok} not ok! ({figures.not_ok_sample:.120})"
               if figures.not_ok else ""))
    for q in ("p50", "p90", "p99", "max"):
        rep.set(f"soak_{q}_ms", getattr(figures, f"{q}_ms"),
                "scheduled arrival → result seen" if q == "p50" else "")
    rep.set("soak_redis_bytes_per_tx", figures.redis_bytes_per_tx, "used_memory growth / txs")
    rep.extra("soak_redis_bytes_per_tx_by_key", figures.redis_bytes_per_tx_by_key)
    rep.extra("soak_legs_ms", figures.legs_ms)
    rep.extra("soak_p99_during_commit_ms", figures.p99_during_commit_ms)
    rep.extra("soak_p99_outside_commit_ms", figures.p99_outside_commit_ms)
    seconds = [c.seconds for c in figures.commits]
    if seconds:
        rep.extra("soak_commit_s", {"median": rounded(sorted(seconds)[len(seconds) // 2]),
                                    "max": rounded(max(seconds)), "blocks": len(seconds)})
    return figures


async def _capacity(client: FarmClient, traffic: Traffic, seconds: float,
                    height: int) -> tuple[float, int]:
    """Closed loop with the soak's commits: CAPACITY_DEPTH rounds in flight, a new one as
    each completes, for `seconds`; every BLOCK_S the txs whose results are in are
    committed as the next block (one commit after another, as in the soak). The rate is
    every tx over the time until the last commit is done: a rate the farm and its commits
    can keep up. Returns it and the next free height."""
    counter = 0
    finished: list[tuple[list[Job], dict[str, Result]]] = []  # rounds, as they complete

    async def one_round() -> int:
        nonlocal counter
        jobs = [traffic.transfer(f"c{counter + i}", height, GENESIS_TIME_MS)
                for i in range(CAPACITY_ROUND)]
        counter += CAPACITY_ROUND
        waiter = asyncio.create_task(client.wait([j.tx_id for j in jobs], timeout=300))
        await client.enqueue(jobs)
        finished.append((jobs, await waiter))
        return len(jobs)

    async def commit(rounds: list[tuple[list[Job], dict[str, Result]]], at: int,
                     previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await previous
        jobs = [j for block, _ in rounds for j in block]
        report = await client.commit_block(jobs, {t: r for _, done in rounds
                                                  for t, r in done.items()}, at)
        if report.not_committed:
            raise RuntimeError(f"capacity block {at}: {len(report.not_committed)} not committed")

    commits: list[asyncio.Task[None]] = []

    def cut() -> None:
        rounds = finished[:]
        finished.clear()
        commits.append(asyncio.create_task(
            commit(rounds, height + len(commits), commits[-1] if commits else None)))

    started = time.perf_counter()
    next_cut = started + BLOCK_S
    tasks = {asyncio.create_task(one_round()) for _ in range(CAPACITY_DEPTH)}
    done = 0
    while tasks:
        ended, tasks = await asyncio.wait(tasks, timeout=max(0.0, next_cut - time.perf_counter()),
                                          return_when=asyncio.FIRST_COMPLETED)
        done += sum(t.result() for t in ended)
        now = time.perf_counter()
        if now - started < seconds:
            tasks |= {asyncio.create_task(one_round()) for _ in ended}
        if now >= next_cut:
            next_cut = now + BLOCK_S
            if finished:
                cut()
    if finished:
        cut()
    await asyncio.gather(*commits)
    return done / (time.perf_counter() - started), height + len(commits)


async def _soak(client: FarmClient, traffic: Traffic, rate: float, soak_s: float,
                first_height: int) -> SoakFigures:
    """The open-loop run. Jobs are made a block at a time and, like their results,
    dropped once the block is committed: what the producer holds stays one or two
    blocks' worth, as a block builder's would (the collector's full passes grow with it)."""
    n = max(1, int(rate * soak_s))
    per_block = max(1, round(rate * BLOCK_S))
    per_cohort = max(1, round(rate * COHORT_S))
    blocks: dict[int, list[Job]] = {}
    seen: dict[str, float] = {}
    sent_at = [0.0] * n
    waits: dict[int, asyncio.Task[dict[str, Result]]] = {}
    commits: list[Commit] = []
    commit_tasks: list[asyncio.Task[None]] = []
    bad: list[Result] = []
    not_ok = [0]
    used_before = await used_memory(client)
    t0 = time.monotonic() + 0.05
    wall_t0 = t0 + time.time() - time.monotonic()
    first_fee = f"{int(wall_t0 * 1000) - 1_000}-0"

    def block(b: int) -> list[Job]:
        if b not in blocks:
            blocks[b] = [traffic.transfer(f"s{i}", first_height + b,
                                          GENESIS_TIME_MS + int(1_000 * BLOCK_S) * (1 + b))
                         for i in range(b * per_block, min(n, (b + 1) * per_block))]
        return blocks[b]

    async def commit(b: int, previous: asyncio.Task[None] | None) -> None:
        lo, hi = b * per_block, min(n, (b + 1) * per_block)
        results: dict[str, Result] = {}
        for done in await asyncio.gather(*(waits[c] for c in range(
                lo // per_cohort, (hi - 1) // per_cohort + 1))):
            results.update(done)
        if previous is not None:
            await previous
        started = time.monotonic()
        report = await client.commit_block(block(b), results, first_height + b)
        commits.append(Commit(first_height + b, hi - lo, started - t0,
                              time.monotonic() - started, report.reexecuted))
        wrong = [r for j in block(b) if (r := results[j.tx_id]).status != "ok"]
        not_ok[0] += len(wrong)
        bad[len(bad):] = wrong[: 1 - len(bad)]  # one kept, to show
        del blocks[b]
        for c in [c for c in waits if (c + 1) * per_cohort <= hi]:
            del waits[c]

    i = 0
    while i < n:
        now = time.monotonic()
        due = min(n, max(i + 1, math.floor((now - t0) * rate) + 1))
        if t0 + i / rate > now:
            await asyncio.sleep(t0 + i / rate - now)
            continue
        for c in range(i // per_cohort, (due - 1) // per_cohort + 1):
            if c not in waits:
                ids = [traffic.tx_id(f"s{k}") for k in
                       range(c * per_cohort, min(n, (c + 1) * per_cohort))]
                waits[c] = asyncio.create_task(client.wait(ids, timeout=soak_s + 300,
                                                           seen=seen))
        await asyncio.sleep(0)  # let the new waits start watching the fee stream
        sent = time.monotonic()
        sent_at[i:due] = [sent] * (due - i)
        await client.enqueue([j for b in range(i // per_block, (due - 1) // per_block + 1)
                              for j in block(b)[max(0, i - b * per_block):due - b * per_block]])
        for b in range(i // per_block, due // per_block):  # blocks whose window closed
            commit_tasks.append(asyncio.create_task(
                commit(b, commit_tasks[-1] if commit_tasks else None)))
        i = due
    if n % per_block:
        commit_tasks.append(asyncio.create_task(
            commit(n // per_block, commit_tasks[-1] if commit_tasks else None)))
    await asyncio.gather(*commit_tasks)
    used_after = await used_memory(client)

    ids = [traffic.tx_id(f"s{k}") for k in range(n)]
    written = {e.tx_id: int(e.stream_id.split("-")[0]) / 1000 - wall_t0 + t0
               for e in await client.fee_reports(start=first_fee)}
    samples = [(k / rate, seen[t] - (t0 + k / rate), sent_at[k] - (t0 + k / rate),
                written[t] - sent_at[k]) for k, t in enumerate(ids)]
    latencies = sorted(s[1] for s in samples)
    legs = {"enqueue_lag": [s[2] for s in samples], "farm": [s[3] for s in samples],
            "wait": [seen[t] - written[t] for t in ids]}
    windows = [(c.started, c.started + c.seconds) for c in commits]

    def overlaps(s: tuple[float, float, float, float]) -> bool:
        return any(a < s[0] + s[1] and s[0] < b for a, b in windows)

    during = sorted(s[1] for s in samples if overlaps(s))
    outside = sorted(s[1] for s in samples if not overlaps(s))
    return SoakFigures(
        capacity_tx_per_s=0.0, offered_tx_per_s=rounded(rate),
        rate_tx_per_s=rounded(n / (max(seen.values()) - t0)), txs=n,
        p50_ms=rounded(quantile(latencies, 0.5) * 1e3),
        p90_ms=rounded(quantile(latencies, 0.9) * 1e3),
        p99_ms=rounded(quantile(latencies, 0.99) * 1e3),
        max_ms=rounded(latencies[-1] * 1e3),
        legs_ms={name: {f"p{round(q * 100)}": rounded(quantile(sorted(v), q) * 1e3)
                        for q in (0.5, 0.99)} for name, v in legs.items()},
        p99_during_commit_ms=rounded(quantile(during, 0.99) * 1e3) if during else None,
        p99_outside_commit_ms=rounded(quantile(outside, 0.99) * 1e3) if outside else None,
        redis_bytes_per_tx=rounded((used_after - used_before) / n),
        redis_bytes_per_tx_by_key=await bytes_by_key(client, ids, first_height, len(commits)),
        commits=sorted(commits, key=lambda c: c.height),
        not_ok=not_ok[0], not_ok_sample=f"{bad[0].status}: {bad[0].error}" if bad else "",
        samples=samples)


def main(argv: list[str] | None = None) -> int:
    import tempfile
    import uuid

    from config import load_settings
    from producer import LocalFarm

    p = argparse.ArgumentParser(prog="python -m bench.latency_soak", description=__doc__)
    p.add_argument("--seconds", type=float, default=SOAK_S["quick"])
    p.add_argument("--load", type=float, default=LOAD, help="share of the measured capacity")
    p.add_argument("--rate", type=float, help="a fixed rate (tx/s) instead of --load")
    p.add_argument("--capacity-seconds", type=float, default=CAPACITY_S["quick"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--redis", help="a Redis URL (default: as the bench resolves it)")
    p.add_argument("--samples", type=Path, help="write per-tx (arrival, latency, lag, farm) here")
    args = p.parse_args(argv)
    rep = Report()
    with tempfile.TemporaryDirectory(prefix="wesfarm-soak-") as cache:
        farm = LocalFarm(workers=args.workers, configured_url=args.redis,
                         extra_env={"WESFARM_CACHE_DIR": cache})
        farm.prefix = f"wesfarm-soak-{uuid.uuid4().hex[:10]}"
        farm.queue = f"{farm.prefix}:queue"
        with farm:
            settings = load_settings(redis_url=farm.url, key_prefix=farm.prefix,
                                     queue_name=farm.queue, cache_dir=Path(cache))
            figures = asyncio.run(run_soak(rep, settings, args.seconds, args.load, args.rate,
                                           args.capacity_seconds))
    out = asdict(figures)
    samples = out.pop("samples")
    if args.samples:
        args.samples.write_text(json.dumps(samples))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

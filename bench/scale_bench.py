"""Scale-out: does a second worker make a heavy block faster, and does each worker run its
share of it?

Two farms at once on the same Redis (producer/devfarm.py's LocalFarm, private prefixes),
every worker with one executor: one farm of one worker, one of two. Each gets a warm-up
block, then the two take turns for SCALE_RUNS heavy blocks each (turns, so a drift of
the shared machine's speed moves both alike): SCALE_TXS txs of a compute loop of ~2 ms
each (no state, no conflict), cut by `FarmClient.submit_batch` into parts sized to the
executors the workers advertise. Time: submit → every result readable. Figures: the
median of each farm's times, `scale_2w_vs_1w` = the median of the turns' ratios (one
worker's time / two workers'), `worker_share_min` = the smallest share of a block one of
the two workers ran (the worker name in each Result), and as a detail how busy the
executors were (execution time over wall time × executors): what is left of a perfect
2.0 beside it is the farm's own CPU (workers, producer, Redis) on the same cores. In
every turn the same txs also run on bare engines (bench/bare_engines.py), in one process
and then half each in two at once: `scale_bare_2p_vs_1p`, what the machine itself gives
a second busy process, the ceiling `scale_2w_vs_1w` is read against.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from bench.bare_engines import FEE_LIMIT, ITERATIONS, LOOP_WAT, TIMEOUT_MS, BareEngines
from bench.common import Report, rounded

SCALE_KEYS = ("scale_1w_s", "scale_2w_s", "scale_2w_vs_1w", "worker_share_min",
              "scale_bare_2p_vs_1p")
SCALE_TXS = {"tiny": 40, "quick": 300, "full": 300}
SCALE_RUNS = 5


@dataclass(slots=True)
class Run:
    seconds: float
    share_min: float  # the smallest share of the block one worker ran
    busy: float  # execution time / (wall time × executors)


def scale_figures(rep: Report, scale_name: str) -> None:
    from producer import LocalFarm

    txs = SCALE_TXS[scale_name]
    rep.progress(f"scale: a farm of 1 worker and one of 2 (1 executor each), {SCALE_RUNS} "
                 f"blocks of {txs} heavy txs each, in turns with bare engines in 1 and 2 "
                 "processes ...")
    with contextlib.ExitStack() as stack:
        bare = BareEngines()
        stack.callback(bare.close)
        farms = []
        for workers in (1, 2):
            cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="wesfarm-scale-"))
            farm = LocalFarm(workers=workers, executors=1,
                             extra_env={"WESFARM_CACHE_DIR": cache})
            farm.prefix = f"wesfarm-bench-scale-{uuid.uuid4().hex[:10]}"
            farm.queue = f"{farm.prefix}:queue"
            farms.append((stack.enter_context(farm), workers, cache))
        one, two, machine = asyncio.run(_turns(farms, txs, bare))
    rep.set("scale_1w_s", rounded(statistics.median(r.seconds for r in one)),
            f"{txs} txs of ~2 ms, 1 worker × 1 executor, median of {SCALE_RUNS}")
    rep.set("scale_2w_s", rounded(statistics.median(r.seconds for r in two)),
            "2 workers × 1 executor")
    rep.set("scale_2w_vs_1w", rounded(statistics.median(
        a.seconds / b.seconds for a, b in zip(one, two, strict=True))),
        "median of the turns' ratios")
    rep.set("worker_share_min", rounded(min(r.share_min for r in two)),
            "smallest share of a block one worker ran")
    rep.set("scale_bare_2p_vs_1p", rounded(statistics.median(machine)),
            "the machine's own: the same txs on bare engines, 1 process vs 2 at once, "
            "median of the turns")
    rep.extra("scale_executor_busy", {"1w": rounded(statistics.median(r.busy for r in one)),
                                      "2w": rounded(statistics.median(r.busy for r in two))})


async def _turns(farms: list[tuple[Any, int, str]], txs: int,
                 bare: BareEngines) -> tuple[list[Run], list[Run], list[float]]:
    import wasmtime

    from config import load_settings
    from producer import FarmClient

    code = bytes(wasmtime.wat2wasm(LOOP_WAT))
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for farm, workers, cache in farms:
            client = await stack.enter_async_context(FarmClient(load_settings(
                redis_url=farm.url, key_prefix=farm.prefix, queue_name=farm.queue,
                cache_dir=cache)))
            deadline = time.monotonic() + 30
            while (await client.farm_size()).executors < workers:  # every word is in
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{workers} worker(s) never advertised their executors")
                await asyncio.sleep(0.1)
            await client.deploy(code, "loop", precompile=True)
            await _block(client, farm.prefix, "warm", txs, workers)
            clients.append((client, farm.prefix, workers))
        one: list[Run] = []
        two: list[Run] = []
        machine: list[float] = []
        for turn in range(SCALE_RUNS):
            for runs, (client, prefix, workers) in zip((one, two), clients, strict=True):
                runs.append(await _block(client, prefix, f"r{turn}", txs, workers))
            machine.append(await asyncio.to_thread(bare.turn, txs))
    return one, two, machine


async def _block(client: Any, prefix: str, tag: str, txs: int, workers: int) -> Run:
    jobs = [replace(client.make_job("loop", "run", (ITERATIONS + i).to_bytes(8, "little"),
                                    fee_limit=FEE_LIMIT, tx_id=f"{prefix}-{tag}-{i}"),
                    timeout_ms=TIMEOUT_MS) for i in range(txs)]
    started = time.perf_counter()
    await client.submit_batch(jobs)
    done = await client.wait([j.tx_id for j in jobs], timeout=300)
    seconds = time.perf_counter() - started
    bad = [r for r in done.values() if r.status != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} heavy txs not ok: {bad[0].status} {bad[0].error}")
    share = Counter(r.worker for r in done.values())
    executing = sum(r.timings.get("exec_us", 0.0) for r in done.values()) / 1e6
    return Run(seconds, min(share.values()) / txs if len(share) == workers else 0.0,
               executing / (seconds * workers))

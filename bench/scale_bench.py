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
2.0 beside it is the farm's own CPU (workers, producer, Redis) on the same cores.
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

from bench.common import Report, rounded

SCALE_KEYS = ("scale_1w_s", "scale_2w_s", "scale_2w_vs_1w", "worker_share_min")
SCALE_TXS = {"tiny": 40, "quick": 300, "full": 300}
SCALE_RUNS = 5
ITERATIONS = 1_400_000  # ~2 ms of loop per tx on this project's machine, ~3.4e8 fee units
FEE_LIMIT, TIMEOUT_MS = 10**9, 10_000  # a fee limit this high needs a longer timeout
LOOP_WAT = """
(module
  (import "wes" "input_read" (func $input_read (param i32)))
  (import "wes" "return_data" (func $return_data (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "run")
    (local $n i64)
    (call $input_read (i32.const 0))
    (local.set $n (i64.load (i32.const 0)))
    (block $done (loop $l
      (br_if $done (i64.eqz (local.get $n)))
      (local.set $n (i64.sub (local.get $n) (i64.const 1)))
      (br $l)))
    (call $return_data (i32.const 0) (i32.const 8))))
"""


@dataclass(slots=True)
class Run:
    seconds: float
    share_min: float  # the smallest share of the block one worker ran
    busy: float  # execution time / (wall time × executors)


def scale_figures(rep: Report, scale_name: str) -> None:
    from producer import LocalFarm

    txs = SCALE_TXS[scale_name]
    rep.progress(f"scale: a farm of 1 worker and one of 2 (1 executor each), {SCALE_RUNS} "
                 f"blocks of {txs} heavy txs each, in turns ...")
    with contextlib.ExitStack() as stack:
        farms = []
        for workers in (1, 2):
            cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="wesfarm-scale-"))
            farm = LocalFarm(workers=workers, executors=1,
                             extra_env={"WESFARM_CACHE_DIR": cache})
            farm.prefix = f"wesfarm-bench-scale-{uuid.uuid4().hex[:10]}"
            farm.queue = f"{farm.prefix}:queue"
            farms.append((stack.enter_context(farm), workers, cache))
        one, two = asyncio.run(_turns(farms, txs))
    rep.set("scale_1w_s", rounded(statistics.median(r.seconds for r in one)),
            f"{txs} txs of ~2 ms, 1 worker × 1 executor, median of {SCALE_RUNS}")
    rep.set("scale_2w_s", rounded(statistics.median(r.seconds for r in two)),
            "2 workers × 1 executor")
    rep.set("scale_2w_vs_1w", rounded(statistics.median(
        a.seconds / b.seconds for a, b in zip(one, two, strict=True))),
        "median of the turns' ratios")
    rep.set("worker_share_min", rounded(min(r.share_min for r in two)),
            "smallest share of a block one worker ran")
    rep.extra("scale_executor_busy", {"1w": rounded(statistics.median(r.busy for r in one)),
                                      "2w": rounded(statistics.median(r.busy for r in two))})


async def _turns(farms: list[tuple[Any, int, str]], txs: int) -> tuple[list[Run], list[Run]]:
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
        runs: tuple[list[Run], list[Run]] = ([], [])
        for turn in range(SCALE_RUNS):
            for i, (client, prefix, workers) in enumerate(clients):
                runs[i].append(await _block(client, prefix, f"r{turn}", txs, workers))
    return runs


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

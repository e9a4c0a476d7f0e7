"""End-to-end figures: Redis + 2 `wesfarm worker`s (and 2 no-op arq workers as the baseline).

The farm runs on a private key prefix and queue (producer/devfarm.py, Redis from
`resolve_redis(None)`: this machine's if it answers, else an embedded one) and
everything under that prefix is deleted at the end. Throughput = N txs enqueued at
once (pipelined) / time until every result is readable. The baseline is arq itself:
no-op jobs through the same Redis, the same worker settings and the same enqueue
path, in the same run: stock arq (`arq_noop_jobs_per_s`, the baseline) and,
as a detail, the farm's own ClaimingWorker (worker/claim.py), whose batched claim is
part of why the farm beats the stock figure. Latency: single txs at a steady rate
well below capacity, enqueue → result readable, one poller per tx.

Run as `python -m bench.farm_bench [claiming]` it is a no-op arq worker.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT, TOKEN, Report, Scale, rounded

FARM_KEYS = ("e2e_tx_per_s_single", "e2e_tx_per_s_batch", "arq_noop_jobs_per_s",
             "latency_p50_ms", "latency_p99_ms")
NOOP = "noop"


async def noop(ctx: dict[str, Any], *args: Any) -> None:
    return None


def noop_worker(claiming: bool = False) -> None:
    """An arq worker with the farm's own settings (poll delay, max jobs, serializer,
    uvloop): stock arq, or the farm's ClaimingWorker."""
    import uvloop
    from arq.worker import Worker, func

    from config import load_settings
    from worker import ClaimingWorker, namespace_arq, worker_kwargs

    settings = load_settings()
    namespace_arq(settings.key_prefix)  # as a farm's worker does in its startup
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    kwargs = worker_kwargs(settings, os.environ["WESFARM_REDIS_URL"])
    kwargs.update(functions=[func(noop, name=NOOP)], on_startup=None, on_shutdown=None, ctx={})
    (ClaimingWorker if claiming else Worker)(**kwargs).run()


def farm_available() -> str | None:
    """None when the farm code can be used, else why not."""
    try:
        from producer import FarmClient, LocalFarm  # noqa: F401
    except Exception as exc:
        return f"farm code not importable: {type(exc).__name__}: {exc}"
    done = subprocess.run([sys.executable, "-m", "producer.cli", "worker", "--help"],
                          capture_output=True, cwd=ROOT, timeout=60)
    if done.returncode != 0:
        return "`wesfarm worker --help` failed"
    return None


# A further part of the bench run on the same farm: (rep, farm, scale, cache dir).
FarmPart = Callable[[Report, Any, Scale, Path], Coroutine[Any, Any, None]]


def farm_figures(rep: Report, scale: Scale, parts: Sequence[FarmPart] = ()) -> None:
    """The end-to-end figures, then each of `parts` (its own failure noted, not raised)."""
    why = farm_available()
    if why is not None:
        for key in FARM_KEYS:
            rep.set(key, None)
        rep.note(f"end-to-end figures skipped: {why}")
        return
    from producer import LocalFarm

    cache = tempfile.TemporaryDirectory(prefix="wesfarm-bench-farm-")
    farm = LocalFarm(workers=2, extra_env={"WESFARM_CACHE_DIR": cache.name})
    tag = uuid.uuid4().hex[:10]
    farm.prefix = f"wesfarm-bench-{tag}"
    farm.queue = f"{farm.prefix}:queue"
    rep.progress("starting Redis and 2 workers ...")
    with cache, farm:
        rep.progress(f"farm up on {farm.url} ({'shared' if farm.shared else 'embedded'} Redis), "
                     f"prefix {farm.prefix}")
        failed: Exception | None = None
        try:
            noop_rate = asyncio.run(_noop_rate(rep, farm, scale))
            claiming_rate = asyncio.run(_noop_rate(rep, farm, scale, claiming=True))
            asyncio.run(_farm_run(rep, farm, scale, Path(cache.name)))
        except Exception as exc:  # the further parts still run on this farm
            failed = exc
        for part in parts:
            try:
                asyncio.run(part(rep, farm, scale, Path(cache.name)))
            except Exception as exc:
                rep.note(f"{part.__module__}.{part.__name__} failed: "
                         f"{type(exc).__name__}: {exc}")
        if failed is not None:
            raise failed
    rep.set("arq_noop_jobs_per_s", rounded(noop_rate), "stock arq's ceiling, same settings")
    rep.extra("claiming_noop_jobs_per_s", rounded(claiming_rate))
    single = rep.values.get("e2e_tx_per_s_single")
    if single:
        rep.extra("e2e_single_vs_arq_noop", rounded(single / noop_rate))
        rep.extra("e2e_single_vs_claiming_noop", rounded(single / claiming_rate))


async def _noop_rate(rep: Report, farm: Any, scale: Scale, claiming: bool = False) -> float:
    """Two no-op arq workers on their own queue; N jobs through the farm's enqueue path."""
    from arq.connections import RedisSettings, create_pool

    from producer import ArqJob, PipelinedEnqueuer
    from worker.protocol import Keys, health_check_key, job_deserializer, job_serializer

    queue = f"{farm.prefix}:noop-queue" + (":claiming" if claiming else "")
    env = dict(farm.env(), WESFARM_QUEUE_NAME=queue)
    argv = [sys.executable, "-m", "bench.farm_bench", *(["claiming"] if claiming else [])]
    procs = [subprocess.Popen(argv, env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(2)]
    redis = await create_pool(RedisSettings.from_dsn(farm.url), job_serializer=job_serializer,
                              job_deserializer=job_deserializer, default_queue_name=queue)
    try:
        deadline = time.monotonic() + 60
        while not await redis.exists(health_check_key(queue)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("no-op arq workers did not start")
            await asyncio.sleep(0.05)
        keys = Keys(farm.prefix)
        enqueuer = PipelinedEnqueuer(redis, queue, keys)
        ids = [f"{queue}:{i}" for i in range(scale.farm_noop)]
        started = time.perf_counter()
        await enqueuer.enqueue([ArqJob(i, NOOP, ()) for i in ids])
        await _wait_keys(redis, [keys.arq("result:") + i for i in ids], 120)
        return len(ids) / (time.perf_counter() - started)
    finally:
        await redis.aclose()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def _wait_keys(redis: Any, keys: list[str], timeout: float) -> None:
    pending = keys
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for i in range(0, len(pending), 500):
            group = pending[i : i + 500]
            async with redis.pipeline(transaction=False) as pipe:
                for key in group:
                    pipe.exists(key)
                flags = await pipe.execute()
            still += [k for k, f in zip(group, flags, strict=True) if not f]
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} jobs did not finish in {timeout} s")
            await asyncio.sleep(0.002)


async def _farm_run(rep: Report, farm: Any, scale: Scale, cache_dir: Path) -> None:
    from config import load_settings
    from engine import Context, Job
    from producer import FarmClient

    settings = load_settings(redis_url=farm.url, key_prefix=farm.prefix, queue_name=farm.queue,
                             cache_dir=cache_dir)
    async with FarmClient(settings, farm.url) as client:
        await client.deploy(TOKEN.read_bytes(), "token", precompile=True)
        mint = client.make_job("token", "mint", (10**15).to_bytes(8, "little"), caller="alice",
                               tx_id=f"{farm.prefix}-mint")
        await client.submit_batch([mint], batch_size=1)
        minted = await client.wait([mint.tx_id], timeout=60)
        report = await client.commit_block([mint], minted, 1)
        rep.progress(f"token deployed and minted ({report!s:.60})")
        amount = (1).to_bytes(8, "little")
        context = Context("alice", 2, 1_700_000_000_000)

        def jobs(tag: str, n: int) -> list[Job]:
            return [Job(f"{farm.prefix}-{tag}-{i}", "token", "transfer",
                        amount + f"acct{i % 100:03d}".encode(), settings.default_fee_limit,
                        context)
                    for i in range(n)]

        warm = jobs("warm", 200)
        await client.submit_batch(warm, batch_size=1)
        await client.wait([j.tx_id for j in warm], timeout=120)
        for key, tag, n, size in (("e2e_tx_per_s_single", "single", scale.farm_single, 1),
                                  ("e2e_tx_per_s_batch", "batch", scale.farm_batch,
                                   settings.batch_size)):
            todo = jobs(tag, n)
            started = time.perf_counter()
            await client.submit_batch(todo, batch_size=size)
            done = await client.wait([j.tx_id for j in todo], timeout=300)
            rate = n / (time.perf_counter() - started)
            bad = sum(1 for r in done.values() if r.status != "ok")
            rep.set(key, rounded(rate), f"{n} transfers, {size} per job"
                    + (f", {bad} not ok!" if bad else ""))
        await _latency(rep, client, jobs("lat", scale.latency_jobs),
                       min(200.0, rep.values["e2e_tx_per_s_single"] / 5))


async def _latency(rep: Report, client: Any, todo: list[Any], rate: float) -> None:
    """Enqueue one tx every 1/rate s; each has its own poller (HEXISTS of the results'
    index hash of now, every 0.25 ms)."""
    from worker.protocol import generation, index_key

    latencies: list[float] = []
    ttl = client.settings.result_ttl_s

    async def one(job: Any) -> None:
        started = time.perf_counter()
        await client.enqueue([job])
        while not await client.redis.hexists(index_key(client.keys.prefix, generation(ttl)),
                                             job.tx_id):
            await asyncio.sleep(0.00025)
        latencies.append(time.perf_counter() - started)

    tasks = []
    interval = 1 / rate
    t0 = time.perf_counter()
    for i, job in enumerate(todo):
        delay = t0 + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(job)))
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    rep.set("latency_p50_ms", rounded(p50 * 1e3), f"{len(latencies)} txs at {rate:.0f}/s")
    rep.set("latency_p99_ms", rounded(p99 * 1e3))


if __name__ == "__main__":
    noop_worker(claiming=sys.argv[1:] == ["claiming"])

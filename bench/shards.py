"""`wesfarm bench --shards`: the farm past one Redis, measured on a local Redis Cluster.

docs/SCALING.md's design: a shard of the farm is a key prefix whose braces are a Redis
Cluster hash tag (`{wsb...s0}:...`), so every key of a shard -- arq's queue and job
keys, results, fee stream, state, commits -- lives in one slot, every script touches
one slot, and one worker serves one shard with arq as it is (plain connections to the
node owning the slot). This part starts a cluster of SHARD_NODES masters on 127.0.0.1,
picks one tag per master, and on each shard in turn runs the realistic-state block
(bench/state_bench.py: transfers among many distinct accounts, access lists) through
a farm of its own, then commits a block there. The same runs on one plain redis-server
first: the baseline. Figures: Redis CPU per tx on each node (INFO cpu of that node
alone: only its shard runs on it), and the ceilings that follow, one Redis's against
the cluster's (the sum of each node's, with a core per node). On this 2-core machine
the nodes share the cores with the farms, so the cluster's tx/s is not shown to scale:
the CPU per tx is what is measured.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import Report, rounded

if TYPE_CHECKING:
    from redis import Redis

SHARD_NODES = 3
SLOTS = 16_384
SHARD_ACCOUNTS, SHARD_TXS = 20_000, 4_000
DEFAULT_OUT = Path("bench-results") / "shards.json"


def _cluster(client: Redis, *args: Any) -> Any:
    """A CLUSTER subcommand, its reply as redis-py parses it."""
    return client.cluster(*args)  # type: ignore[arg-type]


class LocalCluster:
    """Redis-servers in cluster mode on 127.0.0.1, the slots split evenly among them,
    nothing persisted; `start` forms the cluster."""

    def __init__(self, nodes: int = SHARD_NODES) -> None:
        from producer import EmbeddedRedis

        self.nodes: list[Any] = []
        try:
            for _ in range(nodes):
                self.nodes.append(EmbeddedRedis(cluster=True))
        except Exception:
            self.stop()
            raise

    def start(self) -> None:
        import redis

        clients = [redis.Redis.from_url(n.url) for n in self.nodes]
        try:
            step = SLOTS // len(clients)
            for i, client in enumerate(clients):
                last = SLOTS - 1 if i == len(clients) - 1 else (i + 1) * step - 1
                _cluster(client, "ADDSLOTS", *range(i * step, last + 1))
            for node in self.nodes[1:]:
                _cluster(clients[0], "MEET", "127.0.0.1", node.port)
            deadline = time.monotonic() + 30
            while not all(_cluster(c, "INFO")["cluster_state"] == "ok" for c in clients):
                if time.monotonic() > deadline:
                    raise RuntimeError("the local Redis Cluster did not come up")
                time.sleep(0.1)
        finally:
            for client in clients:
                client.close()

    def tags(self, run: str) -> list[tuple[str, str]]:
        """One (hash tag, node url) per node: `{wsb<run>s<k>}` for the first k on it."""
        import redis

        client = redis.Redis.from_url(self.nodes[0].url)
        try:
            step = SLOTS // len(self.nodes)
            found: dict[int, str] = {}
            k = 0
            while len(found) < len(self.nodes):
                tag = f"{{wsb{run}s{k}}}"
                slot = int(_cluster(client, "KEYSLOT", tag))
                found.setdefault(min(slot // step, len(self.nodes) - 1), tag)
                k += 1
        finally:
            client.close()
        return [(found[i], self.nodes[i].url) for i in range(len(self.nodes))]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def run_shards(json_path: Path | None) -> dict[str, Any]:
    """`wesfarm bench --shards`: the figures, printed and written with the others'."""
    import json

    from bench.common import fmt, machine

    rep = Report()
    shard_figures(rep)
    values = {**rep.values, **rep.extras}
    print()
    for key, value in values.items():
        print(f"{key:40} {fmt(value)}")
    for note in rep.notes:
        print(f"note: {note}")
    out = DEFAULT_OUT
    for path in {out, *([json_path] if json_path else [])}:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**values, "machine": machine()}, indent=1) + "\n")
    print(f"\nwritten: {', '.join(str(p) for p in (out, json_path) if p)}")
    return values


def shard_figures(rep: Report) -> None:
    from producer import EmbeddedRedis

    run = uuid.uuid4().hex[:6]
    plain = EmbeddedRedis()
    try:
        rep.progress("shards: the realistic-state block on one plain Redis (baseline) ...")
        one = _shard(rep, plain.url, f"wsb{run}plain")
    finally:
        plain.stop()
    rep.progress(f"shards: a local Redis Cluster of {SHARD_NODES} masters ...")
    cluster = LocalCluster()
    try:
        cluster.start()
        per_node = []
        for tag, url in cluster.tags(run):
            rep.progress(f"shards: shard {tag} on {url} ...")
            per_node.append(_shard(rep, url, tag))
    finally:
        cluster.stop()
    rep.set("shard_redis_cpu_us_per_tx_one_redis", rounded(one["redis_us"]),
            f"{SHARD_TXS:,} transfers among {SHARD_ACCOUNTS:,} accounts, plain redis-server")
    rep.set("shard_redis_cpu_us_per_tx_by_node", [rounded(f["redis_us"]) for f in per_node],
            "each node of the cluster, its shard alone on it")
    rep.set("shard_ceiling_one_redis_tx_per_s", rounded(1e6 / one["redis_us"]))
    rep.set("shard_ceiling_cluster_tx_per_s", rounded(sum(1e6 / f["redis_us"] for f in per_node)),
            f"sum over {SHARD_NODES} nodes, a core each")
    rep.extra("shard_commit_ok", all(f["committed"] == SHARD_TXS for f in [one, *per_node]))
    rep.extra("shard_tx_per_s", [rounded(f["tx_per_s"]) for f in [one, *per_node]])


def _shard(rep: Report, url: str, tag: str) -> dict[str, Any]:
    """The realistic-state block, then its commit, on a farm of one worker whose every
    key is under the prefix `tag`, on the Redis at `url`."""
    from producer import LocalFarm

    with tempfile.TemporaryDirectory(prefix="wesfarm-bench-shard-") as cache:
        farm = LocalFarm(workers=1, configured_url=url, extra_env={"WESFARM_CACHE_DIR": cache})
        farm.prefix = tag if tag.startswith("{") else f"{{{tag}}}"
        farm.queue = f"{farm.prefix}:queue"
        with farm:
            return asyncio.run(_measure(rep, farm, Path(cache)))


async def _measure(rep: Report, farm: Any, cache: Path) -> dict[str, Any]:
    from bench.state_bench import run_state_bench, transfers
    from config import load_settings
    from producer import FarmClient

    settings = load_settings(redis_url=farm.url, key_prefix=farm.prefix,
                             queue_name=farm.queue, cache_dir=cache)
    mine = Report(quiet=True)
    await run_state_bench(mine, settings, [p.pid for p in farm.processes],
                          SHARD_ACCOUNTS, SHARD_TXS)
    from bench.state_bench import accounts

    async with FarmClient(settings) as client:  # the commit's scripts, in one slot too
        jobs = transfers(f"{farm.prefix}-c", accounts(SHARD_ACCOUNTS), SHARD_TXS,
                         settings.default_fee_limit, True, seed=7)
        await client.submit_batch(jobs)
        done = await client.wait([j.tx_id for j in jobs], timeout=600)
        report = await client.commit_block(jobs, done, await client.next_height())
    extras = mine.extras.get("state_tx_per_s", {})
    return {"redis_us": mine.values["redis_cpu_us_per_tx"], "committed": report.committed,
            "tx_per_s": extras.get("access", 0.0)}

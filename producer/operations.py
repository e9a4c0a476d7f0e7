"""What an operator asks of a farm's Redis: its state at a glance (`wesfarm status`) and
the removal of everything it keeps (`wesfarm clean`). Synchronous: one command, a few
round trips."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, cast

import msgpack
import redis

from worker.protocol import FARM_LUA, Keys, entry_statuses, health_check_key

WINDOW_MS = 60_000
MAX_WINDOW_RECORDS = 200_000  # fee records a status reads at most
WINDOW_PAGE = 50  # entries (each up to a part of records) a read takes
SCAN_COUNT = 1_000
DELETE_CHUNK = 500


def farm_status(client: redis.Redis, keys: Keys, queue: str) -> dict[str, Any]:
    """Workers alive (executors, version), queue depth, the last minute's txs by status,
    the last committed block and the state root."""
    client.eval(FARM_LUA, 3, keys.workers, keys.worker_executors,  # drops expired words
                keys.worker_versions)
    names = [n.decode() for n in cast(list[bytes], client.zrange(keys.workers, 0, -1))]
    executors = cast(list[Any], client.hmget(keys.worker_executors, names)) if names else []
    versions = cast(list[Any], client.hmget(keys.worker_versions, names)) if names else []
    workers = [{"name": n, "executors": int(e or 0), "version": (v or b"").decode()}
               for n, e, v in zip(names, executors, versions, strict=True)]
    now_ms = int(time.time() * 1000)
    statuses: Counter[str] = Counter()
    start = f"{now_ms - WINDOW_MS}-0"
    while statuses.total() < MAX_WINDOW_RECORDS:
        entries = cast(list[Any], client.xrange(keys.fees, min=start, max="+",
                                                count=WINDOW_PAGE))
        for _, fields in entries:
            statuses.update(entry_statuses(fields))
        if len(entries) < WINDOW_PAGE:
            break
        start = "(" + entries[-1][0].decode()
    height = cast(bytes | None, client.get(keys.height))
    block: dict[str, Any] | None = None
    if height is not None:
        raw = cast(bytes | None, client.get(keys.block(int(height))))
        record = msgpack.unpackb(raw, raw=False) if raw is not None else {}
        block = {"height": int(height), "committed": record.get("committed"),
                 "state_root": record.get("state_root")}
    return {
        "prefix": keys.prefix, "queue": queue,
        "workers": workers, "executors": sum(w["executors"] for w in workers),
        "health_check": bool(client.exists(health_check_key(queue))),
        "queue_depth": int(cast(int, client.zcard(queue))),
        "last_minute": {"txs": statuses.total(), "tx_per_s": round(statuses.total() / 60, 1),
                        "by_status": dict(sorted(statuses.items())),
                        "truncated": statuses.total() >= MAX_WINDOW_RECORDS},
        "last_block": block,
    }


def render_status(status: dict[str, Any]) -> str:
    lines = [f"farm {status['prefix']!r}, queue {status['queue']!r}"]
    workers = status["workers"]
    lines.append(f"workers      {len(workers)} alive, {status['executors']} executors"
                 + ("" if workers or not status["health_check"] else
                    " (a worker reports health but advertises no executors)"))
    lines += [f"  {w['name']}: {w['executors']} executors, {w['version'] or '?'}"
              for w in workers]
    lines.append(f"queue        {status['queue_depth']} jobs waiting")
    minute = status["last_minute"]
    by = ", ".join(f"{k} {v}" for k, v in minute["by_status"].items()) or "none"
    lines.append(f"last minute  {minute['txs']} txs ({minute['tx_per_s']} tx/s): {by}")
    block = status["last_block"]
    lines.append("last block   none committed" if block is None else
                 f"last block   {block['height']} ({block['committed']} txs), state root "
                 f"{block['state_root']}")
    return "\n".join(lines)


def farm_keys(client: redis.Redis, keys: Keys, queue: str) -> list[bytes]:
    """Every key the farm keeps: those under its prefix, and its queue and health-check
    key wherever they are."""
    found = set(client.scan_iter(match=f"{keys.prefix}:*", count=SCAN_COUNT))
    found |= {k for k in (queue.encode(), health_check_key(queue).encode())
              if client.exists(k)}
    return sorted(found)


def kinds(found: list[bytes], keys: Keys) -> dict[str, int]:
    """How many keys of each kind (the segment after the prefix: state, result, arq...)."""
    cut = len(keys.prefix) + 1
    return dict(sorted(Counter(
        k[cut:].split(b":", 1)[0].decode(errors="replace") if k.startswith(
            keys.prefix.encode() + b":") else "queue" for k in found).items()))


def delete(client: redis.Redis, found: list[bytes]) -> int:
    removed = 0
    for i in range(0, len(found), DELETE_CHUNK):
        removed += int(cast(int, client.unlink(*found[i : i + DELETE_CHUNK])))
    return removed

"""The executor: a long-lived subprocess holding one WasmEngine (compile cache, warm pools).

Started by worker/executor_process.py as `python -m worker.executor_main FD` (a fresh interpreter:
fork+exec, never a bare fork, since compiling in a forked child of a process that has
compiled hangs), with a scrubbed environment, talking over a socket FD with
multiprocessing.connection framing (4-byte big-endian length, then the bytes).
Every message is a msgpack map.

    parent -> child                               child -> parent
    {"op": "init", "settings": {...},             {"ready": true, "pid": N, "limit": "..."}
     "redis_url": URL, "index": I, "worker": W}   or {"error": MSG} and exit 1
    {"op": "execute", "jobs": [job map, ...],     {"results": [result row, ...],
     "ids": [tx id or None, ...]}                  "retry": [index, ...], "metrics": {delta}}
                                                  (before it, maybe several
                                                   {"progress": "compile", "code_hash": H})
    {"op": "metrics"}                             {"metrics": {name: number}} (totals)
    {"op": "ping"}                                {"pong": pid}
    {"op": "sleep", "seconds": S}  (test hook)    {"slept": S}
    anything else                                 {"error": MSG}

A result row is [tx_id, status, fee_used, result bytes, fee bytes] (worker/packed.py):
each Result is encoded here, once, under the tx id `ids` gives (a job map's own tx id,
or the arq job id standing in for an unusable one) and with the worker's name.
`retry` lists jobs that failed because Redis failed (not the contract): their result
is not a consensus result and the worker retries them instead of writing it.
`metrics` in an execute reply is the change of the engine's numeric counters since
the previous reply, so the parent can add them up across executors.

Test hooks (only when WESFARM_TEST_HOOKS=1 is in the environment): the `sleep` op,
and job map fields `_test_sleep_s` (sleep when that job's turn comes) and
`_test_hang_while` (hang while that Redis key exists); they let tests hang an executor
past its hard deadline. Without the variable both are ignored.

When no request is waiting the executor calls `engine.refill()` to top up its warm
instance pools, off the job path, then blocks on the pipe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import select
import signal
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import redis

from config import Settings
from config.gc_pace import pace_collector
from engine.compiler import pool_memory_bytes
from engine.model import Result, pack, unpack
from worker.outcomes import failure
from worker.packed import PackedResult
from worker.progress import Progress
from worker.protocol import Keys
from worker.sources import RedisSources, declared

log = logging.getLogger("wesfarm.executor")

TEST_HOOKS = os.environ.get("WESFARM_TEST_HOOKS") == "1"


def limit_memory(settings: Settings) -> str:
    """Cap the executor's memory: a safety net far above anything an execution can reach.

    RLIMIT_AS cannot be used: wasmtime reserves a large virtual range per linear memory,
    so any RLIMIT_AS small enough to matter makes engine or instance creation fail.
    RLIMIT_DATA counts private writable mappings: the Python heap and the accessible part
    of wasm memories, not PROT_NONE reservations. It must never decide a result: were it
    reachable, `memory.grow` would return -1 under one cap and succeed under another. So
    the cap is the pooling allocator's whole memory (every slot at the page limit) plus
    `executor_memory_mb` for the rest; what an execution may hold besides its memory is
    bounded deterministically by the policy (write set, events, logs, return data).
    """
    cap = pool_memory_bytes(settings) + settings.executor_memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard if hard != resource.RLIM_INFINITY else cap))
    return f"RLIMIT_DATA={cap}"


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested metrics map, as `a.b.c` -> number."""
    flat: dict[str, float] = {}
    for name, value in metrics.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(flatten(value, key + "."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[key] = value
    return flat


class MetricsDelta:
    """Tracks the engine's counters and reports how much each grew since the last call."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def delta(self, current: dict[str, Any]) -> dict[str, float]:
        flat = flatten(current)
        out = {k: v - self.last.get(k, 0) for k, v in flat.items() if v != self.last.get(k, 0)}
        self.last = flat
        return out


class Executor:
    """One engine, one Redis connection, one request at a time."""

    def __init__(self, conn: Connection, settings: Settings, redis_url: str,
                 worker: str = "", progress: Progress | None = None) -> None:
        from engine import WasmEngine  # the heavy import happens in the child only

        self.conn = conn
        self.settings = settings
        self.schedule = settings.fees.version
        self.worker = worker
        self.engine = WasmEngine(settings)
        self.client = redis.Redis.from_url(redis_url, socket_keepalive=True)
        self.sources = RedisSources(self.client, Keys(settings.key_prefix), self._compiling,
                                    settings.executor_memory_mb * 1024 * 1024 // 8)
        self.progress = progress
        self.deltas = MetricsDelta()
        self.deltas.delta(self.engine.get_metrics())

    def _compiling(self, code_hash: str) -> None:
        with contextlib.suppress(OSError):  # a dead worker notices nothing
            self.conn.send_bytes(pack({"progress": "compile", "code_hash": code_hash}))

    def handle(self, request: Any) -> dict[str, Any]:
        op = request.get("op") if isinstance(request, dict) else None
        if op == "execute":
            jobs, ids = request.get("jobs"), request.get("ids")
            if not isinstance(jobs, list):
                return {"error": "execute: jobs must be a list"}
            if ids is not None and not (isinstance(ids, list) and len(ids) == len(jobs)):
                return {"error": "execute: ids must be a list as long as jobs"}
            seq = request.get("seq")
            return self.execute(jobs, ids, seq if isinstance(seq, int) else None)
        if op == "ping":
            return {"pong": os.getpid()}
        if op == "metrics":
            return {"metrics": flatten(self.engine.get_metrics())}
        if op == "sleep" and TEST_HOOKS:
            seconds = float(request.get("seconds", 0))
            time.sleep(seconds)
            return {"slept": seconds}
        return {"error": f"unknown op {op!r}"}

    def execute(self, jobs: list[Any], ids: list[Any] | None = None,
                seq: int | None = None) -> dict[str, Any]:
        rows: list[list[Any]] = []
        retry: list[int] = []
        admitted = [self.engine.admitted(raw, self.sources) for raw in jobs]
        self.sources.begin_request(declared(admitted))
        for index, raw in enumerate(jobs):
            if seq is not None and self.progress is not None:
                self.progress.mark(seq, index)  # the worker's hard limit is per tx
            if TEST_HOOKS and isinstance(raw, dict):
                self._test_hang(raw)
            self.sources.reset()
            job = admitted[index]
            try:
                result = (self.engine.execute(job, self.sources, self.sources) if job is not None
                          else self.engine.execute_wire(raw, self.sources, self.sources))
            except Exception as exc:  # execute_wire promises not to raise; be sure anyway
                log.exception("engine raised on a job")
                result = failure(
                    raw, "error", "engine_bug", f"engine raised {exc!r}", self.schedule
                )
            if self.sources.failure is not None:
                retry.append(index)
                result = failure(raw, "error", "redis", self.sources.failure, self.schedule)
            tx_id = ids[index] if ids is not None else None
            if isinstance(tx_id, str) and tx_id:
                result.tx_id = tx_id
            result.worker = self.worker
            rows.append(self._pack(result, raw))
        return {
            "results": rows,
            "retry": retry,
            "metrics": self.deltas.delta(self.engine.get_metrics()),
        }

    def _test_hang(self, raw: dict[str, Any]) -> None:
        if isinstance(raw.get("_test_sleep_s"), int | float):
            time.sleep(float(raw["_test_sleep_s"]))
        key = raw.get("_test_hang_while")  # hang (a stuck state read) while this key exists
        if isinstance(key, str) and self.client.exists(key):
            time.sleep(600)

    def _pack(self, result: Result, raw: Any) -> list[Any]:
        """One job's result row; a failure to encode it (MemoryError on a huge write set)
        fails this job alone, as an uncharged `error`."""
        try:
            return PackedResult.of(result).row()
        except Exception as exc:
            log.exception("packing the result of %s failed", result.tx_id)
            bad = failure(raw, "error", "result_encoding",
                          f"the result could not be encoded: {type(exc).__name__}",
                          self.schedule, self.worker, tx_id=result.tx_id)
            return PackedResult.of(bad).row()

    def serve(self) -> None:
        conn = self.conn
        # One poll object for the life of the executor: Connection.poll builds and tears
        # down a selector on every call, three times per request.
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        while True:
            if not poller.poll(0):
                refilled = 0
                try:
                    refilled = self.engine.refill()
                except Exception:
                    log.exception("refill failed")
                if not refilled:
                    poller.poll()  # block until a request (or EOF) arrives
                continue
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                return  # the worker closed the pipe or went away: exit quietly
            try:
                reply = self.handle(unpack(data))
            except Exception as exc:
                log.exception("request failed")
                reply = {"error": f"executor failed: {exc!r}"}
            try:
                conn.send_bytes(pack(reply))
            except OSError:
                return  # the worker died while this ran: nobody to answer

    def close(self) -> None:
        try:
            self.engine.shutdown()
        finally:
            self.client.close()


def main(conn: Connection, progress: Progress | None = None) -> int:
    """Serve requests from `conn` until it closes; returns the exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C hits the group: the worker decides
    pace_collector()
    try:
        init = unpack(conn.recv_bytes())
    except (EOFError, OSError):
        return 1
    index = init.get("index", "?") if isinstance(init, dict) else "?"
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s executor[{index}:{os.getpid()}] %(levelname)s %(message)s",
    )
    try:
        if not isinstance(init, dict) or init.get("op") != "init":
            raise ValueError("the first request must be init")
        settings = Settings(**init["settings"])
        limit = limit_memory(settings)
        executor = Executor(conn, settings, str(init["redis_url"]), str(init.get("worker", "")),
                            progress)
    except Exception as exc:
        log.exception("executor start-up failed")
        conn.send_bytes(pack({"error": f"executor start-up failed: {exc!r}"}))
        return 1
    try:
        conn.send_bytes(pack({"ready": True, "pid": os.getpid(), "limit": limit}))
    except OSError:
        return 1
    try:
        executor.serve()
    finally:
        executor.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Connection(int(sys.argv[1])),
                          Progress(int(sys.argv[2])) if len(sys.argv) > 2 else None))

"""Helpers for farm tests (worker and producer): WAT contracts, deploying into Redis by
the shared layout, running a real `wesfarm worker` subprocess (or two, with FarmClient
settings for them and the `wesfarm` CLI against them), enqueueing arq jobs with the
farm's msgpack serializer, waiting for results and fee entries, reading metrics.

Everything is keyed by a caller-given prefix and queue, so tests never collide and
never need FLUSHDB. Job ids should contain the key prefix: conftest's cleanup deletes
`arq:*{prefix}*`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import redis
import wasmtime

from bench.bare_engines import LOOP_WAT
from config import Settings, load_settings
from tests.support import ROOT
from worker.protocol import FeeEntry, Keys, job_serializer, stored_results_sync
from worker.result_store import generation, index_key

RESULT_TTL_S = Settings().result_ttl_s  # the test farms' (where their results' index is)

# return_data("hello") from `hello`; `spin` loops forever (stopped by the engine's deadline).
HELLO_WAT = """
(module
  (import "wes" "return_data" (func $return_data (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "hello")
  (func (export "hello") (call $return_data (i32.const 0) (i32.const 5)))
  (func (export "spin") (loop $l (br $l)))
)
"""


def wasm(wat: str = HELLO_WAT) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))


def deploy(client: redis.Redis, prefix: str, address: str, code: bytes) -> str:
    """Store code by sha256 and point `address` at it (the layout of worker/protocol.py)."""
    keys = Keys(prefix)
    digest = hashlib.sha256(code).hexdigest()
    client.set(keys.code(digest), code)
    client.set(keys.address(address), digest)
    return digest


def job_map(tx_id: str, contract: str, function: str, **extra: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "tx_id": tx_id,
        "contract": contract,
        "function": function,
        "input": b"",
        "fee_limit": 1_000_000,
        "context": {"caller": "tester", "block_height": 1, "block_time": 0},
        "mode": "call",
    }
    job.update(extra)
    return job


def arq_payload(function: str, args: list[Any], serializer: Any = job_serializer) -> bytes:
    """The arq 0.28 job encoding (arq.jobs.serialize_job)."""
    now = int(time.time() * 1000)
    return bytes(serializer({"t": 1, "f": function, "a": args, "k": {}, "et": now}))


def enqueue_raw(client: redis.Redis, prefix: str, queue: str, job_id: str,
                payload: bytes) -> None:
    """Put a job on an arq queue exactly as ArqRedis.enqueue_job does (payload as given),
    under the farm's arq keys."""
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=True)
    pipe.psetex(Keys(prefix).arq("job:") + job_id, 86_400_000, payload)
    pipe.zadd(queue, {job_id: now})
    pipe.execute()


def enqueue(client: redis.Redis, prefix: str, queue: str, function: str, args: list[Any],
            job_id: str) -> None:
    enqueue_raw(client, prefix, queue, job_id, arq_payload(function, args))


def result(client: redis.Redis, prefix: str, tx_id: str) -> dict[str, Any] | None:
    raw = client.get(Keys(prefix).result(tx_id))
    return None if raw is None else msgpack.unpackb(raw, raw=False, strict_map_key=False)


def wait_results(
    client: redis.Redis, prefix: str, tx_ids: list[str], timeout_s: float = 60.0
) -> dict[str, dict[str, Any]]:
    """Poll until every tx has a result; raise TimeoutError naming the missing ones."""
    deadline = time.monotonic() + timeout_s
    keys = Keys(prefix)
    while True:
        found = stored_results_sync(client, keys.prefix, RESULT_TTL_S, tx_ids).results
        missing = [t for t in tx_ids if t not in found]
        if not missing:
            return {t: msgpack.unpackb(found[t], raw=False, strict_map_key=False)
                    for t in tx_ids}
        if time.monotonic() > deadline:
            raise TimeoutError(f"no result for {len(missing)} txs, e.g. {missing[:5]}")
        time.sleep(0.02)


def stored_result(client: redis.Redis, keys: Keys, tx_id: str, ttl_s: int = 0) -> bytes | None:
    """The Result bytes stored for `tx_id` (None: none), under result ttl `ttl_s`."""
    return stored_results_sync(client, keys.prefix, ttl_s, [tx_id]).results.get(tx_id)


def plant_result(client: redis.Redis, keys: Keys, tx_id: str, raw: bytes,
                 ttl_s: int = 0) -> None:
    """Store `raw` as tx_id's Result the way nobody of the farm would: a part of its own,
    indexed (in the generation of now under result ttl `ttl_s`), with no fee record."""
    part = f"planted-{uuid.uuid4().hex}"
    client.set(keys.part(part), msgpack.packb({tx_id: raw}, use_bin_type=True))
    client.hset(index_key(keys.prefix, generation(ttl_s)), tx_id, part)


def fee_entries(client: redis.Redis, prefix: str) -> list[FeeEntry]:
    entries: list[Any] = client.xrange(Keys(prefix).fees)  # type: ignore[assignment]
    return [e for entry_id, fields in entries for e in FeeEntry.decode(entry_id, fields)]


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == pid:
                kids.append(int(entry.name))
    return sorted(kids)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0.0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        sample, value = line.rsplit(" ", 1)
        sname, _, rest = sample.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sname == name and got == want:
            return float(value)
    return 0.0


@dataclass
class WorkerProcess:
    """A real `wesfarm worker` subprocess; stop() sends SIGTERM and waits."""

    proc: subprocess.Popen[bytes]
    metrics_port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def executor_pids(self) -> list[int]:
        return child_pids(self.proc.pid)

    def wait_ready(self, executors: int, timeout_s: float = 60.0) -> None:
        """Until the metrics endpoint shows `executors` executors alive."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                text = scrape(self.metrics_port)
                if metric(text, "wesfarm_executors_alive") >= executors:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not ready:\n{self.log()}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def free_port() -> int:
    from producer.devfarm import free_port as _free

    return _free()


@contextlib.contextmanager
def running_worker(
    redis_url: str,
    prefix: str,
    queue: str,
    tmp_path: Path,
    executors: int = 2,
    extra_env: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> Iterator[WorkerProcess]:
    """Start `python -m producer.cli worker` for this prefix/queue; stop it afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "WESFARM_REDIS_URL": redis_url,
        "WESFARM_KEY_PREFIX": prefix,
        "WESFARM_QUEUE_NAME": queue,
        "WESFARM_CACHE_DIR": str(tmp_path / "cache"),
        "WESFARM_POLL_DELAY_S": "0.005",
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    log_path = tmp_path / f"worker-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "producer.cli",
        "worker",
        "--executors",
        str(executors),
        "--metrics-port",
        str(port),
        *(args or []),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    worker = WorkerProcess(proc, port, log_path, env)
    try:
        worker.wait_ready(executors)
        yield worker
    finally:
        worker.stop()


# `work`: loop n times (n = input, u64 LE), return the input: the bench's heavy-tx loop
# (~1.4 ns and ~240 fee units an iteration on this project's machine).
WORK_WAT = LOOP_WAT.replace('(export "run")', '(export "work")')


@dataclass
class Farm:
    redis_url: str
    prefix: str
    queue: str
    cache_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def settings(self, **overrides: object) -> Settings:
        return load_settings(redis_url=self.redis_url, key_prefix=self.prefix,
                             queue_name=self.queue, cache_dir=self.cache_dir, **overrides)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "WESFARM_REDIS_URL": self.redis_url,
            "WESFARM_KEY_PREFIX": self.prefix,
            "WESFARM_QUEUE_NAME": self.queue,
            "WESFARM_CACHE_DIR": str(self.cache_dir),
            "PYTHONPATH": str(ROOT),
        }

    def tx_id(self, name: str) -> str:
        """Tx ids carry the prefix: arq's job keys (job id = tx id) get cleaned up with it."""
        return f"{self.prefix}-{name}"

    def cli(self, *args: str, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "producer.cli", *args], cwd=ROOT,
            env={**self.env(), **(env or {})}, capture_output=True, text=True,
            timeout=timeout,
        )


@contextlib.contextmanager
def two_worker_farm(
    redis_url: str,
    key_prefix: str,
    tmp: Path,
    executors: int = 2,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Farm]:
    prefix = f"{key_prefix}-{uuid.uuid4().hex[:8]}"
    farm = Farm(redis_url, prefix, f"{prefix}:queue", tmp / "cache")
    env = dict(extra_env or {})
    with contextlib.ExitStack() as stack:
        for i in range(2):
            wdir = tmp / f"w{i}"
            wdir.mkdir(parents=True, exist_ok=True)
            # Share the farm's artifact cache (deploy --precompile writes it).
            worker_env = {"WESFARM_CACHE_DIR": str(farm.cache_dir), **env}
            farm.workers.append(stack.enter_context(running_worker(
                redis_url, prefix, farm.queue, wdir, executors=executors,
                extra_env=worker_env,
            )))
        yield farm

"""Plumbing for the fault-injection suite: a private `redis-server` with AOF that a test
may SIGTERM, SIGKILL, SIGSTOP and restart on the same port and directory; `wesfarm
worker` processes, each in its own process group so that a worker and its executors are
always reaped, whatever the test did to them; the checks every test ends with.

Everything here is a real process: no mocks, no fakeredis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from config import Settings, load_settings
from producer.devfarm import answers, free_port, redis_server_binary
from tests.support import ROOT
from tests.support.farm import RESULT_TTL_S, WORK_WAT, WorkerProcess, metric, scrape
from worker.protocol import FeeEntry, Keys, stored_results_sync

# `work`: read the key named by its input (a state read of a key no other tx reads, so
# none is served from an executor's read cache: each blocks while Redis stalls), then
# WORK_WAT's loop.
READ_WORK_WAT = WORK_WAT.replace("(memory", """(import "wes" "storage_read"
    (func $storage_read (param i32 i32 i32 i32) (result i32)))
  (memory""").replace("(call $input_read (i32.const 0))", """(call $input_read (i32.const 0))
    (drop (call $storage_read (i32.const 0) (i32.const 8) (i32.const 128) (i32.const 8)))""")
WORK_FEE_LIMIT = 10**9


def until(check: Callable[[], bool], what: str, timeout_s: float = 60.0,
          every_s: float = 0.01) -> float:
    """Poll `check` until it holds; the seconds it took. AssertionError after timeout_s."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(every_s)
    return time.monotonic() - started


class RedisServer:
    """One redis-server on 127.0.0.1 with AOF (everysec) in `directory`. A restart uses
    the same port and directory, so it reloads what the AOF holds."""

    def __init__(self, directory: Path, binary: str | None = None) -> None:
        self.binary = binary or os.environ.get("WESFARM_TEST_REDIS_SERVER") or \
            redis_server_binary()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self, timeout_s: float = 60.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "redis-server still running"
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.dir),
             "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # PING answers -LOADING until the AOF is loaded: `answers` waits for +PONG.
        until(lambda: self._check_alive() and answers(self.url), "redis-server answers",
              timeout_s, 0.02)

    def _check_alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited {self.proc.returncode}: {self.log()}")
        return True

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "redis.log").read_text(errors="replace")[-3000:]
        return "(no log)"

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def terminate(self) -> int:
        """SIGTERM: Redis flushes its AOF and exits."""
        self.send(signal.SIGTERM)
        assert self.proc is not None
        return self.proc.wait(30)

    def kill(self) -> None:
        """SIGKILL: up to a second of writes not yet fsynced may be lost (everysec)."""
        self.send(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(30)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # it may have been left stopped
            self.proc.kill()
            self.proc.wait(30)


def settings_env(knobs: dict[str, Any]) -> dict[str, str]:
    """Settings keyword arguments as WESFARM_* variables (nested groups with `__`)."""
    env = {}
    for name, value in knobs.items():
        if isinstance(value, dict):
            for inner, v in value.items():
                env[f"WESFARM_{name.upper()}__{inner.upper()}"] = str(v)
        else:
            env[f"WESFARM_{name.upper()}"] = str(value)
    return env


# Short leases and a short job timeout: a dead worker's jobs move on in about a second.
KNOBS: dict[str, Any] = {
    "lease_ms": 1000, "job_timeout_s": 10, "limits": {"max_timeout_ms": 5000},
    "poll_delay_s": 0.005, "health_check_interval_s": 1, "executor_grace_ms": 1000,
}


@dataclass
class FaultFarm:
    """A key prefix and queue on a RedisServer, and the workers started for it."""

    redis: RedisServer
    tmp: Path
    prefix: str = field(default_factory=lambda: f"faults-{uuid.uuid4().hex[:8]}")
    knobs: dict[str, Any] = field(default_factory=lambda: dict(KNOBS))
    workers: list[WorkerProcess] = field(default_factory=list)
    test_hooks: bool = True  # worker/executor_main.py's `_test_*` job fields

    @property
    def queue(self) -> str:
        return f"{self.prefix}:queue"

    @property
    def keys(self) -> Keys:
        return Keys(self.prefix)

    @property
    def cache_dir(self) -> Path:
        return self.tmp / "cache"

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(**{
            "redis_url": self.redis.url, "key_prefix": self.prefix, "queue_name": self.queue,
            "cache_dir": self.cache_dir, **self.knobs, **overrides})

    def env(self, **knobs: Any) -> dict[str, str]:
        return {
            **os.environ,
            "WESFARM_REDIS_URL": self.redis.url, "WESFARM_KEY_PREFIX": self.prefix,
            "WESFARM_QUEUE_NAME": self.queue, "WESFARM_CACHE_DIR": str(self.cache_dir),
            "WESFARM_TEST_HOOKS": "1" if self.test_hooks else "0", "PYTHONPATH": str(ROOT),
            **settings_env({**self.knobs, **knobs}),
        }

    def start_worker(self, executors: int = 1, ready: bool = True,
                     **knobs: Any) -> WorkerProcess:
        """A `wesfarm worker` in its own process group (its executors join the group)."""
        port = free_port()
        log_path = self.tmp / f"worker-{len(self.workers)}-{port}.log"
        cmd = [sys.executable, "-m", "producer.cli", "worker", "--executors", str(executors),
               "--metrics-port", str(port)]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env(**knobs), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        worker = WorkerProcess(proc, port, log_path)
        self.workers.append(worker)
        if ready:
            worker.wait_ready(executors)
        return worker

    def metric(self, worker: WorkerProcess, name: str, **labels: str) -> float:
        return metric(scrape(worker.metrics_port), name, **labels)

    def cli(self, *args: str, timeout: float = 120, **knobs: Any
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "producer.cli", *args], cwd=ROOT,
                              env=self.env(**knobs), capture_output=True, text=True,
                              timeout=timeout)

    def cli_process(self, *args: str, **knobs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "producer.cli", *args], cwd=ROOT,
                                env=self.env(**knobs), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def close(self) -> None:
        """SIGTERM what still runs (a short drain), then SIGKILL every process group."""
        for worker in self.workers:
            if worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGCONT)
                    worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for worker in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            kill_group(worker.pid)
            worker.proc.wait()


def kill_group(pgid: int) -> None:
    """SIGKILL a process group this suite started (a worker and its executors)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGCONT)
        os.killpg(pgid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def results(client: redis.Redis, keys: Keys, tx_ids: Sequence[str]) -> dict[str, bytes]:
    """tx id -> stored Result bytes, for the txs that have one."""
    return stored_results_sync(client, keys.prefix, RESULT_TTL_S, tx_ids).results


def fee_counts(client: redis.Redis, keys: Keys) -> Counter[str]:
    """tx id -> how many `{p}:fees` entries name it."""
    counts: Counter[str] = Counter()
    cursor = "-"
    while True:
        entries: list[Any] = client.xrange(keys.fees, min=cursor, count=5000)  # type: ignore[assignment]
        if cursor != "-":
            entries = entries[1:]
        for entry_id, fields in entries:
            counts.update(e.tx_id for e in FeeEntry.decode(entry_id, fields))
        if not entries:
            return counts
        cursor = entries[-1][0].decode()


def assert_one_result_and_one_fee_entry(client: redis.Redis, keys: Keys,
                                        tx_ids: Iterable[str]) -> None:
    """Every tx id has a stored Result and exactly one fee-stream entry."""
    wanted = list(dict.fromkeys(tx_ids))
    have = results(client, keys, wanted)
    missing = [t for t in wanted if t not in have]
    assert not missing, f"{len(missing)} tx(s) without a Result, e.g. {missing[:5]}"
    counts = fee_counts(client, keys)
    wrong = {t: counts[t] for t in wanted if counts[t] != 1}
    assert not wrong, f"{len(wrong)} tx(s) without exactly one fee entry, e.g. " \
        f"{dict(list(wrong.items())[:5])}"


def assert_no_tracebacks(workers: Iterable[WorkerProcess]) -> None:
    """Nothing in a worker's log (its executors' stderr included) is a traceback."""
    for worker in workers:
        log = worker.log()
        at = log.find("Traceback")
        assert at < 0, log[max(0, at - 500) : at + 4000]


@contextlib.contextmanager
def redis_and_farm(tmp: Path) -> Iterator[FaultFarm]:
    """A started RedisServer and a FaultFarm on it; every process stopped afterwards."""
    server = RedisServer(tmp / "redis")
    try:
        server.start()
        farm = FaultFarm(server, tmp)
        try:
            yield farm
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.send(signal.SIGCONT)
            farm.close()
    finally:
        server.close()

